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
pub mod soak;
pub mod webhook_cluster;

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
/// Panics if it is missing, or older than a source file it is built from (an edit since the last build):
/// an end-to-end test must never pass or fail on a stale binary.
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
    let stale = match dep_info_sources(&path) {
        Some(sources) => newer_file(&path, &sources),
        None => newer_source(&path, &binary_sources(name)),
    };
    if let Some(source) = stale {
        panic!(
            "binary {} is older than {} (edited since the last build): run `cargo build --workspace --bins` \
             (make test does)",
            path.display(),
            source.display()
        );
    }
    path
}

/// The source files cargo recorded for `binary` in its dep-info file (`<binary>.d`, written next to it):
/// exactly what a rebuild would look at (test-only modules are not in it).
fn dep_info_sources(binary: &Path) -> Option<Vec<PathBuf>> {
    let text = std::fs::read_to_string(binary.with_extension("d")).ok()?;
    let (_, deps) = text.lines().next()?.split_once(": ")?;
    // Spaces inside paths are escaped as `\ `.
    let deps = deps.replace("\\ ", "\u{0}");
    Some(
        deps.split_whitespace()
            .map(|dep| PathBuf::from(dep.replace('\u{0}', " ")))
            .collect(),
    )
}

/// The first of `files` modified after `binary` was written.
pub fn newer_file(binary: &Path, files: &[PathBuf]) -> Option<PathBuf> {
    let built = std::fs::metadata(binary).and_then(|m| m.modified()).ok()?;
    files
        .iter()
        .find(|file| {
            std::fs::metadata(file)
                .and_then(|m| m.modified())
                .is_ok_and(|modified| modified > built)
        })
        .cloned()
}

/// The source folders of a workspace binary (used when cargo's dep-info file is missing): `src/` of its crate (the workspace member named like the binary,
/// else the `tests` crate) and of every workspace crate that crate depends on.
fn binary_sources(name: &str) -> Vec<PathBuf> {
    let root = workspace_root();
    let krate = if root.join(name).join("Cargo.toml").exists() {
        root.join(name)
    } else {
        root.join("tests")
    };
    let manifest = std::fs::read_to_string(krate.join("Cargo.toml")).unwrap_or_default();
    let mut dirs = vec![krate.join("src")];
    for member in ["certs", "webhook", "credproxy", "gateway"] {
        let depends = manifest.lines().any(|line| {
            let line = line.trim_start();
            line.starts_with(&format!("{member}.workspace"))
                || line.starts_with(&format!("{member} = {{"))
        });
        if depends {
            dirs.push(root.join(member).join("src"));
        }
    }
    dirs
}

/// The first `.rs` file under `dirs` modified after `binary` was written, if any (cargo rebuilds on the same
/// condition, so after a `cargo build` this is `None`).
pub fn newer_source(binary: &Path, dirs: &[PathBuf]) -> Option<PathBuf> {
    let built = std::fs::metadata(binary).and_then(|m| m.modified()).ok()?;
    let mut stack: Vec<PathBuf> = dirs.to_vec();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs")
                && meta.modified().is_ok_and(|modified| modified > built)
            {
                return Some(path);
            }
        }
    }
    None
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_edited_after_the_build_makes_the_binary_stale() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("nested")).unwrap();
        std::fs::write(src.join("nested/lib.rs"), "// old").unwrap();
        std::fs::write(src.join("notes.md"), "not a source").unwrap();
        let binary = dir.path().join("bin");
        std::fs::write(&binary, "").unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let built = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000);
        let edited = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(3_000_000);
        let touch = |path: &Path, when| {
            std::fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(when)
                .unwrap()
        };
        touch(&src.join("nested/lib.rs"), old);
        touch(&src.join("notes.md"), edited);
        touch(&binary, built);
        assert_eq!(
            newer_source(&binary, std::slice::from_ref(&src)),
            None,
            "fresh"
        );
        touch(&src.join("nested/lib.rs"), edited);
        assert_eq!(
            newer_source(&binary, std::slice::from_ref(&src)),
            Some(src.join("nested/lib.rs")),
            "stale"
        );
    }

    #[test]
    fn dep_info_lists_the_sources_cargo_built_the_binary_from() {
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("webhook");
        std::fs::write(
            dir.path().join("webhook.d"),
            "/x/target/debug/webhook: /x/webhook/src/lib.rs /x/my\\ dir/main.rs\n\n/x/webhook/src/lib.rs:\n",
        )
        .unwrap();
        assert_eq!(
            dep_info_sources(&binary),
            Some(vec![
                PathBuf::from("/x/webhook/src/lib.rs"),
                PathBuf::from("/x/my dir/main.rs")
            ])
        );
        // The real one: the webhook binary depends on its library and certs, not on test-only modules.
        let real = workspace_root().join("target/debug/webhook");
        if let Some(sources) = dep_info_sources(&real) {
            assert!(sources.iter().any(|s| s.ends_with("webhook/src/mutate.rs")));
            assert!(!sources
                .iter()
                .any(|s| s.ends_with("webhook/src/go/tests.rs")));
        }
    }

    #[test]
    fn binaries_are_checked_against_their_crate_and_its_workspace_dependencies() {
        let root = workspace_root();
        let webhook = binary_sources("webhook");
        assert!(webhook.contains(&root.join("webhook/src")), "{webhook:?}");
        assert!(webhook.contains(&root.join("certs/src")), "{webhook:?}");
        assert_eq!(
            binary_sources("credproxy"),
            vec![root.join("credproxy/src")]
        );
        assert_eq!(
            binary_sources("forgetful_webhook")[0],
            root.join("tests/src")
        );
    }
}
