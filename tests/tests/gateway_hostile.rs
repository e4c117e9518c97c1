//! The gateway binary against hostile functions (a real Node.js runtime under serverless-offline running
//! `tests/peers/sls/handlers/hostile.mjs`) and hostile clients (raw sockets).
//!
//! A function's output must not control the client connection, and a client must not hold a connection by
//! sending slowly, nor crash a worker with a malformed header. Each case is checked on one keep-alive
//! connection: after a hostile answer, the same connection must still carry the next request.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use integration::gateway::Gateway;
use integration::serverless::ServerlessOffline;

fn config(endpoint: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: keys, namespace: test}}
stringData: {{accessKey: AKIDSTATICEXAMPLE, secretKey: not-checked-by-serverless-offline}}
---
apiVersion: gateway.kgateway.dev/v1alpha1
kind: Backend
metadata: {{name: hostile, namespace: test}}
spec:
  type: AWS
  aws:
    region: us-east-1
    auth: {{type: Secret, secretRef: {{name: keys}}}}
    lambda: {{functionName: hostile, endpointURL: "{endpoint}", payloadTransformMode: Envoy}}
---
apiVersion: gateway.kgateway.dev/v1alpha1
kind: Backend
metadata: {{name: missing, namespace: test}}
spec:
  type: AWS
  aws:
    region: us-east-1
    auth: {{type: Secret, secretRef: {{name: keys}}}}
    lambda: {{functionName: no-such-function, endpointURL: "{endpoint}"}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r, namespace: test}}
spec:
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /hostile}}}}]
    backendRefs: [{{group: gateway.kgateway.dev, kind: Backend, name: hostile}}]
  - matches: [{{path: {{type: PathPrefix, value: /missing}}}}]
    backendRefs: [{{group: gateway.kgateway.dev, kind: Backend, name: missing}}]
"#
    )
}

struct Setup {
    _dir: tempfile::TempDir,
    _sls: ServerlessOffline,
    gateway: Gateway,
    lambda_port: u16,
}

fn setup(extra_args: &[&str]) -> Setup {
    let sls = ServerlessOffline::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("routes.yaml");
    std::fs::write(&path, config(&sls.endpoint())).expect("write config");
    let gateway = Gateway::start(&path, &[], extra_args);
    gateway.wait_ready(Duration::from_secs(10));
    Setup {
        lambda_port: sls.lambda_port,
        _sls: sls,
        _dir: dir,
        gateway,
    }
}

/// One response read off a keep-alive connection, framed by its Content-Length.
struct Response {
    status: u16,
    head: String,
    body: String,
}

fn read_response(stream: &mut TcpStream) -> Response {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).expect("read the response head");
        assert!(
            n > 0,
            "the gateway closed the connection mid-head: {:?}",
            String::from_utf8_lossy(&raw)
        );
        raw.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&raw).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "the gateway frames its own responses with Content-Length: {head}"
    );
    let mut body = vec![0u8; length];
    stream
        .read_exact(&mut body)
        .expect("read the response body");
    Response {
        status,
        head,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn post(stream: &mut TcpStream, path: &str, body: &str) -> Response {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("send");
    read_response(stream)
}

fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    stream
}

#[test]
#[ignore = "needs peers: run make test"]
fn a_function_cannot_take_over_the_client_connection() {
    let s = setup(&[]);
    let mut stream = connect(s.gateway.addr);

    let framing = post(&mut stream, "/hostile", r#"{"case":"framing"}"#);
    assert_eq!(framing.status, 200, "{}", framing.head);
    assert_eq!(framing.body, "a body longer than one byte");
    assert_eq!(header(&framing, "x-ok"), Some("kept"));
    for dropped in ["connection", "keep-alive", "upgrade", "proxy-authenticate"] {
        assert_eq!(
            header(&framing, dropped),
            None,
            "{dropped} forwarded: {}",
            framing.head
        );
    }

    for status in ["1000", "99", "101", "\"abc\""] {
        let bad = post(
            &mut stream,
            "/hostile",
            &format!(r#"{{"case":"status","status":{status}}}"#),
        );
        assert_eq!(bad.status, 502, "statusCode {status}: {}", bad.head);
        assert!(
            bad.body.contains(r#""error":"MalformedLambdaResponse""#),
            "{}",
            bad.body
        );
    }

    let injected = post(&mut stream, "/hostile", r#"{"case":"bad-headers"}"#);
    assert_eq!((injected.status, injected.body.as_str()), (200, "ok"));
    assert_eq!(header(&injected, "x-ok"), Some("kept"));
    assert_eq!(header(&injected, "set-cookie"), None, "{}", injected.head);
    assert_eq!(header(&injected, "x-injected"), None, "{}", injected.head);

    let no_content = post(&mut stream, "/hostile", r#"{"case":"no-content"}"#);
    assert_eq!((no_content.status, no_content.body.as_str()), (204, ""));

    // After all that, the same connection still works.
    let after = post(&mut stream, "/hostile", r#"{"case":"default"}"#);
    assert_eq!((after.status, after.body.as_str()), (200, "default"));
    assert!(
        s.gateway
            .log()
            .contains("dropped headers the function returned"),
        "dropped headers are logged"
    );
}

#[test]
#[ignore = "needs peers: run make test"]
fn client_errors_name_no_internal_detail_but_the_access_log_does() {
    let s = setup(&[]);
    let mut stream = connect(s.gateway.addr);
    let missing = post(&mut stream, "/missing", "{}");
    assert_eq!(missing.status, 502, "{}", missing.head);
    assert!(
        missing.body.contains(r#""error":"FunctionNotFound""#),
        "{}",
        missing.body
    );
    let port = s.lambda_port.to_string();
    for internal in [port.as_str(), "127.0.0.1", "no-such-function", "arn:aws"] {
        assert!(
            !missing.body.contains(internal),
            "the client saw {internal:?}: {}",
            missing.body
        );
    }
    let request_id = missing
        .body
        .split(r#""requestId":""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a request id in the error")
        .to_string();
    let log = s.gateway.log();
    let line = log
        .lines()
        .find(|l| l.contains(&request_id))
        .unwrap_or_else(|| panic!("no log line with request id {request_id}:\n{log}"));
    assert!(
        line.contains("no-such-function"),
        "the log line keeps the detail: {line}"
    );
}

#[test]
#[ignore = "needs peers: run make test"]
fn slow_and_malformed_clients_cannot_hold_or_crash_the_gateway() {
    let s = setup(&["--header-read-timeout=1s", "--body-read-timeout=1s"]);
    // 50 connections that send half a request line are all closed within the header timeout.
    let mut slow: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut c = connect(s.gateway.addr);
            c.write_all(b"POST /hostile HTTP/1.1\r\nHost: g")
                .expect("send");
            c
        })
        .collect();
    let started = Instant::now();
    for c in &mut slow {
        let mut buf = [0u8; 64];
        let n = c.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "a half-sent request got an answer");
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "held for {:?}",
        started.elapsed()
    );

    // Half a body: 408 after the body timeout.
    let mut half = connect(s.gateway.addr);
    half.write_all(b"POST /hostile HTTP/1.1\r\nHost: g\r\nContent-Length: 50\r\n\r\n{\"case\":")
        .expect("send");
    let timed_out = read_response(&mut half);
    assert_eq!(timed_out.status, 408, "{}", timed_out.head);

    // A Host header that used to panic a worker.
    let mut broken = connect(s.gateway.addr);
    broken
        .write_all(b"POST /hostile HTTP/1.1\r\nHost: [\r\nContent-Length: 2\r\n\r\n{}")
        .expect("send");
    let answer = read_response(&mut broken);
    assert_eq!(answer.status, 200, "{}", answer.head);
    let (_, metrics) = integration::http_exchange(s.gateway.admin, "GET /metrics HTTP/1.1", b"");
    assert!(metrics.contains("gateway_panics_total 0"), "{metrics}");
    assert!(
        metrics.contains(
            r#"gateway_client_connections_closed_total{reason="header_read_timeout"} 50"#
        ),
        "{metrics}"
    );
}
