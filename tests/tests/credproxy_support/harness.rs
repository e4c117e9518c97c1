//! Shared by the `credproxy_*` integration tests: start the real credproxy binary against a moto
//! peer, talk HTTP to it, read its logs and metrics.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use integration::moto::{Moto, REGION};
use integration::{free_port, isolated_command, workspace_bin, ChildGuard};

pub struct Proxy {
    pub guard: ChildGuard,
    pub port: u16,
    pub metrics_port: u16,
    pub auth_token_file: PathBuf,
    pub token_file: PathBuf,
    pub log_file: PathBuf,
}

/// A response from credproxy.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One HTTP/1.1 request on a fresh connection.
pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut head = format!("GET {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let (headers, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = headers
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Reply {
        status,
        headers: headers.to_string(),
        body: body.to_string(),
    }
}

/// Base command: the sidecar env the webhook injects, pointed at `moto`, plus test-friendly timing.
/// A flag in `extra` replaces the default of the same name.
pub fn sidecar_command(
    moto: &Moto,
    dir: &Path,
    role_arn: &str,
    port: u16,
    metrics_port: u16,
    extra: &[&str],
) -> Command {
    let mut cmd = isolated_command(workspace_bin("credproxy"));
    cmd.env("AWS_ROLE_ARN", role_arn)
        .env(
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            dir.join("web-identity-token"),
        )
        .env("AWS_REGION", REGION)
        .env("AWS_STS_REGIONAL_ENDPOINTS", "regional")
        .env("AWS_ENDPOINT_URL_STS", moto.endpoint())
        .env("AWS_ROLE_SESSION_NAME", "credproxy-test");
    let defaults = [
        format!("--listen=127.0.0.1:{port}"),
        format!("--metrics-listen=127.0.0.1:{metrics_port}"),
        format!("--auth-token-file={}", dir.join("auth-token").display()),
        "--expiry-margin=1s".into(),
        "--ready-min-life=1s".into(),
        "--backoff-max=1s".into(),
        "--log-format=json".into(),
    ];
    let flag = |a: &str| a.split('=').next().unwrap_or(a).to_string();
    for d in defaults {
        if !extra.iter().any(|e| flag(e) == flag(&d)) {
            cmd.arg(d);
        }
    }
    cmd.args(extra);
    cmd
}

impl Proxy {
    /// Starts credproxy with `cmd` (from [`sidecar_command`] plus extras), logging to `dir/credproxy.log`.
    pub fn spawn(mut cmd: Command, dir: &Path, port: u16, metrics_port: u16) -> Proxy {
        let log_file = dir.join("credproxy.log");
        let log = std::fs::File::create(&log_file).unwrap();
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let mut guard = ChildGuard::spawn("credproxy", &mut cmd);
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            let exited = guard.child_mut().try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                panic!(
                    "credproxy did not listen on {addr} ({exited:?}); logs:\n{}",
                    std::fs::read_to_string(&log_file).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(30));
        }
        Proxy {
            guard,
            port,
            metrics_port,
            auth_token_file: dir.join("auth-token"),
            token_file: dir.join("web-identity-token"),
            log_file,
        }
    }

    /// Sidecar started against `moto` with a JWT-shaped web identity token already in place.
    pub fn start(moto: &Moto, dir: &Path, role_arn: &str, extra: &[&str]) -> Proxy {
        if !dir.join("web-identity-token").exists() {
            std::fs::write(
                dir.join("web-identity-token"),
                integration::moto::unsigned_jwt("system:serviceaccount:ns:app", 3600),
            )
            .unwrap();
        }
        let (port, metrics_port) = (free_port(), free_port());
        Self::spawn(
            sidecar_command(moto, dir, role_arn, port, metrics_port, extra),
            dir,
            port,
            metrics_port,
        )
    }

    pub fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.metrics_port).into()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1/credentials", self.port)
    }

    pub fn auth_token(&self) -> String {
        std::fs::read_to_string(&self.auth_token_file).expect("auth token file written")
    }

    /// `GET path` with the right Authorization header.
    pub fn get_authorized(&self, path: &str) -> Reply {
        let token = self.auth_token();
        get(self.addr(), path, &[("Authorization", &token)])
    }

    pub fn credentials(&self) -> Reply {
        self.get_authorized("/v1/credentials")
    }

    /// Polls `/v1/credentials` until `pred` holds, or panics with the last reply and the logs.
    pub fn wait_credentials(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Reply) -> bool,
    ) -> Reply {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.credentials();
            if pred(&r) {
                return r;
            }
            if Instant::now() > deadline {
                panic!("{what}: last reply {r:?}\nlogs:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn metrics(&self) -> String {
        get(self.metrics_addr(), "/metrics", &[]).body
    }

    /// Sum of the samples of `name` whose labels contain every `label` fragment.
    pub fn metric_sum(&self, name: &str, labels: &[&str]) -> f64 {
        metric_sum(&self.metrics(), name, labels)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }
}

pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `YYYY-MM-DDTHH:MM:SSZ`
pub fn is_z_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'Z'
        && b.iter()
            .enumerate()
            .all(|(i, c)| [4, 7, 10, 13, 16, 19].contains(&i) || c.is_ascii_digit())
}
