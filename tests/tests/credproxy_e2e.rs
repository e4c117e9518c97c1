//! credproxy end to end: the real binary against moto 5.2.5 as STS (plain, and through the
//! project's wrapper with AWS-like checks), consumed by the AWS CLI v1 and boto3.

#[path = "credproxy_support/harness.rs"]
mod harness;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::{get, is_z_timestamp, sidecar_command, Proxy};
use integration::moto::{aws_cli_command, python, unsigned_jwt, Moto, ACCOUNT};
use integration::{free_port, isolated_command, workspace_bin};

fn arn(role: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/{role}")
}

/// Replaces a file the way the kubelet does (write elsewhere, rename over).
fn rotate(path: &std::path::Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// `get` with only an `Authorization` header.
fn get_with_auth(addr: SocketAddr, path: &str, authorization: &str) -> harness::Reply {
    get(addr, path, &[("Authorization", authorization)])
}

/// The variables that point an AWS SDK's container provider at `proxy`.
fn container_credentials_env(proxy: &Proxy) -> [(&'static str, std::ffi::OsString); 2] {
    [
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", proxy.url().into()),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            proxy.auth_token_file.clone().into_os_string(),
        ),
    ]
}

/// A valid projected token where [`sidecar_command`] points `AWS_WEB_IDENTITY_TOKEN_FILE`.
fn write_web_identity_token(dir: &std::path::Path) {
    std::fs::write(dir.join("web-identity-token"), unsigned_jwt("sa", 3600)).unwrap();
}

#[track_caller]
fn assert_succeeded(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// moto behind the project's signature-checking wrapper, a role `name` in it (its ARN) and a temp dir.
fn signature_checking_moto_with_role(name: &str) -> (Moto, String, tempfile::TempDir) {
    let moto = Moto::start_wrapped(true);
    let role = moto.create_role(name, None);
    (moto, role, tempfile::tempdir().unwrap())
}

fn access_key(r: &harness::Reply) -> String {
    r.json()["AccessKeyId"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
#[ignore = "needs peers: run make test"]
fn serves_sts_credentials_in_container_format_and_refreshes_before_expiry() {
    let moto = Moto::start_plain();
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(&moto, dir.path(), &arn("app"), &["--duration-seconds=6"]);

    let first = proxy.wait_credentials("first credentials", Duration::from_secs(10), |r| {
        r.status == 200
    });
    assert!(first
        .headers
        .to_ascii_lowercase()
        .contains("content-type: application/json"));
    let v = first.json();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "AccessKeyId",
            "SecretAccessKey",
            "Token",
            "Expiration",
            "AccountId"
        ]
    );
    assert!(v["AccessKeyId"].as_str().unwrap().starts_with("ASIA"));
    assert_eq!(v["SecretAccessKey"].as_str().unwrap().len(), 40);
    assert!(
        is_z_timestamp(v["Expiration"].as_str().unwrap()),
        "{}",
        v["Expiration"]
    );
    assert_eq!(v["AccountId"], ACCOUNT);

    // Any query string is tolerated (aws-sdk-rust#1248).
    let q = proxy.get_authorized("/v1/credentials?id=whatever&x=1");
    assert_eq!(q.status, 200);
    assert_eq!(access_key(&q), access_key(&first));

    // 6 s credentials are refreshed at about half-life: a new key well before the old one expires.
    let started = Instant::now();
    let refreshed = proxy.wait_credentials("refreshed credentials", Duration::from_secs(8), |r| {
        r.status == 200 && access_key(r) != access_key(&first)
    });
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refresh took {:?}",
        started.elapsed()
    );
    assert!(is_z_timestamp(
        refreshed.json()["Expiration"].as_str().unwrap()
    ));

    for addr in [proxy.addr(), proxy.metrics_addr()] {
        assert_eq!(get(addr, "/healthz", &[]).status, 200);
        assert_eq!(get(addr, "/readyz", &[]).status, 200, "{}", proxy.logs());
    }
    let metrics = proxy.metrics();
    assert!(
        harness::metric_sum(
            &metrics,
            "credproxy_sts_requests_total",
            &["outcome=\"success\""]
        ) >= 2.0,
        "{metrics}"
    );
    assert!(
        harness::metric_sum(
            &metrics,
            "credproxy_http_requests_total",
            &["route=\"credentials\"", "status=\"200\""]
        ) >= 3.0
    );
    assert!(
        harness::metric_sum(
            &metrics,
            "credproxy_credentials_seconds_until_expiry",
            &["role=\"default\""]
        ) > 0.0
    );
    assert!(metrics.contains("credproxy_http_request_duration_seconds_bucket"));
}

#[test]
#[ignore = "needs peers: run make test"]
fn auth_token_host_guard_and_routing() {
    let moto = Moto::start_plain();
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(&moto, dir.path(), &arn("app"), &[]);
    proxy.wait_credentials("credentials", Duration::from_secs(10), |r| r.status == 200);

    // The generated token: 256 bits as 64 hex characters, no newline, mode 0640.
    let token = proxy.auth_token();
    assert_eq!(token.len(), 64);
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&proxy.auth_token_file)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o640);

    let addr = proxy.addr();
    let missing = get(addr, "/v1/credentials", &[]);
    assert_eq!(missing.status, 401);
    assert_eq!(missing.json()["Code"], "Unauthorized");
    let wrong = get(
        addr,
        "/v1/credentials",
        &[("Authorization", &"0".repeat(64))],
    );
    assert_eq!(wrong.status, 401);
    let bearer = get(
        addr,
        "/v1/credentials",
        &[("Authorization", &format!("Bearer {token}"))],
    );
    assert_eq!(bearer.status, 200);

    // DNS rebinding: a foreign Host is refused even with the right token; loopback names are fine.
    let rebound = get(
        addr,
        "/v1/credentials",
        &[("Authorization", &token), ("Host", "evil.example.com:80")],
    );
    assert_eq!(rebound.status, 403);
    assert_eq!(rebound.json()["Code"], "HostNotAllowed");
    let localhost = get(
        addr,
        "/v1/credentials",
        &[
            ("Authorization", &token),
            ("Host", &format!("localhost:{}", proxy.port)),
        ],
    );
    assert_eq!(localhost.status, 200);

    // An unknown role is indistinguishable from a wrong token (role names cannot be probed).
    let unknown = proxy.get_authorized("/v1/credentials/nope");
    assert_eq!(unknown.status, 401);
    assert_eq!(unknown.body, wrong.body);
    assert_eq!(proxy.get_authorized("/v1/credentialsX").status, 404);
    assert_eq!(
        get(addr, "/metrics", &[]).status,
        404,
        "metrics only on the metrics listener"
    );
    assert_eq!(
        get_with_auth(proxy.metrics_addr(), "/v1/credentials", &token).status,
        404
    );
    for r in [&missing, &wrong, &rebound] {
        assert!(!r.body.contains(&token));
        assert!(r.json()["Message"].is_string());
    }
}

#[test]
#[ignore = "needs peers: run make test"]
fn sts_down_keeps_serving_cached_credentials_until_expiry_then_502() {
    let mut moto = Moto::start_plain();
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(
        &moto,
        dir.path(),
        &arn("app"),
        &["--duration-seconds=8", "--sts-timeout=1s"],
    );
    let first = proxy.wait_credentials("credentials", Duration::from_secs(10), |r| r.status == 200);
    let fetched_at = Instant::now();
    moto.stop();

    // Cached credentials keep being served although refreshes fail: wait for a failed refresh first.
    let deadline = Instant::now() + Duration::from_secs(8);
    while proxy.metric_sum("credproxy_refresh_failures_total", &[]) < 1.0 {
        assert!(
            Instant::now() < deadline,
            "no failed refresh: {}",
            proxy.metrics()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let during = proxy.credentials();
    assert_eq!(during.status, 200, "{}", proxy.logs());
    assert_eq!(access_key(&during), access_key(&first));
    assert!(proxy.metric_sum("credproxy_refresh_failures_total", &[]) >= 1.0);

    // …until they are about to expire (8 s lifetime, 1 s margin); then the documented error.
    let failed = proxy.wait_credentials("the STS failure", Duration::from_secs(8), |r| {
        r.status != 200
    });
    assert!(
        fetched_at.elapsed() >= Duration::from_secs(6),
        "stopped serving too early: {:?}",
        fetched_at.elapsed()
    );
    assert!(failed.status == 502 || failed.status == 504, "{failed:?}");
    let code = failed.json()["Code"].as_str().unwrap().to_string();
    assert!(code == "StsUnreachable" || code == "StsTimeout", "{code}");
    assert!(!failed.body.contains(&access_key(&first)));
    assert_eq!(get(proxy.metrics_addr(), "/readyz", &[]).status, 503);
    assert!(proxy.metric_sum("credproxy_sts_requests_total", &["outcome=\"error\""]) >= 2.0);
}

#[test]
#[ignore = "needs peers: run make test"]
fn rotated_web_identity_token_is_read_on_every_exchange() {
    let (moto, role, dir) = signature_checking_moto_with_role("rotating");
    let proxy = Proxy::start(&moto, dir.path(), &role, &["--duration-seconds=4"]);
    let first = proxy.wait_credentials("credentials", Duration::from_secs(10), |r| r.status == 200);

    // The kubelet swaps in a token STS considers expired: the next refresh is rejected…
    rotate(
        &proxy.token_file,
        &unsigned_jwt("system:serviceaccount:ns:app", -60),
    );
    let deadline = Instant::now() + Duration::from_secs(6);
    while proxy.metric_sum(
        "credproxy_sts_requests_total",
        &["code=\"ExpiredTokenException\""],
    ) < 2.0
    {
        assert!(
            Instant::now() < deadline,
            "rotation not seen: {}",
            proxy.metrics()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // …the still-valid credentials stay served meanwhile, then the rejection is reported.
    let rejected =
        proxy.wait_credentials("the rejection", Duration::from_secs(6), |r| r.status != 200);
    assert_eq!(rejected.status, 502);
    assert_eq!(rejected.json()["Code"], "ExpiredTokenException");

    // A fresh token is picked up by the next retry.
    rotate(
        &proxy.token_file,
        &unsigned_jwt("system:serviceaccount:ns:app", 3600),
    );
    let recovered = proxy.wait_credentials("recovery", Duration::from_secs(5), |r| r.status == 200);
    assert_ne!(access_key(&recovered), access_key(&first));
}

#[test]
#[ignore = "needs peers: run make test"]
fn missing_then_empty_token_file_gives_503_and_recovers() {
    let moto = Moto::start_plain();
    let dir = tempfile::tempdir().unwrap();
    let (port, mport) = (free_port(), free_port());
    let proxy = Proxy::spawn(
        sidecar_command(&moto, dir.path(), &arn("app"), port, mport, &[]),
        dir.path(),
        port,
        mport,
    );

    let missing =
        proxy.wait_credentials("missing token", Duration::from_secs(5), |r| r.status == 503);
    assert_eq!(missing.json()["Code"], "WebIdentityTokenUnreadable");
    assert!(missing.json()["Message"]
        .as_str()
        .unwrap()
        .contains("web-identity-token"));

    std::fs::write(&proxy.token_file, "").unwrap();
    let empty = proxy.wait_credentials("empty token", Duration::from_secs(5), |r| {
        r.status == 503 && r.json()["Code"] == "WebIdentityTokenEmpty"
    });
    assert!(empty.json()["Message"]
        .as_str()
        .unwrap()
        .contains("is empty"));
    assert_eq!(
        proxy.metric_sum("credproxy_sts_requests_total", &[]),
        0.0,
        "no STS call without a token"
    );

    std::fs::write(&proxy.token_file, unsigned_jwt("sa", 3600)).unwrap();
    proxy.wait_credentials("recovery", Duration::from_secs(5), |r| r.status == 200);
    let logs = proxy.logs();
    assert_eq!(
        logs.matches("cannot use the web identity token file")
            .count(),
        2,
        "one line per distinct problem:\n{logs}"
    );
}

#[test]
#[ignore = "needs peers: run make test"]
fn sts_rejecting_the_role_is_logged_once_and_recovers_when_fixed() {
    let moto = Moto::start_wrapped(true);
    let dir = tempfile::tempdir().unwrap();
    let role = arn("not-yet-created");
    let proxy = Proxy::start(&moto, dir.path(), &role, &[]);

    let denied = proxy.wait_credentials("denial", Duration::from_secs(5), |r| r.status == 502);
    let v = denied.json();
    assert_eq!(v["Code"], "AccessDenied");
    assert!(v["Message"].as_str().unwrap().contains(&role), "{v}");
    // Several retries (backoff capped at 1 s), one log line.
    let deadline = Instant::now() + Duration::from_secs(8);
    while proxy.metric_sum("credproxy_sts_requests_total", &["code=\"AccessDenied\""]) < 3.0 {
        assert!(
            Instant::now() < deadline,
            "fewer than 3 attempts: {}",
            proxy.metrics()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let logs = proxy.logs();
    assert_eq!(logs.matches("configuration error").count(), 1, "{logs}");

    moto.create_role("not-yet-created", None);
    proxy.wait_credentials("recovery", Duration::from_secs(5), |r| r.status == 200);
    assert!(proxy.logs().contains("STS recovered"));
}

#[test]
#[ignore = "needs peers: run make test"]
fn malformed_token_is_rejected_and_re_read_once_per_attempt() {
    let (moto, role, dir) = signature_checking_moto_with_role("app");
    std::fs::write(dir.path().join("web-identity-token"), "not-a-jwt").unwrap();
    let proxy = Proxy::start(
        &moto,
        dir.path(),
        &role,
        &["--backoff-base=2s", "--backoff-max=2s"],
    );
    let rejected = proxy.wait_credentials("rejection", Duration::from_secs(5), |r| r.status == 502);
    assert_eq!(rejected.json()["Code"], "InvalidIdentityToken");
    // Each attempt is: call, re-read the token, call once more — then back off.
    let calls = proxy.metric_sum(
        "credproxy_sts_requests_total",
        &["code=\"InvalidIdentityToken\""],
    );
    assert_eq!(calls % 2.0, 0.0, "calls come in pairs: {calls}");
    assert!(calls >= 2.0);
}

#[test]
#[ignore = "needs peers: run make test"]
fn no_secret_appears_in_logs_or_error_bodies() {
    let (moto, role, dir) = signature_checking_moto_with_role("app");
    let web_token = unsigned_jwt("system:serviceaccount:ns:secret-subject", 3600);
    std::fs::write(dir.path().join("web-identity-token"), &web_token).unwrap();
    // Most verbose logging, SDK internals included.
    let proxy = Proxy::start(
        &moto,
        dir.path(),
        &role,
        &[
            "--duration-seconds=4",
            "--log-level=trace",
            "--log-format=plain",
        ],
    );
    let creds = proxy
        .wait_credentials("credentials", Duration::from_secs(10), |r| r.status == 200)
        .json();
    proxy.wait_credentials("a refresh", Duration::from_secs(6), |r| {
        r.status == 200 && r.json()["AccessKeyId"] != creds["AccessKeyId"]
    });
    // A rejected token produces error logs and an error body.
    rotate(&proxy.token_file, "bad.token.value-that-is-secret");
    let failed = proxy.wait_credentials("rejection", Duration::from_secs(8), |r| r.status == 502);
    let wrong_auth = get_with_auth(proxy.addr(), "/v1/credentials", "guess");

    let logs = proxy.logs();
    assert!(logs.len() > 1000, "trace logging produced output");
    let auth = proxy.auth_token();
    let secrets = [
        ("web identity token", web_token.as_str()),
        ("rotated token", "bad.token.value-that-is-secret"),
        ("auth token", auth.as_str()),
        ("access key id", creds["AccessKeyId"].as_str().unwrap()),
        (
            "secret access key",
            creds["SecretAccessKey"].as_str().unwrap(),
        ),
        ("session token", creds["Token"].as_str().unwrap()),
    ];
    for (what, secret) in secrets {
        assert!(!logs.contains(secret), "{what} leaked into the logs");
        assert!(
            !failed.body.contains(secret),
            "{what} leaked into an error body"
        );
        assert!(
            !wrong_auth.body.contains(secret),
            "{what} leaked into an error body"
        );
    }
}

/// A TCP relay that holds every new connection for `delay` before forwarding it: real moto, slow network.
fn slow_relay(target: SocketAddr, delay: Duration) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    std::thread::spawn(move || {
        for inbound in listener.incoming().flatten() {
            counter.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                let Ok(outbound) = TcpStream::connect(target) else {
                    return;
                };
                let (mut a, mut b) = (inbound.try_clone().unwrap(), outbound.try_clone().unwrap());
                let t = std::thread::spawn(move || {
                    let _ = std::io::copy(&mut a, &mut b);
                    let _ = b.shutdown(std::net::Shutdown::Write);
                });
                let (mut c, mut d) = (outbound, inbound);
                let _ = std::io::copy(&mut c, &mut d);
                let _ = d.shutdown(std::net::Shutdown::Write);
                let _ = t.join();
            });
        }
    });
    (addr, connections)
}

async fn burst(url: &str, token: &str, n: usize) -> Vec<(u16, String)> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1000)
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (client, url, token) = (client.clone(), url.to_string(), token.to_string());
            tokio::spawn(async move {
                let r = client
                    .get(url)
                    .header("Authorization", token)
                    .send()
                    .await
                    .expect("request");
                let status = r.status().as_u16();
                let body: serde_json::Value = r.json().await.expect("json body");
                (
                    status,
                    body["AccessKeyId"].as_str().unwrap_or_default().to_string(),
                )
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs peers: run make test"]
async fn one_sts_call_per_refresh_under_1000_concurrent_requests() {
    let moto = Moto::start_plain();
    // Every STS connection takes 700 ms, so requests really pile up behind the first exchange.
    let (relay, sts_connections) = slow_relay(moto.addr(), Duration::from_millis(700));
    let dir = tempfile::tempdir().unwrap();
    write_web_identity_token(dir.path());
    let (port, mport) = (free_port(), free_port());
    let mut cmd = sidecar_command(
        &moto,
        dir.path(),
        &arn("app"),
        port,
        mport,
        &[
            "--duration-seconds=6",
            "--refresh-jitter=0",
            "--cold-start-wait=3s",
        ],
    );
    cmd.env("AWS_ENDPOINT_URL_STS", format!("http://{relay}"));
    let proxy = Proxy::spawn(cmd, dir.path(), port, mport);
    let token = proxy.auth_token();

    // Cold start: 1000 concurrent requests while the first exchange is in flight.
    let cold = burst(&proxy.url(), &token, 1000).await;
    assert!(
        cold.iter().all(|(s, _)| *s == 200),
        "{:?}",
        cold.iter().find(|(s, _)| *s != 200)
    );
    let first_key = cold[0].1.clone();
    assert!(cold.iter().all(|(_, k)| *k == first_key));
    assert_eq!(proxy.metric_sum("credproxy_sts_requests_total", &[]), 1.0);

    // The refresh (at ~half of 6 s) is in flight once the relay sees its connection.
    let deadline = Instant::now() + Duration::from_secs(6);
    while sts_connections.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "no refresh started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let during = burst(&proxy.url(), &token, 1000).await;
    assert!(during.iter().all(|(s, _)| *s == 200));
    let deadline = Instant::now() + Duration::from_secs(5);
    while access_key(&proxy.credentials()) == first_key {
        assert!(Instant::now() < deadline, "the refresh never completed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        proxy.metric_sum("credproxy_sts_requests_total", &[]),
        2.0,
        "one STS call per refresh"
    );
    assert_eq!(sts_connections.load(Ordering::SeqCst), 2);
}

#[test]
#[ignore = "needs peers: run make test"]
fn sigterm_keeps_serving_through_the_drain_period() {
    let moto = Moto::start_plain();
    let dir = tempfile::tempdir().unwrap();
    let mut proxy = Proxy::start(&moto, dir.path(), &arn("app"), &["--drain=2s"]);
    proxy.wait_credentials("credentials", Duration::from_secs(10), |r| r.status == 200);
    let pid = proxy.guard.id();
    let signalled = Instant::now();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    // Draining has begun once readiness says so; credentials are still served meanwhile.
    let deadline = Instant::now() + Duration::from_secs(2);
    let ready = loop {
        let ready = get(proxy.metrics_addr(), "/readyz", &[]);
        if ready.status == 503 {
            break ready;
        }
        assert!(Instant::now() < deadline, "never not-ready: {ready:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        proxy.credentials().status,
        200,
        "still serving while draining"
    );
    assert_eq!(ready.json()["Code"], "Draining");
    let status = proxy.guard.child_mut().wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(
        signalled.elapsed() >= Duration::from_millis(1900),
        "exited after {:?}",
        signalled.elapsed()
    );
}

#[test]
#[ignore = "needs peers: run make test"]
fn invalid_configuration_exits_64_with_one_line_per_problem_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = isolated_command(workspace_bin("credproxy"))
        .env("AWS_ROLE_ARN", "arn:aws:s3:::not-a-role")
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .args([
            format!("--listen=127.0.0.1:{port}"),
            "--listen=not-an-address".into(),
            "--auth-token-file-mode=0999".into(),
            format!("--auth-token-file={}/auth", dir.path().display()),
            "--duration-seconds=99999".into(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 6, "{stderr}");
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("credproxy: invalid configuration: ")),
        "{stderr}"
    );
    for needle in [
        "not-an-address",
        "arn:aws:s3:::not-a-role",
        "0999",
        "99999",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_REGION",
    ] {
        assert!(stderr.contains(needle), "missing {needle}: {stderr}");
    }
    assert!(!dir.path().join("auth").exists(), "nothing written");
    assert!(
        TcpListener::bind(("127.0.0.1", port)).is_ok(),
        "nothing bound"
    );

    // An auth token file ending in a newline would break every SDK: refused up front.
    std::fs::write(dir.path().join("auth"), "token\n").unwrap();
    std::fs::write(dir.path().join("wit"), "x").unwrap();
    let out = isolated_command(workspace_bin("credproxy"))
        .env("AWS_ROLE_ARN", arn("app"))
        .env("AWS_WEB_IDENTITY_TOKEN_FILE", dir.path().join("wit"))
        .env("AWS_REGION", "us-east-1")
        .args([
            format!("--listen=127.0.0.1:{port}"),
            format!("--auth-token-file={}/auth", dir.path().display()),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("contains a newline"), "{stderr}");
    assert!(!stderr.contains("token\n"));

    let help = isolated_command(workspace_bin("credproxy"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--listen",
        "--auth-token-file",
        "--auth-token-file-mode",
        "--metrics-listen",
        "--config",
        "CREDPROXY_DRAIN",
        "AWS_ROLE_ARN",
        "AWS_ENDPOINT_URL_STS",
        "AWS_STS_REGIONAL_ENDPOINTS",
        "AWS_DEFAULT_REGION",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

#[test]
#[ignore = "needs peers: run make test"]
fn ipv6_loopback_listener_is_served_or_skipped_with_a_log_line() {
    let moto = Moto::start_plain();
    let dir = tempfile::tempdir().unwrap();
    write_web_identity_token(dir.path());
    let (port, mport) = (free_port(), free_port());
    let (v4, v6) = (
        format!("--listen=127.0.0.1:{port}"),
        format!("--listen=[::1]:{port}"),
    );
    let cmd = sidecar_command(&moto, dir.path(), &arn("app"), port, mport, &[&v4, &v6]);
    let proxy = Proxy::spawn(cmd, dir.path(), port, mport);
    proxy.wait_credentials("credentials", Duration::from_secs(10), |r| r.status == 200);
    let token = proxy.auth_token();
    if TcpListener::bind("[::1]:0").is_ok() {
        let v6: SocketAddr = format!("[::1]:{port}").parse().unwrap();
        let r = get_with_auth(v6, "/v1/credentials", &token);
        assert_eq!(r.status, 200, "{r:?}");
    } else {
        assert!(
            proxy.logs().contains("address family unavailable"),
            "{}",
            proxy.logs()
        );
    }
}

#[test]
#[ignore = "needs peers: run make test"]
fn standalone_config_serves_named_roles_with_their_own_tokens() {
    let moto = Moto::start_plain();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    std::fs::write(dir.path().join("t-dev"), unsigned_jwt("dev", 3600)).unwrap();
    std::fs::write(dir.path().join("t-prod"), unsigned_jwt("prod", 3600)).unwrap();
    std::fs::write(dir.path().join("prod-token"), "prod-only-token").unwrap();
    let (port, mport) = (free_port(), free_port());
    let config = format!(
        "listen: ['127.0.0.1:{port}']\nmetrics_listen: '127.0.0.1:{mport}'\nauth_token_file: {d}/auth-token\nroles:\n  dev:\n    role_arn: {dev}\n    web_identity_token_file: {d}/t-dev\n    region: us-east-1\n    sts_endpoint: {ep}\n    session_name: dev-session\n  prod:\n    role_arn: arn:aws:iam::210987654321:role/prod\n    web_identity_token_file: {d}/t-prod\n    region: us-east-1\n    sts_endpoint: {ep}\n    auth_token_file: {d}/prod-token\n",
        dev = arn("dev"),
        ep = moto.endpoint()
    );
    std::fs::write(dir.path().join("credproxy.yaml"), config).unwrap();
    let mut cmd = isolated_command(workspace_bin("credproxy"));
    cmd.args([
        format!("--config={d}/credproxy.yaml"),
        "--serve-role-arn".into(),
    ]);
    let proxy = Proxy::spawn(cmd, dir.path(), port, mport);
    let shared = proxy.auth_token();

    let deadline = Instant::now() + Duration::from_secs(10);
    let dev = loop {
        let r = get_with_auth(proxy.addr(), "/v1/credentials/dev", &shared);
        if r.status == 200 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(dev.status, 200, "{}", proxy.logs());
    assert_eq!(dev.json()["RoleArn"], arn("dev"));
    assert_eq!(dev.json()["AccountId"], ACCOUNT);
    assert_eq!(
        get_with_auth(proxy.addr(), "/v1/credentials/prod", &shared).status,
        401
    );
    let prod = get_with_auth(proxy.addr(), "/v1/credentials/prod", "prod-only-token");
    assert_eq!(prod.status, 200);
    assert_eq!(prod.json()["AccountId"], "210987654321");
    // Two roles and no default_role: the bare path names no role (answered like an unknown role).
    assert_eq!(
        get_with_auth(proxy.addr(), "/v1/credentials", &shared).status,
        401
    );
}

fn assumed_role_arn_in(stdout: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(stdout)));
    v["Arn"].as_str().unwrap().to_string()
}

#[test]
#[ignore = "needs peers: run make test"]
fn aws_cli_v1_and_boto3_use_credproxy_credentials_against_signature_checking_moto() {
    let (moto, role, dir) = signature_checking_moto_with_role("app-role");
    let proxy = Proxy::start(&moto, dir.path(), &role, &[]);
    proxy.wait_credentials("credentials", Duration::from_secs(10), |r| r.status == 200);
    let expected = format!("arn:aws:sts::{ACCOUNT}:assumed-role/app-role/credproxy-test");

    // AWS CLI v1: the container provider, SigV4-signed GetCallerIdentity verified by the wrapper.
    let out = aws_cli_command()
        .envs(container_credentials_env(&proxy))
        .args([
            "sts",
            "get-caller-identity",
            "--output",
            "json",
            "--endpoint-url",
            &moto.endpoint(),
        ])
        .output()
        .unwrap();
    assert_succeeded(&out);
    assert_eq!(assumed_role_arn_in(&out.stdout), expected);

    // boto3 in one process: two calls, credentials fetched from credproxy.
    let script = "import boto3, json, sys\nsts = boto3.client('sts', endpoint_url=sys.argv[1], region_name='us-east-1')\nids = [sts.get_caller_identity()['Arn'] for _ in range(2)]\ncreds = boto3.Session().get_credentials()\nprint(json.dumps({'Arn': ids[1], 'method': creds.method}))\n";
    let out = isolated_command(python())
        .envs(container_credentials_env(&proxy))
        .args(["-c", script, &moto.endpoint()])
        .output()
        .unwrap();
    assert_succeeded(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Arn"], expected);
    assert_eq!(v["method"], "container-role");

    // A wrong token file is refused by credproxy, and the CLI reports it.
    std::fs::write(dir.path().join("wrong"), "wrong-token").unwrap();
    let out = aws_cli_command()
        .env("AWS_CONTAINER_CREDENTIALS_FULL_URI", proxy.url())
        .env(
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            dir.path().join("wrong"),
        )
        .args([
            "sts",
            "get-caller-identity",
            "--endpoint-url",
            &moto.endpoint(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(proxy.metric_sum("credproxy_http_requests_total", &["status=\"401\""]) >= 1.0);
}

#[test]
#[ignore = "needs peers: run make test"]
fn exec_runs_the_command_with_the_endpoint_and_returns_its_status() {
    let (moto, role, dir) = signature_checking_moto_with_role("exec-role");
    std::fs::write(dir.path().join("wit"), unsigned_jwt("sa", 3600)).unwrap();
    let base = |cmd: &mut std::process::Command| {
        cmd.env("AWS_ROLE_ARN", &role)
            .env("AWS_WEB_IDENTITY_TOKEN_FILE", dir.path().join("wit"))
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL_STS", moto.endpoint())
            .env("AWS_ROLE_SESSION_NAME", "exec-session");
    };
    let mut cmd = isolated_command(workspace_bin("credproxy"));
    base(&mut cmd);
    let out = cmd
        .args(["exec", "--"])
        .arg(integration::moto::aws_cli())
        .args([
            "sts",
            "get-caller-identity",
            "--region",
            "us-east-1",
            "--output",
            "json",
            "--endpoint-url",
            &moto.endpoint(),
        ])
        .output()
        .unwrap();
    assert_succeeded(&out);
    assert_eq!(
        assumed_role_arn_in(&out.stdout),
        format!("arn:aws:sts::{ACCOUNT}:assumed-role/exec-role/exec-session")
    );

    let mut cmd = isolated_command(workspace_bin("credproxy"));
    base(&mut cmd);
    let out = cmd
        .args(["exec", "--", "sh", "-c", "echo \"$AWS_CONTAINER_CREDENTIALS_FULL_URI\"; test -z \"$AWS_ROLE_ARN$AWS_WEB_IDENTITY_TOKEN_FILE\" && test -s \"$AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE\" && exit 7"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = String::from_utf8_lossy(&out.stdout);
    assert!(
        url.starts_with("http://127.0.0.1:") && url.trim_end().ends_with("/v1/credentials"),
        "{url}"
    );
}

#[test]
#[ignore = "needs peers: run make test"]
fn wrapper_enforces_lambda_invoke_permissions_for_credproxy_credentials() {
    // The wrapper's Lambda patches, exercised with credentials served by credproxy: allowed and
    // denied roles, lambda:InvokeFunction as the IAM action, restJson1 auth errors.
    let moto = Moto::start_wrapped(true);
    moto.use_lambda_simple();
    let function = moto.create_function("echo");
    assert!(function.ends_with(":function:echo"), "{function}");
    let allow = serde_json::json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": "*"}]});
    let deny = serde_json::json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "lambda:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "lambda:InvokeFunction", "Resource": "*"}]});
    let invoker = moto.create_role("invoker", Some(&allow));
    let denied = moto.create_role("denied", Some(&deny));
    moto.queue_lambda_results(&[r#"{"statusCode":200,"body":"queued"}"#]);

    let script = "import boto3, sys, json\nlam = boto3.client('lambda', endpoint_url=sys.argv[1], region_name='us-east-1')\ntry:\n    r = lam.invoke(FunctionName='echo', Payload=b'{\"k\":\"v\"}')\n    print(json.dumps({'status': r['StatusCode'], 'body': r['Payload'].read().decode()}))\nexcept lam.exceptions.ClientError as e:\n    print(json.dumps({'error': e.response['Error']['Code']}))\n";
    for (role, expect) in [(&invoker, "queued"), (&denied, "AccessDeniedException")] {
        let dir = tempfile::tempdir().unwrap();
        let proxy = Proxy::start(&moto, dir.path(), role, &[]);
        proxy.wait_credentials("credentials", Duration::from_secs(10), |r| r.status == 200);
        let out = isolated_command(python())
            .envs(container_credentials_env(&proxy))
            .args(["-c", script, &moto.endpoint()])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_succeeded(&out);
        assert!(stdout.contains(expect), "{role}: {stdout}");
    }
}
