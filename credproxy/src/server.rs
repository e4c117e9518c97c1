//! The HTTP layer: a thin hyper server over [`RoleHandle`]s.
//!
//! Contract:
//! - Credentials listener(s): `GET /v1/credentials` (default role) and `GET /v1/credentials/<role>`;
//!   routing uses the path only, so any query string works. `Authorization` must equal the role's
//!   token (constant time). The `Host` header, when present, must name an allowed host (DNS
//!   rebinding guard). Also `/healthz` and `/readyz`.
//! - Metrics listener: `/metrics`, `/healthz`, `/readyz`; no credentials.
//! - Each listener serves at most [`MAX_CONNECTIONS`] connections at once; further ones wait in the
//!   kernel's accept queue. Request headers must arrive within [`HEADER_READ_TIMEOUT`].
//! - Success: 200 with the pre-rendered JSON. Errors: JSON `{"Code","Message"}` — 401 bad or
//!   missing token **or unknown role** (the same reply, so role names cannot be probed without a token),
//!   403 host not allowed, 404 unknown path, 405 wrong method, 503 not ready
//!   (or the token file is unusable), 502 STS failed, 504 STS timed out — never with a secret.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::auth_token::AuthToken;
use crate::metrics::RoleLabels;
use crate::role::{Lookup, RoleHandle};

const CREDENTIALS_PATH: &str = "/v1/credentials";
/// Connections served at once per listener. An SDK keeps one or two, but clients keep idle connections
/// alive and each holds a slot, so the cap leaves room for bursts of 1,000+ concurrent requests
/// (`tests/tests/credproxy_e2e.rs`; 512 starved that test) while bounding file descriptors and memory.
pub const MAX_CONNECTIONS: usize = 4096;
/// Time a client has to send its request headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
const JSON: HeaderValue = HeaderValue::from_static("application/json");
const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    Credentials,
    Metrics,
}

/// One served role with its token.
#[derive(Debug)]
pub struct ServedRole {
    pub handle: Arc<RoleHandle>,
    pub token: AuthToken,
}

/// Everything the handlers need.
#[derive(Debug)]
pub struct App {
    pub roles: Vec<ServedRole>,
    pub default_role: Option<usize>,
    pub allowed_hosts: Vec<String>,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub cold_start_wait: Duration,
    pub draining: AtomicBool,
}

type Body = Full<Bytes>;

fn respond(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, JSON);
    headers.insert(CACHE_CONTROL, NO_STORE);
    resp
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::to_vec(&serde_json::json!({ "Code": code, "Message": message }))
        .expect("strings serialize");
    respond(status, Bytes::from(body))
}

/// Host without the port; `[::1]:80` → `::1`.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

impl App {
    fn host_allowed(&self, req: &Request<Incoming>) -> bool {
        let Some(host) = req.headers().get(http::header::HOST) else {
            // HTTP/1.0 without Host cannot come from a rebinding browser.
            return true;
        };
        let Ok(host) = host.to_str() else {
            return false;
        };
        let name = host_name(host.trim());
        self.allowed_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(name))
    }

    fn ready(&self) -> bool {
        !self.draining.load(Ordering::Relaxed) && self.roles.iter().all(|r| r.handle.is_ready())
    }

    fn readyz(&self) -> Response<Body> {
        if self.ready() {
            respond(
                StatusCode::OK,
                Bytes::from_static(b"{\"Status\":\"ready\"}"),
            )
        } else if self.draining.load(Ordering::Relaxed) {
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Draining",
                "credproxy is shutting down",
            )
        } else {
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "CredentialsNotReady",
                "credentials with enough remaining life are not held yet",
            )
        }
    }

    fn metrics_text(&self) -> Response<Body> {
        for r in &self.roles {
            let labels = RoleLabels {
                role: r.handle.settings.name.clone(),
            };
            let left = r.handle.seconds_until_expiry().unwrap_or(0.0).max(0.0);
            self.metrics
                .seconds_until_expiry
                .get_or_create(&labels)
                .set(left);
            self.metrics
                .ready
                .get_or_create(&labels)
                .set(i64::from(r.handle.is_ready()));
        }
        let mut resp = respond(StatusCode::OK, Bytes::from(self.metrics.encode()));
        resp.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        resp
    }

    async fn credentials(&self, req: &Request<Incoming>, rest: &str) -> Response<Body> {
        if !self.host_allowed(req) {
            return error(
                StatusCode::FORBIDDEN,
                "HostNotAllowed",
                "the Host header is not an allowed name for this endpoint",
            );
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "use GET",
            );
        }
        let role = match rest {
            "" | "/" => self.default_role.map(|i| &self.roles[i]),
            name => {
                let name = name.trim_start_matches('/').trim_end_matches('/');
                self.roles.iter().find(|r| r.handle.settings.name == name)
            }
        };
        let header = req.headers().get(http::header::AUTHORIZATION);
        let authorized = match role {
            Some(role) => header.is_some_and(|v| role.token.matches(v.as_bytes())),
            None => {
                // Same work and the same reply as a wrong token: an unknown role is not revealed.
                if let (Some(any), Some(v)) = (self.roles.first(), header) {
                    let _ = any.token.matches(v.as_bytes());
                }
                false
            }
        };
        let Some(role) = role.filter(|_| authorized) else {
            return error(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "missing or wrong Authorization header for this role (send the content of the auth token file)",
            );
        };
        match role.handle.lookup_or_wait(self.cold_start_wait).await {
            Lookup::Ready(body) => respond(StatusCode::OK, body),
            Lookup::Failed(f) => error(
                StatusCode::from_u16(f.kind.http_status()).unwrap_or(StatusCode::BAD_GATEWAY),
                &f.code,
                &f.message,
            ),
            Lookup::Pending => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "CredentialsNotReady",
                "credentials are being fetched from STS; retry shortly",
            ),
        }
    }

    async fn route(
        &self,
        kind: ListenerKind,
        req: &Request<Incoming>,
    ) -> (&'static str, Response<Body>) {
        let path = req.uri().path();
        match (kind, path) {
            (_, "/healthz") => (
                "healthz",
                respond(StatusCode::OK, Bytes::from_static(b"{\"Status\":\"ok\"}")),
            ),
            (_, "/readyz") => ("readyz", self.readyz()),
            (ListenerKind::Metrics, "/metrics") => ("metrics", self.metrics_text()),
            (ListenerKind::Credentials, p) if p.starts_with(CREDENTIALS_PATH) => {
                let rest = &p[CREDENTIALS_PATH.len()..];
                if rest.is_empty() || rest.starts_with('/') {
                    ("credentials", self.credentials(req, rest).await)
                } else {
                    (
                        "other",
                        error(StatusCode::NOT_FOUND, "NotFound", "no such path"),
                    )
                }
            }
            _ => (
                "other",
                error(StatusCode::NOT_FOUND, "NotFound", "no such path"),
            ),
        }
    }
}

async fn handle(
    app: Arc<App>,
    kind: ListenerKind,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let (route, resp) = app.route(kind, &req).await;
    app.metrics.count_request(route, resp.status().as_u16());
    app.metrics.latency.observe(started.elapsed().as_secs_f64());
    Ok(resp)
}

/// Binds every address; an address whose family the host lacks is logged and skipped.
pub async fn bind_all(addrs: &[SocketAddr], what: &str) -> Result<Vec<TcpListener>, String> {
    let mut out = Vec::new();
    for addr in addrs {
        match TcpListener::bind(addr).await {
            Ok(l) => out.push(l),
            Err(e)
                if addr.is_ipv6()
                    && matches!(
                        e.raw_os_error(),
                        Some(97) /* EAFNOSUPPORT */ | Some(99) /* EADDRNOTAVAIL */
                    ) =>
            {
                tracing::warn!(%addr, error = %e, "{what}: address family unavailable on this host; skipping this address");
            }
            Err(e) => return Err(format!("{what}: cannot listen on {addr}: {e}")),
        }
    }
    if out.is_empty() {
        return Err(format!("{what}: none of the addresses could be bound"));
    }
    Ok(out)
}

/// Accept loop for one listener (runs until the runtime stops), at most [`MAX_CONNECTIONS`] at once.
pub async fn serve(listener: TcpListener, app: Arc<App>, kind: ListenerKind) {
    serve_with_limit(listener, app, kind, MAX_CONNECTIONS).await;
}

/// [`serve`] with an explicit connection cap.
pub async fn serve_with_limit(
    listener: TcpListener,
    app: Arc<App>,
    kind: ListenerKind,
    max_connections: usize,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(app.clone(), kind, req));
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
            drop(slot);
        });
    }
}

#[cfg(test)]
mod tests;
