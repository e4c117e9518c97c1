//! Shared harness for end-to-end tests against real peers.
//!
//! Contract:
//! - Peers are installed by `tests/peers/install-*.sh` into [`cache_dir`] (`$PODCRED_CACHE`, default
//!   `<workspace>/.cache`). `make test` runs the installers, then `cargo test -- --include-ignored`.
//! - Peer-backed tests are `#[ignore = "needs peers: run make test"]` so plain `cargo test` stays fast;
//!   when they do run, a missing peer is a loud panic ([`require_peer`]), never a silent skip.
//! - Every process a test starts binds 127.0.0.1 and is killed when its [`ChildGuard`] drops.
//! - Child processes get [`aws_isolated_env`]: no IMDS, empty AWS config/credential files.
//!
//! Peer-specific helpers live in their own modules (`moto`, `serverless`, `kube`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub mod gateway;
pub mod kube;
pub mod moto;
pub mod node;
pub mod reaper;
pub mod serverless;

/// The workspace root (the folder holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Where the peer installers put their pinned peers.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("PODCRED_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".cache"))
}

/// Returns `path` if it exists; otherwise panics with the command that installs it.
pub fn require_peer(path: impl AsRef<Path>, installer: &str) -> PathBuf {
    let path = path.as_ref();
    assert!(
        path.exists(),
        "test peer missing: {} (install it with `bash tests/peers/{installer}` or run `make test`)",
        path.display()
    );
    path.to_path_buf()
}

/// Path of one of the workspace's binaries, built by `cargo build --workspace --bins` (`make test` does it).
pub fn workspace_bin(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let path = target.join("debug").join(name);
    assert!(
        path.exists(),
        "binary {} not built: run `cargo build --workspace --bins` (make test does)",
        path.display()
    );
    path
}

/// Environment that keeps every AWS client away from real accounts and IMDS.
pub fn aws_isolated_env() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_CONFIG_FILE", "/dev/null".into()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
    ]
}

/// A `Command` with [`aws_isolated_env`] applied and AWS credential variables from the parent removed.
pub fn isolated_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for key in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
        "AWS_ENDPOINT_URL",
    ] {
        cmd.env_remove(key);
    }
    for (k, v) in aws_isolated_env() {
        cmd.env(k, v);
    }
    cmd
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough for tests run on one machine).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Polls until something accepts TCP connections on `addr`, or panics after `timeout`.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration, what: &str) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not listen on {addr} within {timeout:?}");
}

/// One HTTP/1.1 request over a fresh connection (`Connection: close` is added): `head_lines` are the request
/// line and headers without the final blank line. Returns (status, body); status 0 when nothing answered.
pub fn http_exchange(addr: SocketAddr, head_lines: &str, body: &[u8]) -> (u16, String) {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return (0, String::new());
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let head = format!("{head_lines}\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(head.as_bytes()).is_err() || stream.write_all(body).is_err() {
        return (0, String::new());
    }
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Kills (and reaps) the child process when dropped, so a failing test leaves nothing running.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Child,
}

impl ChildGuard {
    pub fn spawn(name: &str, cmd: &mut Command) -> Self {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start {name} ({cmd:?}): {e}"));
        Self {
            name: name.to_string(),
            child,
        }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Panics if the process already exited (e.g. a peer that failed to start).
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited early with {status}", self.name);
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
