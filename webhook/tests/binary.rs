//! The `webhook` binary as a process: upstream flags, real TLS, JSON logs, SIGTERM shutdown, fatal TLS errors.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn webhook() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_webhook"));
    command
        .env_remove("RUST_LOG")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

#[test]
fn serves_tls_logs_json_and_shuts_down_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let ca = certs::generate_ca("ca").unwrap();
    let pair =
        certs::issue_serving_cert(&ca, &["localhost"], &[IpAddr::V4(Ipv4Addr::LOCALHOST)]).unwrap();
    std::fs::write(dir.path().join("tls.crt"), &pair.cert_pem).unwrap();
    std::fs::write(dir.path().join("tls.key"), &pair.key_pem).unwrap();
    std::fs::write(dir.path().join("ca.crt"), ca.cert_pem()).unwrap();
    let (port, metrics_port) = (free_port(), free_port());
    // An API server that is not there: the webhook serves anyway (upstream does), just not ready.
    let unreachable_api = format!("http://127.0.0.1:{}", free_port());
    let mut child = webhook()
        .args([
            "--in-cluster=false",
            "--logtostderr",
            "-v=4",
            "--log-format=json",
            &format!("--kube-api={unreachable_api}"),
            &format!("--port={port}"),
            &format!("--metrics-port={metrics_port}"),
            &format!("--tls-cert={}", dir.path().join("tls.crt").display()),
            &format!("--tls-key={}", dir.path().join("tls.key").display()),
        ])
        .spawn()
        .unwrap();

    let curl = |args: &[&str]| {
        Command::new("curl")
            .args(["-sS", "--max-time", "5", "--cacert"])
            .arg(dir.path().join("ca.crt"))
            .args(args)
            .output()
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = curl(&[&format!("https://localhost:{port}/healthz")]);
        if out.status.success() {
            assert_eq!(String::from_utf8_lossy(&out.stdout), "ok");
            break;
        }
        assert!(Instant::now() < deadline, "webhook did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    let ready = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("https://localhost:{port}/readyz"),
    ]);
    assert_eq!(String::from_utf8_lossy(&ready.stdout), "503");
    let metrics = Command::new("curl")
        .args(["-sS", &format!("http://127.0.0.1:{metrics_port}/metrics")])
        .output()
        .unwrap();
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    assert!(
        metrics.contains("# TYPE pod_identity_webhook_used gauge"),
        "{metrics}"
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "no exit within the grace period");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(exit.success(), "exit {exit:?}\n{stderr}");
    let messages: Vec<String> = stderr
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
            value["message"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    for expected in [
        "Creating server",
        "Waiting for webhook and metrics servers to shutdown...",
        "Context cancelled, beginning graceful shutdown",
        "Webhook server shutdown gracefully",
        "Metrics server shutdown gracefully",
    ] {
        assert!(
            messages.iter().any(|m| m == expected),
            "missing log {expected:?} in {messages:?}"
        );
    }
    assert!(messages.iter().any(|m| m.starts_with("Listening on ")));
    assert!(!stderr.contains("PRIVATE KEY"));
}

#[test]
fn unusable_tls_files_fail_fast_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let ca = certs::generate_ca("ca").unwrap();
    let one = certs::issue_serving_cert(&ca, &["localhost"], &[]).unwrap();
    let other = certs::issue_serving_cert(&ca, &["localhost"], &[]).unwrap();
    std::fs::write(dir.path().join("tls.crt"), &one.cert_pem).unwrap();
    std::fs::write(dir.path().join("tls.key"), &other.key_pem).unwrap();
    let port = free_port().to_string();
    let output = webhook()
        .args([
            "--in-cluster=false",
            "--kube-api=http://127.0.0.1:1",
            &format!("--port={port}"),
            &format!("--metrics-port={}", free_port()),
            &format!("--tls-cert={}", dir.path().join("tls.crt").display()),
            &format!("--tls-key={}", dir.path().join("tls.key").display()),
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("does not match certificate") && stderr.contains("tls.key"),
        "{stderr}"
    );
    assert!(!stderr.contains(other.key_pem.lines().nth(1).unwrap()));
    // Nothing was bound.
    assert!(TcpListener::bind(("127.0.0.1", port.parse::<u16>().unwrap())).is_ok());

    let missing = webhook()
        .args([
            "--in-cluster=false",
            "--kube-api=http://127.0.0.1:1",
            "--tls-cert=/nonexistent/tls.crt",
            "--tls-key=/nonexistent/tls.key",
        ])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/tls.crt"));
}
