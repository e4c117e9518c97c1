//! The webhook's HTTP layer (spec §1, §6): HTTPS on `--port` (`/mutate`, `/healthz`, `/readyz`, debug
//! deny/500) and plain HTTP on `--metrics-port` (`/metrics`, debug cache routes).
//!
//! Contract:
//! - `/mutate` reads at most `max_request_bytes` (`--max-request-bytes`): a larger `Content-Length` is
//!   refused before reading, a longer streamed body as soon as it crosses the cap; both get 413 with a
//!   message naming the flag (the API server then applies the webhook's `failurePolicy`). Everything else
//!   about the request is `admission::Admission::handle`'s business.
//!   The 413 is sent while the rest of the body is still read and discarded (up to [`LINGER_MAX_BYTES`] or
//!   [`LINGER_MAX_TIME`]) before the connection closes, so a client that is still sending can read it
//!   instead of getting a reset. A body that does not arrive within [`BODY_READ_TIMEOUT`] gets 408.
//! - Slow or idle clients are cut off: request headers within [`HEADER_READ_TIMEOUT`] (HTTP/1.1; also the
//!   first request on a connection), TLS handshakes within [`TLS_HANDSHAKE_TIMEOUT`]; HTTP/2 connections
//!   carry at most [`H2_MAX_CONCURRENT_STREAMS`] streams and [`MAX_HEADER_BYTES`] of headers.
//! - `/healthz` → `ok` always; `/readyz` → 200 `ok` once the cache has synced, else 503 with the reason.
//! - Instrumented routes (`/mutate`, debug deny/500) update upstream's `http_request_*` metrics and write a
//!   `debug`-level access log line (upstream's V(4) fields).
//! - [`serve`] runs both servers until `shutdown` resolves, then drains each for up to
//!   [`SHUTDOWN_GRACE`] before closing the remaining connections.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use http_body_util::BodyExt;
use prometheus_client::registry::Registry;

use crate::admission::{Admission, AdmissionReply, Outcome};
use crate::cache::ServiceAccountCache;
use crate::container_credentials::ContainerCredentials;
use crate::metrics::{self, Metrics};

/// Upstream's per-server graceful shutdown timeout.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Time a client has to send a request's headers (and the first request of a connection).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client has to send a `/mutate` body (the API server's own webhook timeout is at most 30 s).
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// TLS handshake deadline.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Concurrent streams per HTTP/2 connection (Go's `http2` server default).
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 250;
/// Request header bytes (Go's `http.DefaultMaxHeaderBytes`).
pub const MAX_HEADER_BYTES: usize = 1 << 20;
/// After a 413, at most this much of the rest of the body is read and discarded…
pub const LINGER_MAX_BYTES: u64 = 16 << 20;
/// …for at most this long, before the connection is closed.
pub const LINGER_MAX_TIME: Duration = Duration::from_secs(2);

/// How long slow clients may take; [`ClientTimeouts::default`] holds the constants above (tests shorten them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientTimeouts {
    pub header_read: Duration,
    pub body_read: Duration,
    pub tls_handshake: Duration,
}

impl Default for ClientTimeouts {
    fn default() -> Self {
        ClientTimeouts {
            header_read: HEADER_READ_TIMEOUT,
            body_read: BODY_READ_TIMEOUT,
            tls_handshake: TLS_HANDSHAKE_TIMEOUT,
        }
    }
}

/// Upstream's debug deny body.
const DEBUG_DENY_BODY: &str = r#"{"response":{"uid":"","allowed":false,"status":{"metadata":{},"message":"Test deny message"}}}"#;

/// Everything the handlers need.
pub struct AppState {
    pub admission: Admission,
    pub metrics: Metrics,
    pub registry: Registry,
    pub cache: Arc<ServiceAccountCache>,
    pub container_credentials: Arc<ContainerCredentials>,
    pub tls: Option<Arc<certs::ReloadingCertResolver>>,
    pub max_request_bytes: usize,
    pub enable_debugging_handlers: bool,
    pub timeouts: ClientTimeouts,
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    let mut response = (status, body.into()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Go's mux answer for unknown paths.
async fn not_found() -> Response {
    text(StatusCode::NOT_FOUND, "404 page not found\n")
}

/// The HTTPS router (`--port`).
pub fn webhook_router(state: Arc<AppState>) -> Router {
    let mut instrumented = Router::new().route("/mutate", any(mutate));
    if state.enable_debugging_handlers {
        instrumented = instrumented
            .route("/debug/alpha/deny", any(debug_deny))
            .route("/debug/alpha/500", any(debug_500));
    }
    let instrumented =
        instrumented.layer(middleware::from_fn_with_state(state.clone(), instrument));
    Router::new()
        .merge(instrumented)
        .route("/healthz", any(|| async { text(StatusCode::OK, "ok") }))
        .route("/readyz", any(readyz))
        .fallback(not_found)
        .with_state(state)
}

/// The plain-HTTP router (`--metrics-port`).
pub fn metrics_router(state: Arc<AppState>) -> Router {
    let mut router = Router::new().route("/metrics", any(metrics_handler));
    if state.enable_debugging_handlers {
        router = router
            .route("/debug/alpha/cache", any(debug_cache))
            .route("/debug/alpha/cache/clear", any(debug_cache_clear));
    }
    router.fallback(not_found).with_state(state)
}

async fn instrument(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let user_agent = request
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    state
        .metrics
        .observe_request(&method, &path, status, elapsed);
    let body_bytes = axum::body::HttpBody::size_hint(response.body())
        .exact()
        .unwrap_or(0);
    tracing::debug!(
        path = %path,
        method = %method,
        status,
        user_agent = %user_agent,
        body_bytes,
        micros = elapsed.as_micros() as u64,
        "request"
    );
    response
}

fn reply_response(reply: AdmissionReply) -> Response {
    let mut response = Response::new(Body::from(reply.body));
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(reply.content_type),
    );
    if reply.status == 415 {
        response.headers_mut().insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
    }
    response
}

async fn mutate(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let limit = state.max_request_bytes;
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        state.metrics.admission("payload_too_large");
        return too_large(limit, body);
    }
    let mut body = body;
    let mut collected = Vec::new();
    let body_read_timeout = state.timeouts.body_read;
    let read = tokio::time::timeout(body_read_timeout, async {
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                if collected.len() + data.len() > limit {
                    return Ok(false);
                }
                collected.extend_from_slice(&data);
            }
        }
        Ok::<bool, axum::Error>(true)
    })
    .await;
    let body = match read {
        Ok(Ok(true)) => bytes::Bytes::from(collected),
        Ok(Ok(false)) => {
            state.metrics.admission("payload_too_large");
            return too_large(limit, body);
        }
        Err(_) => {
            state.metrics.admission("body_timeout");
            let mut response = text(
                StatusCode::REQUEST_TIMEOUT,
                format!("request body not received within {body_read_timeout:?}\n"),
            );
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return response;
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "cannot read /mutate request body");
            return text(
                StatusCode::BAD_REQUEST,
                format!("cannot read request body: {error}\n"),
            );
        }
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let reply = state.admission.handle(content_type, &body).await;
    match reply.outcome {
        Outcome::Mutated(mode) => {
            state.metrics.pod_mutated(mode.metric_label());
            state
                .metrics
                .admission(&format!("mutated_{}", mode.metric_label()));
        }
        Outcome::NotMutated => state.metrics.admission("not_mutated"),
        Outcome::Denied => state.metrics.admission("denied"),
        Outcome::UnsupportedMediaType => state.metrics.admission("unsupported_media_type"),
    }
    reply_response(reply)
}

/// The 413 reply. The unread rest of the body is drained in the background while the reply is written
/// (lingering close): closing a socket with unread data makes the kernel send a reset, and a client still
/// sending would lose the reply.
fn too_large(limit: usize, mut body: Body) -> Response {
    tokio::spawn(async move {
        let mut drained = 0u64;
        let _ = tokio::time::timeout(LINGER_MAX_TIME, async {
            while let Some(Ok(frame)) = body.frame().await {
                if let Some(data) = frame.data_ref() {
                    drained += data.len() as u64;
                }
                if drained > LINGER_MAX_BYTES {
                    break;
                }
            }
        })
        .await;
    });
    let mut response = reply_response(AdmissionReply::payload_too_large(limit));
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.cache.is_synced() {
        text(StatusCode::OK, "ok")
    } else {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            "service account cache not synced yet\n",
        )
    }
}

async fn metrics_handler(State(state): State<Arc<AppState>>) -> Response {
    let m = &state.metrics;
    m.service_accounts_cached
        .set(state.cache.service_account_count() as i64);
    m.cache_synced.set(i64::from(state.cache.is_synced()));
    m.container_credentials_identities
        .set(state.container_credentials.len() as i64);
    if let Some(tls) = &state.tls {
        let stats = tls.stats();
        m.tls_reloads.set(stats.reloads as i64);
        m.tls_reload_failures.set(stats.failures as i64);
    }
    let mut response = metrics::render(&state.registry, m).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(metrics::CONTENT_TYPE),
    );
    response
}

async fn debug_deny() -> Response {
    let mut response = DEBUG_DENY_BODY.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

async fn debug_500() -> Response {
    text(StatusCode::INTERNAL_SERVER_ERROR, "test error\n")
}

async fn debug_cache(State(state): State<Arc<AppState>>) -> Response {
    let mut response = state.cache.dump_json().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

async fn debug_cache_clear(State(state): State<Arc<AppState>>) -> Response {
    state.cache.clear();
    StatusCode::OK.into_response()
}

/// Bind a listener on all interfaces: `[::]` (dual stack) or, where IPv6 is unavailable, `0.0.0.0`.
pub fn bind_all_interfaces(port: u16) -> std::io::Result<std::net::TcpListener> {
    std::net::TcpListener::bind((std::net::Ipv6Addr::UNSPECIFIED, port))
        .or_else(|_| std::net::TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, port)))
}

/// Listeners and TLS for [`serve`].
pub struct Listeners {
    pub webhook: std::net::TcpListener,
    pub metrics: std::net::TcpListener,
    pub tls: Arc<rustls::ServerConfig>,
}

/// Header timeouts and HTTP/2 limits (axum-server turns hyper's header timeout off by default).
fn limit_connections(
    builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    timeouts: &ClientTimeouts,
) {
    builder
        .http1()
        .header_read_timeout(Some(timeouts.header_read))
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .max_pending_accept_reset_streams(Some(50))
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
}

/// Run both servers until `shutdown` resolves, then shut them down gracefully (upstream's log lines).
pub async fn serve(
    state: Arc<AppState>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let timeouts = state.timeouts;
    let webhook_handle = axum_server::Handle::new();
    let metrics_handle = axum_server::Handle::new();
    let webhook_addr = listeners.webhook.local_addr()?;
    let metrics_addr = listeners.metrics.local_addr()?;
    let rustls_config = axum_server::tls_rustls::RustlsConfig::from_config(listeners.tls);
    let mut webhook_server =
        axum_server::tls_rustls::from_tcp_rustls(listeners.webhook, rustls_config)?
            // Small admission responses must not wait for Nagle's delayed-ACK dance (Go sets this too).
            .map(|tls| {
                tls.handshake_timeout(timeouts.tls_handshake)
                    .acceptor(axum_server::accept::NoDelayAcceptor::new())
            })
            .first_request_timeout(timeouts.header_read)
            .handle(webhook_handle.clone());
    limit_connections(webhook_server.http_builder(), &timeouts);
    let webhook_server = webhook_server.serve(webhook_router(state.clone()).into_make_service());
    let mut metrics_server = axum_server::from_tcp(listeners.metrics)?
        .acceptor(axum_server::accept::NoDelayAcceptor::new())
        .first_request_timeout(timeouts.header_read)
        .handle(metrics_handle.clone());
    limit_connections(metrics_server.http_builder(), &timeouts);
    let metrics_server = metrics_server.serve(metrics_router(state).into_make_service());
    tracing::info!("Listening on {webhook_addr}");
    tracing::info!("Listening on {metrics_addr} for metrics");
    let webhook_task = tokio::spawn(webhook_server);
    let metrics_task = tokio::spawn(metrics_server);
    tracing::info!("Waiting for webhook and metrics servers to shutdown...");
    shutdown.await;
    tracing::info!("Context cancelled, beginning graceful shutdown");
    webhook_handle.graceful_shutdown(Some(SHUTDOWN_GRACE));
    metrics_handle.graceful_shutdown(Some(SHUTDOWN_GRACE));
    let mut result = Ok(());
    for (name, task) in [("Webhook", webhook_task), ("Metrics", metrics_task)] {
        match task.await {
            Ok(Ok(())) => tracing::info!("{name} server shutdown gracefully"),
            Ok(Err(error)) => {
                tracing::error!("{name} server shutdown error: {error}");
                result = Err(error);
            }
            Err(error) => {
                tracing::error!("{name} server shutdown error: {error}");
                result = Err(std::io::Error::other(error.to_string()));
            }
        }
    }
    result
}
