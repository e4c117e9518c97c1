//! Sending a signed Invoke request to Lambda and reading its answer.
//!
//! [`Upstream`] is the seam: the gateway uses [`HttpUpstream`] (per worker thread, keep-alive HTTP/1.1
//! connections driven by the requests that use them; TLS verified against the system roots); in-process tests
//! put a scripted fake in its place.
//! Every call is bounded by the route's timeout, and Lambda's answer by [`MAX_RESPONSE_BYTES`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;

use crate::model::LambdaReply;

/// Lambda's own response limit is 6 MB; anything far larger is not Lambda.
pub const MAX_RESPONSE_BYTES: usize = 7 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("could not reach the Lambda endpoint: {0}")]
    Unreachable(String),
    #[error("Lambda did not answer within {0:?}")]
    Timeout(Duration),
    #[error("could not read Lambda's response: {0}")]
    Read(String),
}

pub type UpstreamFuture<'a> =
    Pin<Box<dyn Future<Output = Result<LambdaReply, UpstreamError>> + Send + 'a>>;

/// Where signed Invoke requests go.
pub trait Upstream: Send + Sync + std::fmt::Debug + 'static {
    /// Sends `request` and reads the answer, all within `timeout`.
    fn call(&self, request: Request<Full<Bytes>>, timeout: Duration) -> UpstreamFuture<'_>;
}

pub type SharedUpstream = Arc<dyn Upstream>;

/// The TLS settings for Lambda endpoints: the system's root certificates (verification on), aws-lc-rs.
pub fn tls_config() -> Result<rustls::ClientConfig, UpstreamError> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        tracing::warn!("no system CA certificates found (install ca-certificates): https Lambda endpoints will fail TLS verification");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| UpstreamError::Unreachable(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
type Stream = hyper_rustls::MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>;
type Connection = hyper::client::conn::http1::Connection<Stream, Full<Bytes>>;

/// One HTTP/1.1 connection to a Lambda endpoint. Its connection future is driven by the request using it (no
/// separate task and no wake-ups across tasks); between requests it sits in its worker's idle list.
struct Link {
    sender: SendRequest<Full<Bytes>>,
    connection: Pin<Box<Connection>>,
    /// The connection future has completed (closed by either side).
    closed: bool,
    idle_since: Instant,
}

/// Idle links of this worker thread, by `scheme://authority`.
type IdleLinks = RefCell<HashMap<String, Vec<Link>>>;

thread_local! {
    static IDLE: IdleLinks = RefCell::new(HashMap::new());
}

/// Idle connections older than this are not reused (servers drop idle keep-alive connections too).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// At most this many idle connections per endpoint and worker.
const MAX_IDLE_PER_ENDPOINT: usize = 256;

/// The real Lambda client: per worker thread, a set of HTTP/1.1 keep-alive connections per endpoint, each
/// driven directly by the request that uses it (the nginx upstream-keepalive model). TLS is verified against the
/// system roots; ALPN offers only `http/1.1`.
#[derive(Clone)]
pub struct HttpUpstream {
    connector: Connector,
}

impl std::fmt::Debug for HttpUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpUpstream")
    }
}

impl HttpUpstream {
    pub fn new() -> Result<HttpUpstream, UpstreamError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config()?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(HttpUpstream { connector })
    }

    async fn connect(&self, uri: &http::Uri) -> Result<Link, UpstreamError> {
        use tower::ServiceExt as _;
        let stream = self
            .connector
            .clone()
            .oneshot(uri.clone())
            .await
            .map_err(|e| UpstreamError::Unreachable(error_chain(e.as_ref())))?;
        let (sender, connection) = hyper::client::conn::http1::Builder::new()
            .writev(false)
            .handshake(stream)
            .await
            .map_err(|e| UpstreamError::Unreachable(error_chain(&e)))?;
        Ok(Link {
            sender,
            connection: Box::pin(connection),
            closed: false,
            idle_since: Instant::now(),
        })
    }

    async fn exchange(&self, request: Request<Full<Bytes>>) -> Result<LambdaReply, UpstreamError> {
        // The absolute URI is what a new connection is opened to; the request goes out in origin form.
        let target = request.uri().clone();
        let (key, mut request) = origin_form(request)?;
        // A pooled connection the server closed in the meantime is detected before or at sending: the
        // request comes back unsent and goes out on a new connection (never twice: Invoke is not idempotent).
        let mut link = match take_idle(&key) {
            Some(link) => link,
            None => self.connect(&target).await?,
        };
        let response = loop {
            let sent = link.sender.try_send_request(request);
            match drive(&mut link, sent).await {
                Ok(response) => break response,
                Err(mut error) => match error.take_message() {
                    Some(unsent) => {
                        request = unsent;
                        link = self.connect(&target).await?;
                    }
                    None => {
                        return Err(UpstreamError::Unreachable(error_chain(&error.into_error())))
                    }
                },
            }
        };
        let (parts, body) = response.into_parts();
        let body = drive(&mut link, Limited::new(body, MAX_RESPONSE_BYTES).collect())
            .await
            .map_err(|e| UpstreamError::Read(e.to_string()))?
            .to_bytes();
        let reply = lambda_reply(&parts, body);
        if !link.closed && !parts.headers.contains_key(http::header::CONNECTION) {
            put_idle(key, link);
        }
        Ok(reply)
    }
}

/// Polls `work` and, while it is pending, the link's connection (which does the actual I/O).
async fn drive<F: Future>(link: &mut Link, work: F) -> F::Output {
    let mut work = std::pin::pin!(work);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = work.as_mut().poll(cx) {
            return Poll::Ready(out);
        }
        if !link.closed {
            if let Poll::Ready(result) = link.connection.as_mut().poll(cx) {
                link.closed = true;
                if let Err(error) = result {
                    tracing::debug!(error = %error, "Lambda connection closed with an error");
                }
                // The connection delivered its outcome (or error) to `work` before finishing.
                return work.as_mut().poll(cx);
            }
        }
        Poll::Pending
    })
    .await
}

fn take_idle(key: &str) -> Option<Link> {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let links = idle.get_mut(key)?;
        while let Some(mut link) = links.pop() {
            if link.idle_since.elapsed() > IDLE_TIMEOUT {
                continue;
            }
            // A closed connection finishes when polled; such a link is dropped here.
            let mut cx = Context::from_waker(std::task::Waker::noop());
            if link.connection.as_mut().poll(&mut cx).is_ready() || link.sender.is_closed() {
                continue;
            }
            return Some(link);
        }
        None
    })
}

fn put_idle(key: String, mut link: Link) {
    link.idle_since = Instant::now();
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let links = idle.entry(key).or_default();
        if links.len() < MAX_IDLE_PER_ENDPOINT {
            links.push(link);
        }
    });
}

/// Splits an absolute request URI into the pool key (`scheme://authority`) and an origin-form request
/// (`/path?query`), which is what goes on the wire.
fn origin_form(
    mut request: Request<Full<Bytes>>,
) -> Result<(String, Request<Full<Bytes>>), UpstreamError> {
    let uri = request.uri();
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(UpstreamError::Unreachable(format!(
            "not an absolute URI: {uri}"
        )));
    };
    let key = format!("{scheme}://{authority}");
    let path = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    *request.uri_mut() = http::Uri::from(path);
    Ok((key, request))
}

impl Upstream for HttpUpstream {
    fn call(&self, request: Request<Full<Bytes>>, timeout: Duration) -> UpstreamFuture<'_> {
        Box::pin(async move {
            match tokio::time::timeout(timeout, self.exchange(request)).await {
                Ok(result) => result,
                Err(_) => Err(UpstreamError::Timeout(timeout)),
            }
        })
    }
}

fn header_string(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .map(str::to_string)
}

/// The error and its sources on one line (for the log only: it may name the endpoint).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Reads the parts of Lambda's answer the response mapping needs.
pub fn lambda_reply(parts: &http::response::Parts, body: Bytes) -> LambdaReply {
    LambdaReply {
        status: parts.status.as_u16(),
        function_error: header_string(&parts.headers, "x-amz-function-error"),
        error_type: header_string(&parts.headers, "x-amzn-errortype"),
        retry_after: header_string(&parts.headers, "retry-after"),
        request_id: header_string(&parts.headers, "x-amzn-requestid"),
        executed_version: header_string(&parts.headers, "x-amz-executed-version"),
        body,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A small HTTP/1.1 server: answers `{"n":<request number>}`; closes each connection after
    /// `requests_per_connection` requests (keep-alive otherwise); counts accepted connections.
    async fn lambda_like_server(
        requests_per_connection: usize,
    ) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let served = Arc::new(AtomicUsize::new(0));
                    let service = hyper::service::service_fn(
                        move |_req: http::Request<hyper::body::Incoming>| {
                            let n = served.fetch_add(1, Ordering::SeqCst) + 1;
                            async move {
                                let mut response = http::Response::new(Full::new(Bytes::from(
                                    format!("{{\"n\":{n}}}"),
                                )));
                                if n >= requests_per_connection {
                                    response.headers_mut().insert(
                                        http::header::CONNECTION,
                                        HeaderValue::from_static("close"),
                                    );
                                }
                                Ok::<_, std::convert::Infallible>(response)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (addr, accepted)
    }

    fn invoke(addr: std::net::SocketAddr) -> Request<Full<Bytes>> {
        Request::post(format!("http://{addr}/2015-03-31/functions/f/invocations"))
            .header(http::header::HOST, addr.to_string())
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap()
    }

    #[tokio::test]
    async fn connections_are_reused_and_replaced_when_the_server_closes_them() {
        let upstream = HttpUpstream::new().unwrap();
        let (keep_alive, accepted) = lambda_like_server(usize::MAX).await;
        for _ in 0..5 {
            let reply = upstream
                .call(invoke(keep_alive), Duration::from_secs(5))
                .await
                .unwrap();
            assert_eq!(reply.status, 200);
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "one keep-alive connection for sequential calls"
        );

        // The server closes after every second request: the next call must not fail on the dead link.
        let (closing, accepted) = lambda_like_server(2).await;
        let mut bodies = Vec::new();
        for _ in 0..6 {
            let reply = upstream
                .call(invoke(closing), Duration::from_secs(5))
                .await
                .unwrap();
            bodies.push(String::from_utf8_lossy(&reply.body).into_owned());
        }
        assert_eq!(
            bodies,
            [
                r#"{"n":1}"#,
                r#"{"n":2}"#,
                r#"{"n":1}"#,
                r#"{"n":2}"#,
                r#"{"n":1}"#,
                r#"{"n":2}"#
            ]
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn an_idle_connection_the_server_dropped_is_not_used() {
        let upstream = HttpUpstream::new().unwrap();
        // A server that answers one request per connection and then closes without saying so.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                    let mut buf = vec![0u8; 4096];
                    let _ = stream.read(&mut buf).await;
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                        .await;
                    // Closes without `connection: close`.
                });
            }
        });
        for _ in 0..3 {
            let reply = upstream
                .call(invoke(addr), Duration::from_secs(5))
                .await
                .unwrap();
            assert_eq!(reply.status, 200);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn unreachable_and_slow_endpoints_are_errors_not_hangs() {
        let upstream = HttpUpstream::new().unwrap();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let error = upstream
            .call(invoke(closed), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(error, UpstreamError::Unreachable(_)), "{error:?}");

        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let _hold = tokio::spawn(async move {
            let _connection = silent.accept().await;
            std::future::pending::<()>().await
        });
        let error = upstream
            .call(invoke(addr), Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(matches!(error, UpstreamError::Timeout(_)), "{error:?}");
    }
}
