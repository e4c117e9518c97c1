//! Harness for the `gateway` binary and what it talks to in end-to-end tests.
//!
//! Contract:
//! - [`Gateway::start`] runs `target/debug/gateway --config FILE --listen 127.0.0.1:<free> --admin-listen
//!   127.0.0.1:<free>` with [`crate::isolated_command`] plus the given environment, waits until both ports
//!   listen, and stops it on drop. [`Gateway::wait_ready`] polls `/readyz`.
//! - [`Sidecar::start`] runs `target/debug/credproxy` the way the webhook's sidecar contract configures it
//!   (`AWS_ROLE_ARN`, `AWS_WEB_IDENTITY_TOKEN_FILE`, STS at `sts_endpoint`, `--listen`, `--auth-token-file`),
//!   and [`Sidecar::app_env`] is what the webhook gives the application container.
//! - [`CountingProxy`] forwards TCP to an upstream and counts Lambda Invoke requests that pass through, so a
//!   test can prove that nothing reached Lambda.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{free_port, http_exchange, isolated_command, wait_for_port, workspace_bin, ChildGuard};

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    guard: ChildGuard,
    log: PathBuf,
}

impl Gateway {
    pub fn start(config: &Path, env: &[(&str, String)], extra_args: &[&str]) -> Gateway {
        let source = [std::ffi::OsString::from("--config"), config.into()];
        Gateway::start_with_source(&source, env, extra_args)
    }

    /// [`Gateway::start`] with other configuration-source arguments than `--config FILE` (e.g.
    /// `--from-cluster --kubeconfig PATH`).
    pub fn start_with_source(
        source: &[std::ffi::OsString],
        env: &[(&str, String)],
        extra_args: &[&str],
    ) -> Gateway {
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let log = std::env::temp_dir().join(format!(
            "podcred-gateway-{}-{}.log",
            addr.port(),
            std::process::id()
        ));
        let log_file = std::fs::File::create(&log).expect("gateway log file");
        let mut cmd = isolated_command(workspace_bin("gateway"));
        cmd.args(source)
            .arg(format!("--listen={addr}"))
            .arg(format!("--admin-listen={admin}"))
            .args(extra_args)
            .env("RUST_LOG", "info,gateway=debug")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut guard = ChildGuard::spawn("gateway", &mut cmd);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&admin, Duration::from_millis(100)).is_err() {
            if let Ok(Some(status)) = guard.child_mut().try_wait() {
                panic!(
                    "gateway exited early ({status}); log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "gateway did not start; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        wait_for_port(addr, Duration::from_secs(5), "gateway");
        Gateway {
            addr,
            admin,
            guard,
            log,
        }
    }

    /// `http://127.0.0.1:<port>`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `/readyz` until it answers 200, or panics with the last answer and the log.
    pub fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            let (status, body) = http_get(self.admin, "/readyz");
            if status == 200 {
                return;
            }
            last = format!("{status} {body}");
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "gateway not ready within {timeout:?}: {last}\nlog:\n{}",
            self.log()
        );
    }

    pub fn child_id(&self) -> u32 {
        self.guard.id()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- gateway log ---\n{}", self.log());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Minimal blocking `GET` (fresh connection); returns (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_exchange(addr, &format!("GET {path} HTTP/1.1"), b"")
}

/// credproxy as the webhook's sidecar contract runs it.
#[derive(Debug)]
pub struct Sidecar {
    pub port: u16,
    pub metrics_port: u16,
    pub auth_token_file: PathBuf,
    guard: Option<ChildGuard>,
    log: PathBuf,
}

impl Sidecar {
    /// Starts credproxy exchanging the token in `dir/web-identity-token` (written if missing) for `role_arn`
    /// at `sts_endpoint`. `extra` flags are appended (e.g. `--duration-seconds=30`).
    pub fn start(dir: &Path, sts_endpoint: &str, role_arn: &str, extra: &[&str]) -> Sidecar {
        let token = dir.join("web-identity-token");
        if !token.exists() {
            std::fs::write(
                &token,
                crate::moto::unsigned_jwt("system:serviceaccount:kgateway-system:http", 3600),
            )
            .expect("token");
        }
        let (port, metrics_port) = (free_port(), free_port());
        let auth_token_file = dir.join("auth-token");
        let log = dir.join(format!("credproxy-{port}.log"));
        let log_file = std::fs::File::create(&log).expect("credproxy log");
        let mut cmd = isolated_command(workspace_bin("credproxy"));
        cmd.env("AWS_ROLE_ARN", role_arn)
            .env("AWS_WEB_IDENTITY_TOKEN_FILE", &token)
            .env("AWS_REGION", crate::moto::REGION)
            .env("AWS_DEFAULT_REGION", crate::moto::REGION)
            .env("AWS_STS_REGIONAL_ENDPOINTS", "regional")
            .env("AWS_ENDPOINT_URL_STS", sts_endpoint)
            .arg(format!("--listen=127.0.0.1:{port}"))
            .arg(format!("--metrics-listen=127.0.0.1:{metrics_port}"))
            .arg(format!("--auth-token-file={}", auth_token_file.display()))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file);
        let guard = ChildGuard::spawn("credproxy", &mut cmd);
        wait_for_port(
            ([127, 0, 0, 1], port).into(),
            Duration::from_secs(10),
            "credproxy",
        );
        let deadline = Instant::now() + Duration::from_secs(15);
        while http_get(([127, 0, 0, 1], port).into(), "/readyz").0 != 200 {
            assert!(
                Instant::now() < deadline,
                "credproxy not ready; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Sidecar {
            port,
            metrics_port,
            auth_token_file,
            guard: Some(guard),
            log,
        }
    }

    /// The environment the webhook gives the application container.
    pub fn app_env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                format!("http://127.0.0.1:{}/v1/credentials", self.port),
            ),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                self.auth_token_file.display().to_string(),
            ),
        ]
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops credproxy (the credential endpoint goes down) and waits until its port is closed.
    pub fn stop(&mut self) {
        if let Some(mut guard) = self.guard.take() {
            guard.terminate(Duration::from_secs(5));
        }
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            assert!(
                Instant::now() < deadline,
                "credproxy still listening after stop"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A TCP forwarder that counts the Lambda Invoke requests (`POST /2015-03-31/functions/`) passing through.
#[derive(Debug, Clone)]
pub struct CountingProxy {
    pub addr: SocketAddr,
    invokes: Arc<AtomicUsize>,
}

impl CountingProxy {
    pub fn start(upstream: SocketAddr) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind counting proxy");
        let addr = listener.local_addr().expect("addr");
        let invokes = Arc::new(AtomicUsize::new(0));
        let counter = invokes.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let counter = counter.clone();
                let (mut client_read, mut server_write) = (
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                );
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    let needle = b"POST /2015-03-31/functions/";
                    while let Ok(n) = client_read.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        counter.fetch_add(
                            buf[..n]
                                .windows(needle.len())
                                .filter(|w| w == needle)
                                .count(),
                            Ordering::SeqCst,
                        );
                        if server_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = server_write.shutdown(std::net::Shutdown::Write);
                });
                let (mut server_read, mut client_write) = (server, client);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut server_read, &mut client_write);
                    let _ = client_write.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        CountingProxy { addr, invokes }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn invokes(&self) -> usize {
        self.invokes.load(Ordering::SeqCst)
    }
}

/// Minimal blocking `GET` with an `Authorization` header; returns (status, body).
pub fn http_get_with_auth(addr: SocketAddr, path: &str, authorization: &str) -> (u16, String) {
    http_exchange(
        addr,
        &format!("GET {path} HTTP/1.1\r\nAuthorization: {authorization}"),
        b"",
    )
}

/// A kgateway Backend in namespace `test` for `function` at `endpoint` (serverless-offline), authenticated by
/// the Secret `static-keys`; `extra_lambda` is appended to `spec.aws.lambda` (e.g. `, invocationMode: Async`),
/// `annotations` goes inside `metadata.annotations: {…}`. Ends with a document separator.
pub fn backend_yaml(
    name: &str,
    function: &str,
    endpoint: &str,
    extra_lambda: &str,
    annotations: &str,
) -> String {
    format!(
        r#"apiVersion: gateway.kgateway.dev/v1alpha1
kind: Backend
metadata:
  name: {name}
  namespace: test
  annotations: {{{annotations}}}
spec:
  type: AWS
  aws:
    region: us-east-1
    accountId: "123456789012"
    auth: {{type: Secret, secretRef: {{name: static-keys}}}}
    lambda: {{functionName: {function}, endpointURL: "{endpoint}"{extra_lambda}}}
---
"#
    )
}

/// A response header's value, when it is present and visible ASCII.
pub fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}
