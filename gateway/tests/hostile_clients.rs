//! The gateway's HTTP layer against hostile clients, over real loopback sockets, in-process: half-sent headers
//! and bodies, idle and non-reading connections, oversized bodies (Content-Length and chunked), broken Host
//! headers, a panicking request and the connection cap. Lambda is a scripted stand-in (the pipeline's
//! Lambda-facing behaviour is covered by the peer tests in `tests/tests/gateway_*.rs`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gateway::config::{compile, LoadOptions};
use gateway::model::LambdaReply;
use gateway::server::Server;
use gateway::state::{ClientLimits, Dependencies, Gateway, Settings};
use gateway::upstream::{Upstream, UpstreamFuture};
use http_body_util::Full;

const CONFIG: &str = r#"
apiVersion: v1
kind: Secret
metadata: {name: keys, namespace: ns}
stringData: {accessKey: AKIDEXAMPLE, secretKey: not-a-real-secret}
---
apiVersion: gateway.kgateway.dev/v1alpha1
kind: Backend
metadata: {name: echo, namespace: ns}
spec:
  type: AWS
  aws:
    auth: {type: Secret, secretRef: {name: keys}}
    lambda: {functionName: echo, endpointURL: "http://127.0.0.1:9"}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: ns}
spec:
  rules:
  - backendRefs: [{group: gateway.kgateway.dev, kind: Backend, name: echo}]
"#;

/// Answers every Invoke with `{"ok":true}`, or panics when the event asks it to (to exercise the guard).
#[derive(Debug)]
struct EchoLambda;

impl Upstream for EchoLambda {
    fn call(&self, request: http::Request<Full<Bytes>>, _timeout: Duration) -> UpstreamFuture<'_> {
        Box::pin(async move {
            use http_body_util::BodyExt as _;
            let body = request.into_body().collect().await.unwrap().to_bytes();
            if body.as_ref() == br#"{"panic":true}"# {
                panic!("scripted panic for the guard test");
            }
            if body.as_ref() == br#"{"slow":true}"# {
                tokio::time::sleep(Duration::from_millis(800)).await;
            }
            Ok(LambdaReply {
                status: 200,
                body: Bytes::from_static(br#"{"ok":true}"#),
                ..LambdaReply::default()
            })
        })
    }
}

struct TestServer {
    addr: SocketAddr,
    admin: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    fn start(limits: ClientLimits) -> TestServer {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let config = compile(&[("c.yaml", CONFIG)], &LoadOptions::default()).unwrap();
                let settings = Settings {
                    limits,
                    ..Settings::default()
                };
                let deps = Dependencies {
                    clock: gateway::clock::system(),
                    upstream: Arc::new(EchoLambda),
                    default_credentials: None,
                };
                let gw = Gateway::new(config, settings, deps).await;
                let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
                let server = Server::start(gw, any, any, 1, false).await.unwrap();
                ready_tx
                    .send((server.proxy_addr, server.admin_addr))
                    .unwrap();
                server
                    .run_until(async {
                        let _ = stop_rx.await;
                    })
                    .await
                    .unwrap();
            });
        });
        let (addr, admin) = ready_rx.recv().unwrap();
        TestServer {
            addr,
            admin,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Asks the server to stop (as SIGTERM does) without waiting for it.
    fn begin_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    fn metrics(&self) -> String {
        exchange(
            self.admin,
            "GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn limits() -> ClientLimits {
    ClientLimits {
        header_read_timeout: Duration::from_millis(400),
        body_read_timeout: Duration::from_millis(400),
        idle_timeout: Duration::from_millis(600),
        linger: Duration::from_millis(500),
        ..ClientLimits::default()
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// Sends `request`, reads until the server closes.
fn exchange(addr: SocketAddr, request: &str) -> String {
    let mut stream = connect(addr);
    stream.write_all(request.as_bytes()).unwrap();
    read_to_close(&mut stream).0
}

/// Reads until EOF (or a reset); returns what was read and whether it ended in a reset.
fn read_to_close(stream: &mut TcpStream) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&out).into_owned(), false),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (String::from_utf8_lossy(&out).into_owned(), true)
            }
            Err(e) => panic!("read failed after {:?}: {e}", String::from_utf8_lossy(&out)),
        }
    }
}

fn counter(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn a_client_sending_half_a_header_is_disconnected_after_the_header_timeout() {
    // A long idle timeout: the header timeout alone must close the connection.
    let server = TestServer::start(ClientLimits {
        idle_timeout: Duration::from_secs(30),
        ..limits()
    });
    let mut stream = connect(server.addr);
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: gw\r\nContent-Le")
        .unwrap();
    let started = Instant::now();
    let (answer, _) = read_to_close(&mut stream);
    let waited = started.elapsed();
    assert!(answer.is_empty(), "{answer}");
    assert!(waited < Duration::from_secs(3), "held for {waited:?}");
    let metrics = server.metrics();
    assert_eq!(
        counter(
            &metrics,
            r#"gateway_client_connections_closed_total{reason="header_read_timeout"}"#
        ),
        1.0,
        "{metrics}"
    );
}

#[test]
fn a_client_sending_half_a_body_gets_408_and_the_connection_closes() {
    let server = TestServer::start(limits());
    let mut stream = connect(server.addr);
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: gw\r\nContent-Length: 100\r\n\r\n{\"half\":")
        .unwrap();
    let (answer, _) = read_to_close(&mut stream);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    assert!(answer.contains(r#""error":"RequestTimeout""#), "{answer}");
}

#[test]
fn idle_keep_alive_connections_are_closed_but_busy_ones_are_not() {
    let server = TestServer::start(limits());
    // Busy: a request every 200 ms for 1.5 s (longer than the idle timeout) on one connection.
    let mut busy = connect(server.addr);
    let deadline = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < deadline {
        busy.write_all(b"POST /echo HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\n{}")
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = busy.read(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        std::thread::sleep(Duration::from_millis(200));
    }
    // Idle: closed by the gateway.
    let started = Instant::now();
    let (rest, _) = read_to_close(&mut busy);
    assert!(rest.is_empty(), "{rest}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let metrics = server.metrics();
    assert_eq!(
        counter(
            &metrics,
            r#"gateway_client_connections_closed_total{reason="idle_timeout"}"#
        ),
        1.0,
        "{metrics}"
    );
}

/// Behaves like curl without `Expect: 100-continue`: writes the whole body (much larger than the limit), and
/// only then reads. The client must be able to finish writing (the gateway keeps reading and discarding: a
/// lingering close) and then read the 413 — not fail its write with a reset.
fn oversized_body_reply(server: &TestServer, head: &str, body: Vec<u8>) -> (String, bool) {
    let mut stream = connect(server.addr);
    stream.write_all(head.as_bytes()).unwrap();
    let written = stream.write_all(&body);
    assert!(
        written.is_ok(),
        "writing the body failed ({written:?}): the gateway closed without lingering"
    );
    read_to_close(&mut stream)
}

#[test]
fn a_body_over_the_limit_gets_a_413_the_client_can_read() {
    let server = TestServer::start(limits());
    let size = 8 * 1024 * 1024;
    let (answer, reset) = oversized_body_reply(
        &server,
        &format!("POST /echo HTTP/1.1\r\nHost: gw\r\nContent-Length: {size}\r\n\r\n"),
        vec![b' '; size],
    );
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "reset={reset}: {answer:.200}"
    );
    assert!(answer.contains(r#""error":"PayloadTooLarge""#), "{answer}");
}

#[test]
fn a_chunked_body_over_the_limit_gets_a_413_the_client_can_read() {
    let server = TestServer::start(limits());
    let mut body = Vec::new();
    let chunk = vec![b' '; 1024 * 1024];
    for _ in 0..8 {
        body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(&chunk);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let (answer, reset) = oversized_body_reply(
        &server,
        "POST /echo HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n",
        body,
    );
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "reset={reset}: {answer:.200}"
    );
}

#[test]
fn broken_host_headers_and_oversized_heads_get_answers_and_the_worker_survives() {
    let server = TestServer::start(limits());
    for host in ["[", "[::1", "]:", "a:b:c", ":"] {
        let answer = exchange(
            server.addr,
            &format!("POST /echo HTTP/1.1\r\nHost: {host}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"),
        );
        assert!(
            answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.1 400"),
            "Host {host:?}: {answer}"
        );
    }
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: gw\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let answer = exchange(server.addr, &huge);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:.100}");
    let after = exchange(
        server.addr,
        "POST /echo HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    );
    assert!(after.starts_with("HTTP/1.1 200"), "{after}");
    assert_eq!(counter(&server.metrics(), "gateway_panics_total"), 0.0);
}

#[test]
fn a_panicking_request_gets_500_is_counted_and_the_worker_keeps_serving() {
    let server = TestServer::start(limits());
    let answer = exchange(
        server.addr,
        "POST /echo HTTP/1.1\r\nHost: gw\r\nContent-Length: 14\r\nConnection: close\r\n\r\n{\"panic\":true}",
    );
    assert!(answer.starts_with("HTTP/1.1 500"), "{answer}");
    assert!(answer.contains(r#""error":"InternalError""#), "{answer}");
    assert!(
        !answer.contains("scripted panic"),
        "panic messages stay in the log: {answer}"
    );
    let after = exchange(
        server.addr,
        "POST /echo HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    );
    assert!(after.starts_with("HTTP/1.1 200"), "{after}");
    assert_eq!(counter(&server.metrics(), "gateway_panics_total"), 1.0);
}

#[test]
fn connections_beyond_the_cap_wait_until_a_slot_frees() {
    let server = TestServer::start(ClientLimits {
        max_connections_per_worker: 2,
        idle_timeout: Duration::from_secs(30),
        ..limits()
    });
    let request = b"POST /echo HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\n{}";
    let mut held: Vec<TcpStream> = (0..2).map(|_| connect(server.addr)).collect();
    for stream in &mut held {
        stream.write_all(request).unwrap();
        let mut buf = [0u8; 4096];
        assert!(stream.read(&mut buf).unwrap() > 0);
    }
    let mut waiting = connect(server.addr);
    waiting.write_all(request).unwrap();
    waiting
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let early = waiting.read(&mut buf);
    assert!(
        early.is_err(),
        "a third connection was served while two were open: {early:?}"
    );
    let served = Arc::new(AtomicBool::new(false));
    drop(held.pop());
    waiting
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let n = waiting.read(&mut buf).unwrap();
    served.store(true, Ordering::Relaxed);
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}

#[test]
fn on_stop_requests_in_flight_finish_idle_connections_close_and_new_ones_are_refused() {
    let mut server = TestServer::start(ClientLimits {
        idle_timeout: Duration::from_secs(30),
        ..limits()
    });
    let addr = server.addr;
    // An idle keep-alive connection (one request served).
    let mut idle = connect(addr);
    idle.write_all(b"POST /echo HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\n{}")
        .unwrap();
    let mut buf = [0u8; 4096];
    assert!(idle.read(&mut buf).unwrap() > 0);
    // A request in flight (Lambda takes 800 ms).
    let mut busy = connect(addr);
    busy.write_all(b"POST /echo HTTP/1.1\r\nHost: gw\r\nContent-Length: 13\r\n\r\n{\"slow\":true}")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    server.begin_stop();

    let (rest, _) = read_to_close(&mut idle);
    assert!(
        rest.is_empty(),
        "the idle connection is closed without an answer: {rest}"
    );
    let (answer, _) = read_to_close(&mut busy);
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "the request in flight finishes: {answer}"
    );
    assert!(answer.contains("connection: close"), "{answer}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        TcpStream::connect(addr).is_err(),
        "the listener is closed once the server stopped"
    );
}
