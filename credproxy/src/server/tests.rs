//! In-process HTTP tests: the real listener and handlers over a role fed by a fake exchanger.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::credentials::Credentials;
use crate::exchange::{Exchanger, Failure, FailureKind};
use crate::metrics::Metrics;
use crate::role::{spawn, RoleSettings, SystemClock, UnitRandom};
use crate::schedule::RefreshPolicy;

struct Fixed(Result<Duration, Failure>);

impl Exchanger for Fixed {
    async fn exchange(&self, _token: &str) -> Result<Credentials, Failure> {
        let lifetime = self.0.clone()?;
        Ok(Credentials {
            access_key_id: "ASIAINPROCESSTEST000".into(),
            secret_access_key: "in-process-secret".into(),
            session_token: "in-process-session".into(),
            expiration: time::OffsetDateTime::now_utc() + lifetime,
            account_id: Some("123456789012".into()),
            assumed_role_arn: None,
        })
    }
}

#[test]
fn host_names_drop_the_port() {
    assert_eq!(host_name("127.0.0.1:9911"), "127.0.0.1");
    assert_eq!(host_name("localhost"), "localhost");
    assert_eq!(host_name("[::1]:9911"), "::1");
    assert_eq!(host_name("[fd00:ec2::23]"), "fd00:ec2::23");
    assert_eq!(host_name("evil.example.com:9911"), "evil.example.com");
}

/// Starts a server with roles `default` (healthy) and `broken` (STS says AccessDenied).
async fn start(dir: &std::path::Path) -> (SocketAddr, SocketAddr) {
    std::fs::write(dir.join("token"), "web-identity").unwrap();
    let metrics = Arc::new(Metrics::new());
    let random: UnitRandom = Arc::new(|| 0.5);
    let settings = |name: &str| RoleSettings {
        name: name.into(),
        role_arn: format!("arn:aws:iam::123456789012:role/{name}"),
        token_file: dir.join("token"),
        policy: RefreshPolicy::default(),
        margin: Duration::from_secs(15),
        ready_min_life: Duration::from_secs(60),
        serve_role_arn: false,
    };
    let ok = spawn(
        settings("default"),
        Fixed(Ok(Duration::from_secs(3600))),
        Arc::new(SystemClock),
        random.clone(),
        metrics.clone(),
    );
    let denied = Failure::new(
        FailureKind::Permanent,
        "AccessDenied",
        "not authorized to assume the role",
    );
    let broken = spawn(
        settings("broken"),
        Fixed(Err(denied)),
        Arc::new(SystemClock),
        random,
        metrics.clone(),
    );
    let app = Arc::new(App {
        roles: vec![
            ServedRole {
                handle: ok,
                token: AuthToken::from_bytes(b"tok-default".to_vec()),
            },
            ServedRole {
                handle: broken,
                token: AuthToken::from_bytes(b"tok-broken".to_vec()),
            },
        ],
        default_role: Some(0),
        allowed_hosts: vec!["127.0.0.1".into(), "localhost".into()],
        metrics,
        cold_start_wait: Duration::from_millis(500),
        draining: AtomicBool::new(false),
    });
    let creds = bind_all(&["127.0.0.1:0".parse().unwrap()], "test")
        .await
        .unwrap()
        .remove(0);
    let metrics_listener = bind_all(&["127.0.0.1:0".parse().unwrap()], "test")
        .await
        .unwrap()
        .remove(0);
    let addrs = (
        creds.local_addr().unwrap(),
        metrics_listener.local_addr().unwrap(),
    );
    tokio::spawn(serve(creds, app.clone(), ListenerKind::Credentials));
    tokio::spawn(serve(metrics_listener, app, ListenerKind::Metrics));
    addrs
}

/// Blocking raw HTTP/1.1 (run on a blocking thread so the server keeps running).
async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let path = path.to_string();
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        let mut req = format!("GET {path} HTTP/1.1\r\nConnection: close\r\n");
        if !headers.iter().any(|(k, _)| k == "Host") {
            req.push_str(&format!("Host: {addr}\r\n"));
        }
        for (k, v) in &headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, out.split_once("\r\n\r\n").unwrap().1.to_string())
    })
    .await
    .unwrap()
}

fn code(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    v["Code"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_statuses_and_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, metrics_addr) = start(dir.path()).await;
    let auth = [("Authorization", "tok-default")];

    let (status, body) = get(addr, "/v1/credentials?anything=1", &auth).await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["AccessKeyId"], "ASIAINPROCESSTEST000");
    assert!(v["Expiration"].as_str().unwrap().ends_with('Z'));
    assert_eq!(get(addr, "/v1/credentials/default", &auth).await.0, 200);

    let (status, body) = get(addr, "/v1/credentials", &[]).await;
    assert_eq!((status, code(&body)), (401, "Unauthorized".into()));
    let (status, body) = get(addr, "/v1/credentials", &[("Authorization", "tok-broken")]).await;
    assert_eq!(status, 401, "one role's token does not open another");
    assert!(!body.contains("tok-"));
    let (status, body) = get(
        addr,
        "/v1/credentials",
        &[
            ("Authorization", "tok-default"),
            ("Host", "attacker.example:9911"),
        ],
    )
    .await;
    assert_eq!((status, code(&body)), (403, "HostNotAllowed".into()));
    let (status, body) = get(
        addr,
        "/v1/credentials/broken",
        &[("Authorization", "tok-broken")],
    )
    .await;
    assert_eq!((status, code(&body)), (502, "AccessDenied".into()));
    // An unknown role gets exactly the reply of a wrong token, with or without a valid token.
    let wrong_token = get(addr, "/v1/credentials/broken", &[("Authorization", "nope")]).await;
    assert_eq!(
        (wrong_token.0, code(&wrong_token.1)),
        (401, "Unauthorized".into())
    );
    for headers in [&auth[..], &[("Authorization", "nope")], &[]] {
        assert_eq!(
            get(addr, "/v1/credentials/missing", headers).await,
            wrong_token
        );
    }
    assert_eq!(get(addr, "/nope", &auth).await.0, 404);

    // Health on both listeners; readiness needs every role (one is failing).
    for a in [addr, metrics_addr] {
        assert_eq!(get(a, "/healthz", &[]).await.0, 200);
        let (status, body) = get(a, "/readyz", &[]).await;
        assert_eq!((status, code(&body)), (503, "CredentialsNotReady".into()));
    }
    let (status, text) = get(metrics_addr, "/metrics", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(
        series(
            &text,
            "credproxy_http_requests_total{route=\"credentials\",status=\"200\"}"
        ),
        Some(2.0),
        "{text}"
    );
    assert!(
        series(
            &text,
            "credproxy_sts_requests_total{role=\"broken\",outcome=\"error\",code=\"AccessDenied\"}"
        )
        .is_some_and(|v| v >= 1.0),
        "{text}"
    );
    assert_eq!(
        series(&text, "credproxy_credentials_ready{role=\"default\"}"),
        Some(1.0),
        "{text}"
    );
    assert!(!text.contains("in-process-secret"));
}

/// The value of exactly one series (name and every label), e.g. `x_total{a="b"}`, in a Prometheus text page.
fn series(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            (key == series).then(|| value.parse().ok())?
        })
}

/// With the cap reached, a new connection is not served until one of the open ones closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let app = Arc::new(App {
        roles: Vec::new(),
        default_role: None,
        allowed_hosts: vec!["127.0.0.1".into()],
        metrics: Arc::new(Metrics::new()),
        cold_start_wait: Duration::ZERO,
        draining: AtomicBool::new(false),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_with_limit(listener, app, ListenerKind::Metrics, 2));
    let healthz = |stream: &mut TcpStream| {
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 12];
        stream.read_exact(&mut buf).map(|_| buf)
    };
    tokio::task::spawn_blocking(move || {
        // Two kept-alive connections take both slots (each answered once, so each was accepted).
        let mut held: Vec<TcpStream> = (0..2)
            .map(|_| {
                let mut s = TcpStream::connect(addr).unwrap();
                assert_eq!(&healthz(&mut s).unwrap(), b"HTTP/1.1 200");
                s
            })
            .collect();
        let mut third = TcpStream::connect(addr).unwrap();
        third
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        assert!(healthz(&mut third).is_err(), "served beyond the cap");
        held.pop();
        third
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 12];
        third.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200", "served once a slot was free");
    })
    .await
    .unwrap();
}
