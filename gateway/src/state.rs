//! The state every worker serves from: the current configuration with the credential cell of each Backend
//! (swapped atomically on reload), the metrics, the Lambda client and the clock.
//!
//! Each request loads the current [`Runtime`] once and keeps it to the end, so a reload never disturbs
//! in-flight requests; new requests see the new routes immediately.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use tokio::sync::OnceCell;

use crate::clock::SharedClock;
use crate::config::{self, Config, LoadOptions};
use crate::credentials::{self, CredentialCell, CredentialState};
use crate::metrics::{FetchLabels, Metrics, ResultLabels, SourceLabels};
use crate::model::AuthSource;
use crate::upstream::SharedUpstream;

/// A configuration plus the credential cell of every Backend in it.
#[derive(Debug)]
pub struct Runtime {
    pub config: Config,
    /// Backend id → its credentials.
    pub cells: HashMap<String, Arc<CredentialCell>>,
}

/// Limits on what clients may send and how long they may take (flags `--header-read-timeout` etc.).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// From the first byte of a request to the end of its headers.
    pub header_read_timeout: Duration,
    /// From the end of the headers to the end of the body.
    pub body_read_timeout: Duration,
    /// A keep-alive connection with no request in flight (and a response nobody reads) is closed after this.
    pub idle_timeout: Duration,
    /// Request line plus headers, in bytes (larger: 431).
    pub max_header_bytes: usize,
    /// Open client connections per worker; further connections wait in the listen backlog.
    pub max_connections_per_worker: usize,
    /// After refusing a request body (413), how long its remaining bytes are read and discarded so the client
    /// can read the answer (nginx's lingering close).
    pub linger: Duration,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: 64 * 1024,
            max_connections_per_worker: 4096,
            linger: Duration::from_secs(5),
        }
    }
}

/// How the gateway behaves, beyond its routes.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub config_paths: Vec<PathBuf>,
    pub load_options: LoadOptions,
    pub access_log: bool,
    pub limits: ClientLimits,
}

/// What the gateway talks to, injected so tests can replace each.
#[derive(Debug, Clone)]
pub struct Dependencies {
    pub clock: SharedClock,
    pub upstream: SharedUpstream,
    /// The credentials of Backends without `auth` (name of the source, provider); None = chosen from the
    /// environment on first use ([`credentials::default_provider`]).
    pub default_credentials: Option<(String, SharedCredentialsProvider)>,
}

pub struct Gateway {
    runtime: ArcSwap<Runtime>,
    pub metrics: Arc<Metrics>,
    default_cell: OnceCell<Arc<CredentialCell>>,
    pub settings: Settings,
    pub deps: Dependencies,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Builds the gateway around an already validated configuration. Must run inside the control runtime:
    /// it starts the credential refresher of Backends without `auth`.
    pub async fn new(config: Config, settings: Settings, deps: Dependencies) -> Arc<Gateway> {
        let gateway = Arc::new(Gateway {
            runtime: ArcSwap::from_pointee(Runtime {
                config: empty_config(),
                cells: HashMap::new(),
            }),
            metrics: Arc::new(Metrics::new()),
            default_cell: OnceCell::new(),
            settings,
            deps,
        });
        let runtime = gateway.runtime_for(config).await;
        gateway.runtime.store(Arc::new(runtime));
        gateway
    }

    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    pub fn now(&self) -> SystemTime {
        self.deps.clock.now()
    }

    async fn default_cell(&self) -> Arc<CredentialCell> {
        self.default_cell
            .get_or_init(|| async {
                let (source, provider) = match &self.deps.default_credentials {
                    Some(injected) => injected.clone(),
                    None => credentials::default_provider().await,
                };
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
                tokio::spawn(credentials::refresh_loop(
                    cell.clone(),
                    provider,
                    self.deps.clock.clone(),
                    on_fetch,
                ));
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

    /// Swaps in a new configuration (already validated).
    pub async fn install(&self, config: Config) {
        for warning in &config.warnings {
            tracing::warn!("{warning}");
        }
        let old_port = self.runtime().config.listener_port;
        if config.listener_port != old_port {
            tracing::warn!(?old_port, new_port = ?config.listener_port, "the listener port changed; the new port takes effect on restart");
        }
        let runtime = self.runtime_for(config).await;
        let rules = runtime.config.routes.rules().len();
        self.runtime.store(Arc::new(runtime));
        self.metrics
            .reloads
            .get_or_create(&ResultLabels { result: "ok" })
            .inc();
        tracing::info!(rules, "configuration loaded");
    }

    /// Re-reads the config files; on success swaps the runtime, otherwise keeps serving the old one.
    pub async fn reload(&self) -> Result<(), config::ConfigError> {
        match config::load_files(&self.settings.config_paths, &self.settings.load_options) {
            Ok(config) => {
                self.install(config).await;
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
        let now = self.now();
        let mut ready = true;
        let mut sources = serde_json::Map::new();
        for cell in runtime.cells.values() {
            let state = cell.state(now);
            ready &= state == CredentialState::Valid;
            let mut detail = serde_json::json!({"state": state.as_str()});
            if let Some(expiry) = cell.expiry() {
                detail["expiration"] = credentials::rfc3339(expiry).into();
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

    /// Updates the credential gauges (called when `/metrics` is scraped).
    pub fn refresh_credential_gauges(&self) {
        let runtime = self.runtime();
        let now = self.now();
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
        findings: Default::default(),
    }
}
