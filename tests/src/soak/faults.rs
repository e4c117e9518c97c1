//! Fault injectors for the soak: small proxies the soak puts between real peers, switched by schedule.
//!
//! Contract:
//! - [`StsFaultProxy`] sits in front of moto's STS. In [`StsMode::Pass`] every request is forwarded to moto
//!   unchanged (moto answers it); [`StsMode::Throttle`] answers without forwarding, alternating STS's
//!   `400 Throttling` error and a `503`; [`StsMode::Down`] resets every new connection and closes kept-alive
//!   ones (what a client sees when STS is unreachable). It counts every call by outcome and records the
//!   credentials moto issued (so the soak knows their expiry and can scan logs for them).
//! - [`FlappingProxy`] forwards TCP (the Lambda endpoint); while down it resets new connections and cuts the
//!   open ones. It records the `authorization` header values passing through (request signatures, for the
//!   log scan).
//! - [`Balancer`] is a Service-like TCP balancer over webhook replicas: round robin, and a replica that refuses
//!   the connection is skipped for the next one (as nginx's `proxy_next_upstream`), so the API server reaches a
//!   live replica while another is down.
//!
//! These are fault injectors, not mocks: every answer that is not a fault comes from the real peer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::unix_now;

/// What the STS fault proxy does with a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StsMode {
    Pass,
    Throttle,
    Down,
}

/// Credentials moto issued through the proxy.
#[derive(Clone, Debug)]
pub struct Issued {
    pub at: f64,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    /// Unix seconds.
    pub expiration: f64,
}

/// Calls seen by the STS fault proxy.
#[derive(Debug, Default)]
pub struct StsCounts {
    pub forwarded: AtomicU64,
    pub throttled: AtomicU64,
    pub unavailable: AtomicU64,
    pub refused_connections: AtomicU64,
    pub cut_requests: AtomicU64,
    pub issued: Mutex<Vec<Issued>>,
}

impl StsCounts {
    /// Every attempt that reached the proxy: forwarded, answered with a fault, or refused.
    pub fn total(&self) -> u64 {
        self.forwarded.load(Ordering::SeqCst)
            + self.throttled.load(Ordering::SeqCst)
            + self.unavailable.load(Ordering::SeqCst)
            + self.refused_connections.load(Ordering::SeqCst)
            + self.cut_requests.load(Ordering::SeqCst)
    }
}

/// The STS fault proxy (see the module docs).
pub struct StsFaultProxy {
    pub addr: SocketAddr,
    pub counts: Arc<StsCounts>,
    mode: watch::Sender<StsMode>,
}

impl StsFaultProxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind sts proxy");
        let addr = listener.local_addr().expect("addr");
        let counts = Arc::new(StsCounts::default());
        let (mode, mode_rx) = watch::channel(StsMode::Pass);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("http client");
        let state = (counts.clone(), mode_rx.clone(), http, upstream);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (counts, mode_rx, http, upstream) = state.clone();
                if *mode_rx.borrow() == StsMode::Down {
                    counts.refused_connections.fetch_add(1, Ordering::SeqCst);
                    reset(stream);
                    continue;
                }
                tokio::spawn(serve_sts_connection(
                    stream, counts, mode_rx, http, upstream,
                ));
            }
        });
        Self { addr, counts, mode }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, mode: StsMode) {
        self.mode.send_replace(mode);
    }
}

/// Closes with RST (SO_LINGER 0): the peer sees a reset, as from a host whose service is gone.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

async fn serve_sts_connection(
    stream: TcpStream,
    counts: Arc<StsCounts>,
    mut mode_rx: watch::Receiver<StsMode>,
    http: reqwest::Client,
    upstream: SocketAddr,
) {
    let flip = Arc::new(AtomicUsize::new(0));
    let service_counts = counts.clone();
    let service_mode = mode_rx.clone();
    let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        let (counts, mode, http, flip) = (
            service_counts.clone(),
            *service_mode.borrow(),
            http.clone(),
            flip.clone(),
        );
        async move { answer_sts(request, mode, &counts, &http, upstream, &flip).await }
    });
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    loop {
        tokio::select! {
            _ = connection.as_mut() => return,
            changed = mode_rx.changed() => {
                if changed.is_err() || *mode_rx.borrow() == StsMode::Down {
                    // Down cuts kept-alive connections too.
                    return;
                }
            }
        }
    }
}

type ProxyBody = Full<Bytes>;

async fn answer_sts(
    request: hyper::Request<hyper::body::Incoming>,
    mode: StsMode,
    counts: &StsCounts,
    http: &reqwest::Client,
    upstream: SocketAddr,
    flip: &AtomicUsize,
) -> Result<hyper::Response<ProxyBody>, std::io::Error> {
    match mode {
        StsMode::Down => {
            counts.cut_requests.fetch_add(1, Ordering::SeqCst);
            return Err(std::io::Error::other("STS down (fault window)"));
        }
        StsMode::Throttle => {
            // Alternate the two throttling answers STS gives: 400 Throttling and 503.
            let (status, code) = if flip.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
                counts.throttled.fetch_add(1, Ordering::SeqCst);
                (400, "Throttling")
            } else {
                counts.unavailable.fetch_add(1, Ordering::SeqCst);
                (503, "ServiceUnavailable")
            };
            let body = format!(
                "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>\
                 <Code>{code}</Code><Message>Rate exceeded</Message></Error>\
                 <RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
            );
            return Ok(hyper::Response::builder()
                .status(status)
                .header("content-type", "text/xml")
                .body(Full::new(Bytes::from(body)))
                .expect("response"));
        }
        StsMode::Pass => {}
    }
    counts.forwarded.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut forward = http.request(parts.method.clone(), format!("http://{upstream}{path}"));
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            forward = forward.header(name, value);
        }
    }
    let answer = forward
        .body(body)
        .send()
        .await
        .map_err(std::io::Error::other)?;
    let status = answer.status().as_u16();
    let content_type = answer
        .headers()
        .get("content-type")
        .cloned()
        .unwrap_or_else(|| hyper::header::HeaderValue::from_static("text/xml"));
    let text = answer.bytes().await.map_err(std::io::Error::other)?;
    if let Some(issued) = parse_issued(&String::from_utf8_lossy(&text)) {
        counts
            .issued
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(issued);
    }
    Ok(hyper::Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(text))
        .expect("response"))
}

fn xml_field<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    Some(&xml[start..end])
}

fn parse_issued(xml: &str) -> Option<Issued> {
    if !xml.contains("AssumeRoleWithWebIdentityResult") {
        return None;
    }
    Some(Issued {
        at: unix_now(),
        access_key_id: xml_field(xml, "AccessKeyId")?.to_string(),
        secret_access_key: xml_field(xml, "SecretAccessKey")?.to_string(),
        session_token: xml_field(xml, "SessionToken")?.to_string(),
        expiration: super::parse_rfc3339(xml_field(xml, "Expiration")?)?,
    })
}

/// Connections seen by a [`FlappingProxy`].
#[derive(Debug, Default)]
pub struct FlapCounts {
    pub forwarded_connections: AtomicU64,
    pub refused_connections: AtomicU64,
    pub cut_connections: AtomicU64,
    /// `authorization` header values that passed through (request signatures).
    pub authorizations: Mutex<Vec<String>>,
}

/// The flapping TCP proxy (see the module docs).
pub struct FlappingProxy {
    pub addr: SocketAddr,
    pub counts: Arc<FlapCounts>,
    up: watch::Sender<bool>,
}

impl FlappingProxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind flap proxy");
        let addr = listener.local_addr().expect("addr");
        let counts = Arc::new(FlapCounts::default());
        let (up, up_rx) = watch::channel(true);
        let accept_counts = counts.clone();
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                if !*up_rx.borrow() {
                    accept_counts
                        .refused_connections
                        .fetch_add(1, Ordering::SeqCst);
                    reset(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(upstream).await else {
                    reset(client);
                    continue;
                };
                accept_counts
                    .forwarded_connections
                    .fetch_add(1, Ordering::SeqCst);
                tokio::spawn(pipe_watching(
                    client,
                    server,
                    up_rx.clone(),
                    accept_counts.clone(),
                ));
            }
        });
        Self { addr, counts, up }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }
}

async fn pipe_watching(
    client: TcpStream,
    server: TcpStream,
    mut up: watch::Receiver<bool>,
    counts: Arc<FlapCounts>,
) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let record = counts.clone();
    let upstream = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            record_authorizations(&buf[..n], &record);
            if server_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = server_write.shutdown().await;
    };
    let downstream = async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    };
    tokio::select! {
        _ = async { tokio::join!(upstream, downstream) } => {}
        _ = async {
            while *up.borrow_and_update() {
                if up.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        } => {
            counts.cut_connections.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn record_authorizations(chunk: &[u8], counts: &FlapCounts) {
    let lower = chunk.to_ascii_lowercase();
    let needle = b"\nauthorization: ";
    let mut from = 0;
    while let Some(at) = find(&lower[from..], needle) {
        let start = from + at + needle.len();
        let end = find(&chunk[start..], b"\r").map_or(chunk.len(), |e| start + e);
        counts
            .authorizations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(String::from_utf8_lossy(&chunk[start..end]).into_owned());
        from = end;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Connections through a [`Balancer`].
#[derive(Debug, Default)]
pub struct BalancerCounts {
    pub per_backend: Mutex<Vec<u64>>,
    /// Connections that went to another replica because the chosen one refused.
    pub failovers: AtomicU64,
    /// Connections no replica accepted.
    pub unserved: AtomicU64,
}

/// A Service-like TCP balancer with failover (see the module docs).
pub struct Balancer {
    pub addr: SocketAddr,
    pub counts: Arc<BalancerCounts>,
}

impl Balancer {
    pub async fn start(backends: Vec<SocketAddr>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind balancer");
        let addr = listener.local_addr().expect("addr");
        let counts = Arc::new(BalancerCounts {
            per_backend: Mutex::new(vec![0; backends.len()]),
            ..Default::default()
        });
        let accept_counts = counts.clone();
        tokio::spawn(async move {
            let mut next = 0usize;
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let first = next;
                next = next.wrapping_add(1);
                let (backends, counts) = (backends.clone(), accept_counts.clone());
                tokio::spawn(async move {
                    for attempt in 0..backends.len() {
                        let index = (first + attempt) % backends.len();
                        let connect = TcpStream::connect(backends[index]);
                        let Ok(Ok(mut server)) =
                            tokio::time::timeout(Duration::from_secs(1), connect).await
                        else {
                            continue;
                        };
                        if attempt > 0 {
                            counts.failovers.fetch_add(1, Ordering::SeqCst);
                        }
                        counts.per_backend.lock().unwrap_or_else(|e| e.into_inner())[index] += 1;
                        let mut client = client;
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        return;
                    }
                    counts.unserved.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Self { addr, counts }
    }
}
