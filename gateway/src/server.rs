//! The HTTP layer: the proxy listener, the admin listener (`/healthz`, `/readyz`, `/metrics`), and config reloads.
//!
//! Each request loads the current [`Runtime`] once and keeps it to the end, so a reload never disturbs
//! in-flight requests; new requests see the new routes immediately.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use aws_credential_types::Credentials;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use http_body_util::{BodyExt, Limited};
use tokio::sync::OnceCell;

use crate::config::{self, Config, LoadOptions};
use crate::credentials::{self, CredentialCell, CredentialState};
use crate::event::{self, EventInput};
use crate::invoke::{self, InvokeError};
use crate::metrics::{FetchLabels, Metrics, ResultLabels, RouteHandles, SourceLabels};
use crate::model::{AuthSource, ClientReply, FunctionRef, InvocationMode, Outcome, RequestEvent};
use crate::response;
use crate::routing::{parse_query, RequestView};

/// A configuration plus the credential cell of every Backend in it.
#[derive(Debug)]
pub struct Runtime {
    pub config: Config,
    /// Backend id → its credentials.
    pub cells: HashMap<String, Arc<CredentialCell>>,
}

pub struct Gateway {
    runtime: ArcSwap<Runtime>,
    tls: rustls::ClientConfig,
    pub metrics: Arc<Metrics>,
    default_cell: OnceCell<Arc<CredentialCell>>,
    pub config_paths: Vec<PathBuf>,
    pub load_options: LoadOptions,
    pub access_log: bool,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("config_paths", &self.config_paths)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Builds the gateway around an already validated configuration.
    pub async fn new(
        config: Config,
        config_paths: Vec<PathBuf>,
        load_options: LoadOptions,
        access_log: bool,
    ) -> std::io::Result<Arc<Gateway>> {
        let gateway = Arc::new(Gateway {
            runtime: ArcSwap::from_pointee(Runtime {
                config: empty_config(),
                cells: HashMap::new(),
            }),
            tls: invoke::tls_config().map_err(|e| std::io::Error::other(e.to_string()))?,
            metrics: Arc::new(Metrics::new()),
            default_cell: OnceCell::new(),
            config_paths,
            load_options,
            access_log,
        });
        let runtime = gateway.runtime_for(config).await;
        gateway.runtime.store(Arc::new(runtime));
        Ok(gateway)
    }

    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    async fn default_cell(&self) -> Arc<CredentialCell> {
        self.default_cell
            .get_or_init(|| async {
                let (source, provider) = credentials::default_provider().await;
                tracing::info!(%source, "credentials for Backends without auth");
                let cell = CredentialCell::new(source.clone());
                let fetches = self.metrics.credential_fetches.clone();
                let on_fetch = move |ok: bool| {
                    fetches
                        .get_or_create(&FetchLabels {
                            source: source.clone(),
                            result: if ok { "ok" } else { "error" },
                        })
                        .inc();
                };
                tokio::spawn(credentials::refresh_loop(cell.clone(), provider, on_fetch));
                cell
            })
            .await
            .clone()
    }

    async fn runtime_for(&self, config: Config) -> Runtime {
        let mut cells = HashMap::new();
        for backend in &config.backends {
            let cell = match &backend.auth {
                AuthSource::DefaultChain => self.default_cell().await,
                AuthSource::Static { secret, keys } => CredentialCell::fixed(
                    format!("Secret {secret}"),
                    Credentials::new(
                        keys.access_key_id.clone(),
                        keys.secret_access_key.clone(),
                        keys.session_token.clone(),
                        None,
                        "secret",
                    ),
                ),
            };
            cells.insert(backend.id.clone(), cell);
        }
        Runtime { config, cells }
    }

    /// Re-reads the config files; on success swaps the runtime, otherwise keeps serving the old one.
    pub async fn reload(&self) -> Result<(), config::ConfigError> {
        match config::load_files(&self.config_paths, &self.load_options) {
            Ok(config) => {
                for warning in &config.warnings {
                    tracing::warn!("{warning}");
                }
                let old_port = self.runtime().config.listener_port;
                if config.listener_port != old_port {
                    tracing::warn!(?old_port, new_port = ?config.listener_port, "the listener port changed; the new port takes effect on restart");
                }
                let runtime = self.runtime_for(config).await;
                let routes = runtime.config.routes.rules().len();
                self.runtime.store(Arc::new(runtime));
                self.metrics
                    .reloads
                    .get_or_create(&ResultLabels { result: "ok" })
                    .inc();
                tracing::info!(rules = routes, "configuration reloaded");
                Ok(())
            }
            Err(error) => {
                for problem in &error.problems {
                    tracing::error!("config reload rejected: {problem}");
                }
                self.metrics
                    .reloads
                    .get_or_create(&ResultLabels { result: "error" })
                    .inc();
                Err(error)
            }
        }
    }

    /// Readiness: the config is loaded and every Backend's credentials are valid now.
    pub fn readiness(&self) -> (bool, serde_json::Value) {
        let runtime = self.runtime();
        let now = SystemTime::now();
        let mut ready = true;
        let mut sources = serde_json::Map::new();
        for cell in runtime.cells.values() {
            let state = cell.state(now);
            ready &= state == CredentialState::Valid;
            let mut detail = serde_json::json!({"state": state.as_str()});
            if let Some(expiry) = cell.expiry() {
                detail["expiration"] = crate::credentials::rfc3339(expiry).into();
            }
            if let Some(error) = cell.last_error() {
                detail["lastError"] = error.into();
            }
            sources.insert(cell.source.clone(), detail);
        }
        let body = serde_json::json!({
            "ready": ready,
            "config": {"loaded": true, "rules": runtime.config.routes.rules().len(), "backends": runtime.config.backends.len()},
            "credentials": sources,
        });
        (ready, body)
    }

    fn refresh_credential_gauges(&self) {
        let runtime = self.runtime();
        let now = SystemTime::now();
        for cell in runtime.cells.values() {
            let labels = SourceLabels {
                source: cell.source.clone(),
            };
            let state = match cell.state(now) {
                CredentialState::Missing => 0,
                CredentialState::Valid => 1,
                CredentialState::Expired => 2,
            };
            self.metrics
                .credentials_state
                .get_or_create(&labels)
                .set(state);
            if let Some(expiry) = cell.expiry() {
                let secs = expiry
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or_default();
                self.metrics
                    .credentials_expiry
                    .get_or_create(&labels)
                    .set(i64::try_from(secs).unwrap_or(i64::MAX));
            }
        }
    }
}

fn empty_config() -> Config {
    Config {
        listener_port: None,
        routes: Default::default(),
        backends: vec![],
        warnings: vec![],
    }
}

/// The proxy router: every path goes to [`proxy`].
pub fn proxy_router(gateway: Arc<Gateway>) -> Router {
    Router::new().fallback(proxy).with_state(gateway)
}

/// The admin router: `/healthz`, `/readyz`, `/metrics`.
pub fn admin_router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|State(gw): State<Arc<Gateway>>| async move {
                let (ready, body) = gw.readiness();
                let status = if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                (status, axum::Json(body))
            }),
        )
        .route(
            "/metrics",
            get(|State(gw): State<Arc<Gateway>>| async move {
                gw.refresh_credential_gauges();
                (
                    [(
                        http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    gw.metrics.encode(),
                )
            }),
        )
        .with_state(gateway)
}

fn request_id() -> String {
    format!(
        "{:016x}{:08x}",
        rand::random::<u64>(),
        rand::random::<u32>()
    )
}

fn into_response(reply: ClientReply) -> Response {
    let mut response = Response::new(Body::from(reply.body));
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let headers = response.headers_mut();
    for (name, value) in reply.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            headers.append(name, value);
        }
    }
    response
}

struct Served<'a> {
    route: &'a str,
    function: &'a str,
    /// The matched rule's series for the picked backend.
    metrics: Option<&'a RouteHandles>,
    reply: ClientReply,
}

async fn proxy(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: http::Request<Body>,
) -> Response {
    let started = Instant::now();
    let runtime = gw.runtime();
    // Only the access log and API Gateway events need a request id (and only the access log the method/path).
    let (request_id, method, path) = if gw.access_log {
        (
            request_id(),
            request.method().clone(),
            request.uri().path().to_string(),
        )
    } else {
        Default::default()
    };
    let served = serve(&gw, &runtime, peer, request, &request_id).await;

    let status = served.reply.status;
    let outcome = served.reply.outcome;
    let elapsed = started.elapsed();
    gw.metrics.record_request(
        served.route,
        served.function,
        served.metrics,
        status,
        outcome,
        elapsed.as_secs_f64(),
    );
    if gw.access_log {
        tracing::info!(
            target: "access",
            %peer, %method, path, status, route = served.route, function = served.function,
            outcome = outcome.as_str(), latency_us = elapsed.as_micros() as u64, request_id,
            lambda_request_id = served.reply.header("x-amzn-requestid").unwrap_or("-"),
        );
    }
    into_response(served.reply)
}

async fn serve<'a>(
    gw: &Gateway,
    runtime: &'a Runtime,
    peer: SocketAddr,
    request: http::Request<Body>,
    request_id: &str,
) -> Served<'a> {
    let (parts, body) = request.into_parts();
    let headers: Vec<(&str, &str)> = parts
        .headers
        .iter()
        .filter_map(|(n, v)| v.to_str().ok().map(|v| (n.as_str(), v)))
        .collect();
    let query = parse_query(parts.uri.query());
    let host_header = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
        .unwrap_or("");
    let host = host_without_port(host_header).to_ascii_lowercase();
    let view = RequestView {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        host: &host,
        headers: &headers,
        query: &query,
    };

    let Some(rule) = runtime.config.routes.resolve(&view) else {
        return Served {
            route: "-",
            function: "-",
            metrics: None,
            reply: ClientReply::error(
                404,
                Outcome::NoRoute,
                "NoRoute",
                format!("no HTTPRoute matches {} {}", parts.method, parts.uri.path()),
            ),
        };
    };
    let route = rule.label();
    let Some(picked) = rule.pick(rand::random()) else {
        return Served {
            route,
            function: "-",
            metrics: None,
            reply: ClientReply::error(
                500,
                Outcome::NoBackend,
                "NoBackend",
                "the matching route rule has no backend with a positive weight",
            ),
        };
    };
    let backend = &picked.backend;
    let reply = |reply: ClientReply| Served {
        route,
        function: &backend.arn,
        metrics: Some(&picked.metrics),
        reply,
    };
    let limit = backend.invocation.payload_limit();
    let too_large = || {
        ClientReply::error(
            413,
            Outcome::TooLarge,
            "PayloadTooLarge",
            format!(
                "the request exceeds Lambda's {} payload limit of {limit} bytes",
                match backend.invocation {
                    InvocationMode::Sync => "synchronous",
                    InvocationMode::Async => "asynchronous",
                }
            ),
        )
    };

    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(length) = declared.filter(|n| *n > limit) {
        drain(body, length).await;
        return reply(too_large());
    }
    let body: Bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => return reply(too_large()),
        Err(error) => {
            return reply(ClientReply::error(
                400,
                Outcome::BadRequest,
                "BadRequest",
                format!("could not read the request body: {error}"),
            ))
        }
    };

    // Request context (source IP, protocol, resource, request id) only goes into API Gateway events.
    let api_gateway = matches!(
        backend.request_event,
        RequestEvent::ApiGatewayV1 | RequestEvent::ApiGatewayV2
    );
    let (source_ip, protocol, route_path, own_request_id) = if api_gateway {
        let route_path = rule
            .matches
            .first()
            .map(|m| match &m.path {
                crate::routing::PathMatch::Exact(p) | crate::routing::PathMatch::Prefix(p) => {
                    p.clone()
                }
                crate::routing::PathMatch::Regex(re) => re.as_str().to_string(),
            })
            .unwrap_or_else(|| "/".into());
        let own = if request_id.is_empty() {
            self::request_id()
        } else {
            String::new()
        };
        (
            peer.ip().to_string(),
            format!("{:?}", parts.version),
            route_path,
            own,
        )
    } else {
        Default::default()
    };
    let request_id = if own_request_id.is_empty() {
        request_id
    } else {
        own_request_id.as_str()
    };
    let input = EventInput {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        raw_query: parts.uri.query(),
        headers: &headers,
        body: &body,
        source_ip: &source_ip,
        request_id,
        now: time::OffsetDateTime::now_utc(),
        route_path: &route_path,
        protocol: &protocol,
        account_id: backend.account_id.as_deref(),
    };
    let event = match event::build(backend.request_event, &input) {
        Ok(event) => event,
        Err(error) => {
            return reply(ClientReply::error(
                400,
                Outcome::BadRequest,
                "InvalidRequestContent",
                error.to_string(),
            ))
        }
    };
    if event.len() > limit {
        return reply(too_large());
    }

    let now = SystemTime::now();
    let Some(cell) = runtime.cells.get(&backend.id) else {
        return reply(ClientReply::error(
            503,
            Outcome::NoCredentials,
            "NoCredentials",
            "no credential source for this Backend",
        ));
    };
    let Some(credentials) = cell.get(now) else {
        let why = match cell.state(now) {
            CredentialState::Expired => "the cached credentials expired and could not be refreshed",
            _ => "no credentials could be fetched yet",
        };
        let detail = cell
            .last_error()
            .map(|e| format!(" (last error: {e})"))
            .unwrap_or_default();
        cell.refresh_now();
        let mut error = ClientReply::error(
            503,
            Outcome::NoCredentials,
            "NoCredentials",
            format!(
                "{why} from the {}{detail}; the request was not sent to Lambda",
                cell.source
            ),
        );
        error.headers.push(("retry-after".into(), "1".into()));
        return reply(error);
    };

    let request = match invoke::signed_request(backend, event, &credentials, now) {
        Ok(r) => r,
        Err(error) => {
            return reply(ClientReply::error(
                500,
                Outcome::LambdaError,
                "SigningFailed",
                error.to_string(),
            ))
        }
    };
    let function_ref = FunctionRef {
        name: &backend.function_name,
        qualifier: backend.qualifier.as_deref(),
        region: &backend.region,
    };
    match invoke::send(&invoke::thread_client(&gw.tls), request, rule.timeout).await {
        Ok(lambda) => {
            let mapped = response::map_reply(
                &lambda,
                function_ref,
                backend.response_mode,
                backend.invocation,
            );
            if mapped.outcome == Outcome::CredentialsRejected {
                cell.refresh_now();
            }
            reply(mapped)
        }
        Err(InvokeError::Timeout(limit)) => reply(ClientReply::error(
            504,
            Outcome::Timeout,
            "Timeout",
            format!(
                "Lambda did not answer for {function_ref} within the route's timeout of {limit:?}"
            ),
        )),
        Err(error) => reply(ClientReply::error(
            502,
            Outcome::Unreachable,
            "LambdaUnreachable",
            format!(
                "invoking {function_ref} at {}: {error}",
                backend.endpoint.authority
            ),
        )),
    }
}

/// Bodies up to this size are read and discarded before a 413, so the client sees the answer instead of a
/// reset connection; anything larger gets the 413 and the connection is closed.
const DRAIN_LIMIT: usize = 16 * 1024 * 1024;

async fn drain(body: Body, declared: usize) {
    if declared > DRAIN_LIMIT {
        return;
    }
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        Limited::new(body, DRAIN_LIMIT).collect(),
    )
    .await;
}

fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split(']')
            .next()
            .map(|h| &host[..h.len() + 1])
            .unwrap_or(host);
    }
    host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
}

/// Watches the config files (through their directories, so ConfigMap symlink swaps are seen) and reloads.
pub fn watch_config(gateway: Arc<Gateway>) -> notify::Result<notify::RecommendedWatcher> {
    use notify::Watcher as _;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if !event.kind.is_access() {
                let _ = tx.send(());
            }
        }
    })?;
    let mut dirs: Vec<PathBuf> = gateway
        .config_paths
        .iter()
        .map(|p| {
            let absolute = std::path::absolute(p).unwrap_or_else(|_| p.clone());
            absolute
                .parent()
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("."))
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    for dir in &dirs {
        watcher.watch(dir, notify::RecursiveMode::NonRecursive)?;
    }
    // Mounted Secrets (`--secrets-dir`) rotate too.
    if let Some(dir) = &gateway.load_options.secrets_dir {
        watcher.watch(dir, notify::RecursiveMode::Recursive)?;
    }
    tokio::spawn(async move {
        let mut last = fingerprint(
            &gateway.config_paths,
            gateway.load_options.secrets_dir.as_deref(),
        );
        while rx.recv().await.is_some() {
            // Debounce: editors and kubelet write in several steps.
            tokio::time::sleep(Duration::from_millis(200)).await;
            while rx.try_recv().is_ok() {}
            let now = fingerprint(
                &gateway.config_paths,
                gateway.load_options.secrets_dir.as_deref(),
            );
            if now == last {
                continue;
            }
            last = now;
            let _ = gateway.reload().await;
        }
    });
    Ok(watcher)
}

/// Contents of the config files (and of the Secret files they may use), to skip reloads when nothing changed.
fn fingerprint(paths: &[PathBuf], secrets_dir: Option<&std::path::Path>) -> Vec<Option<Vec<u8>>> {
    let mut contents: Vec<Option<Vec<u8>>> = paths.iter().map(|p| std::fs::read(p).ok()).collect();
    if let Some(dir) = secrets_dir {
        let mut secrets: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|entry| {
                ["accessKey", "secretKey", "sessionToken"].map(|k| entry.path().join(k))
            })
            .collect();
        secrets.sort();
        contents.extend(secrets.iter().map(|p| std::fs::read(p).ok()));
    }
    contents
}
