//! The serverless-offline test peer (serverless 3.40.0 + serverless-offline 13.10.1, installed by
//! `tests/peers/install-serverless.sh`), running the functions in `tests/peers/sls/`: the seed's `echo`,
//! `event-echo` (returns its event), `apigw` (API-Gateway-style responses), `hostile` (responses that try to take over the client connection),
//! `fail` (throws), `slow` (sleeps).
//!
//! Contract:
//! - [`ServerlessOffline::start`] picks free 127.0.0.1 ports (`start_on`: another address), starts `serverless offline start`, and returns
//!   once the Lambda Invoke API answers. It serves `POST /2015-03-31/functions/<name>/invocations` on
//!   [`ServerlessOffline::endpoint`]; it does not check SigV4 (use the moto wrapper for that).
//! - The process is stopped when the value is dropped, and also by a watchdog when the test process exits
//!   (so a `static` shared instance never outlives the test binary).
//! - Never invoke `fail` asynchronously: serverless-offline 13 crashes on an Event invoke that throws.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, isolated_command, require_peer, wait_for_port, workspace_root, ChildGuard};

/// Folder of the serverless service (serverless.yml, handlers, node_modules).
pub fn service_dir() -> PathBuf {
    workspace_root().join("tests/peers/sls")
}

/// The serverless CLI entry point, or a panic naming the installer.
pub fn serverless_bin() -> PathBuf {
    require_peer(
        service_dir().join("node_modules/serverless/bin/serverless.js"),
        "install-serverless.sh",
    )
}

/// A running serverless-offline.
#[derive(Debug)]
pub struct ServerlessOffline {
    pub lambda_port: u16,
    pub http_port: u16,
    pub host: Ipv4Addr,
    guard: Option<ChildGuard>,
    log: PathBuf,
}

/// Environment that keeps serverless 3 quiet and offline.
pub fn serverless_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("SLS_TELEMETRY_DISABLED", "1"),
        ("SLS_NOTIFICATIONS_MODE", "off"),
        ("SLS_DEPRECATION_DISABLE", "*"),
        ("SLS_INTERACTIVE_SETUP_DISABLE", "1"),
    ]
}

impl ServerlessOffline {
    pub fn start() -> Self {
        Self::start_on(Ipv4Addr::LOCALHOST)
    }

    /// Like [`ServerlessOffline::start`], listening on `host` (e.g. a test node's bridge address, for pods).
    pub fn start_on(host: Ipv4Addr) -> Self {
        let bin = serverless_bin();
        let (lambda_port, http_port) = (free_port(), free_port());
        let log = std::env::temp_dir().join(format!(
            "podcred-sls-{lambda_port}-{}.log",
            std::process::id()
        ));
        let log_file = std::fs::File::create(&log).expect("serverless log file");
        // A shell owns node: it kills node on SIGTERM and when the test process (its parent's pid) is gone.
        let script = format!(
            "node {bin} offline start --host {host} --httpPort {http_port} --lambdaPort {lambda_port} --noPrependStageInUrl & \
             child=$!; trap 'kill $child 2>/dev/null; wait $child; exit 0' TERM INT; \
             while kill -0 {owner} 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 0.5; done; kill $child 2>/dev/null; wait $child",
            bin = bin.display(),
            owner = std::process::id(),
        );
        let mut cmd: Command = isolated_command("sh");
        cmd.arg("-c")
            .arg(script)
            .current_dir(service_dir())
            .stdin(Stdio::null());
        for (k, v) in serverless_env() {
            cmd.env(k, v);
        }
        cmd.stdout(log_file.try_clone().expect("log"))
            .stderr(log_file);
        let mut guard = ChildGuard::spawn("serverless-offline", &mut cmd);
        let addr: SocketAddr = (host, lambda_port).into();
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = guard.child_mut().try_wait() {
                panic!(
                    "serverless-offline exited early ({status}); log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "serverless-offline did not listen on {addr} within 60 s; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        wait_for_port(addr, Duration::from_secs(5), "serverless-offline");
        ServerlessOffline {
            lambda_port,
            http_port,
            host,
            guard: Some(guard),
            log,
        }
    }

    /// `http://<host>:<lambda port>`: the Invoke API endpoint (a Backend's `endpointURL`).
    pub fn endpoint(&self) -> String {
        format!("http://{}:{}", self.host, self.lambda_port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ServerlessOffline {
    fn drop(&mut self) {
        if let Some(mut guard) = self.guard.take() {
            guard.terminate(Duration::from_secs(10));
        }
        let _ = std::fs::remove_file(&self.log);
    }
}
