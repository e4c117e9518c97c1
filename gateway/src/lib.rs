//! podcred gateway: serves HTTP routes by invoking AWS Lambda functions over the Invoke API with SigV4.
//!
//! Reads the seed's own manifests (Gateway API `Gateway` + `HTTPRoute`, kgateway `Backend`), signs with
//! credentials from the container-credentials endpoint (or the standard chain, or a Secret), and maps Lambda's
//! answers to HTTP per the table in [`response`].
//!
//! Layout, from the inside out:
//! - [`model`]: the domain types (Backend, payload modes, replies, outcomes); imports nothing else.
//! - [`config`]: YAML documents → model + problems. [`routing`]: which rule serves a request.
//!   [`event`]: request → Lambda event. [`response`]: Lambda's answer → client reply. [`invoke`] and
//!   [`signing`]: the signed Invoke request. All pure (the signer caches derived keys per thread).
//! - [`credentials`] (fetch, cache, refresh), [`upstream`] (send to Lambda), [`clock`]: the outside world,
//!   behind seams tests replace.
//! - [`state`]: the served configuration, credential cells and metrics; [`pipeline`]: one request through
//!   named steps; [`server`]: sockets, client limits, admin endpoints, reloads.

pub mod clock;
pub mod cluster;
pub mod config;
pub mod credentials;
pub mod event;
pub mod invoke;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod response;
pub mod routing;
pub mod server;
pub mod signing;
pub mod state;
pub mod upstream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Command-line options (see README).
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "gateway",
    version,
    about = "HTTP gateway to AWS Lambda, configured by kgateway Backend + Gateway API HTTPRoute manifests",
    group(clap::ArgGroup::new("source").required(true).args(["config", "from_cluster"])),
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true
)]
pub struct Args {
    /// `gateway controller …` instead of serving routes.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// YAML files holding Gateway, HTTPRoute, Backend (and Secret) objects; several documents per file allowed.
    /// Either --config or --from-cluster, not both.
    #[arg(long = "config", short = 'c', num_args = 1..)]
    pub config: Vec<PathBuf>,
    /// Read the objects from the Kubernetes API server instead of files (watched; changes are applied
    /// atomically). Either --config or --from-cluster, not both.
    #[arg(long)]
    pub from_cluster: bool,
    /// kubeconfig for --from-cluster (default: the pod's in-cluster service account).
    #[arg(long, requires = "from_cluster")]
    pub kubeconfig: Option<PathBuf>,
    /// With --from-cluster: serve the Gateways whose GatewayClass has this spec.controllerName.
    #[arg(long, default_value = cluster::DEFAULT_CONTROLLER_NAME)]
    pub controller_name: String,
    /// With --from-cluster: write the status of our GatewayClasses, Gateways and their HTTPRoutes (only where
    /// it differs). For a single replica without the gateway controller, which otherwise writes status.
    #[arg(long, requires = "from_cluster")]
    pub write_status: bool,
    /// With --from-cluster: serve only this Gateway (NAMESPACE/NAME) and its routes.
    #[arg(long, requires = "from_cluster", value_parser = parse_gateway_id)]
    pub gateway: Option<String>,
    /// Address to serve on, overriding the Gateway listener's port (default: 0.0.0.0:<listener port>).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, default_value = "127.0.0.1:9091")]
    pub admin_listen: SocketAddr,
    /// Directory of mounted Secrets (`<dir>/<name>/accessKey|secretKey|sessionToken`) for `auth.type: Secret`.
    #[arg(long)]
    pub secrets_dir: Option<PathBuf>,
    /// Timeout for routes that set none (Gateway API duration, e.g. 60s).
    #[arg(long, default_value = "60s", value_parser = parse_timeout)]
    pub default_timeout: Duration,
    /// Check the configuration, print problems and warnings, and exit.
    #[arg(long)]
    pub check: bool,
    /// Log each request (target `access`).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub access_log: bool,
    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Do not watch the config files for changes.
    #[arg(long)]
    pub no_watch: bool,
    /// Proxy worker threads (default: one per CPU).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Time a client has from the first byte of a request to the end of its headers.
    #[arg(long, default_value = "10s", value_parser = parse_timeout)]
    pub header_read_timeout: Duration,
    /// Time a client has to send the request body once the headers are in (else 408).
    #[arg(long, default_value = "30s", value_parser = parse_timeout)]
    pub body_read_timeout: Duration,
    /// A keep-alive connection with no request in flight and no progress is closed after this.
    #[arg(long, default_value = "60s", value_parser = parse_timeout)]
    pub idle_timeout: Duration,
    /// Largest request line + headers, in bytes (larger: 431).
    #[arg(long, default_value_t = 64 * 1024)]
    pub max_header_bytes: usize,
    /// Open client connections across all workers (more wait in the listen backlog). Lowered to fit the
    /// open-files limit.
    #[arg(long, default_value_t = 16384)]
    pub max_connections: usize,
}

/// Modes other than serving routes.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Provision a proxy (ServiceAccount, Deployment, Service) for every Gateway of our GatewayClass, as
    /// kgateway does; leader-elected through a Lease (see README "Gateway controller").
    Controller(cluster::controller::ControllerArgs),
}

impl Args {
    /// The `--log-format` of the mode being run.
    pub fn log_format(&self) -> &str {
        match &self.command {
            Some(Command::Controller(controller)) => &controller.log_format,
            None => &self.log_format,
        }
    }
}

fn parse_gateway_id(text: &str) -> Result<String, String> {
    match text.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(text.to_string())
        }
        _ => Err(format!("{text:?} is not NAMESPACE/NAME")),
    }
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    config::parse_duration(text)
        .ok_or_else(|| format!("{text:?} is not a duration like 60s, 500ms or 1m30s"))
}

/// What ended the program, and the exit code it maps to.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Serve(#[from] server::ServeError),
}

impl From<cluster::controller::ControllerError> for RunError {
    fn from(error: cluster::controller::ControllerError) -> Self {
        match error {
            cluster::controller::ControllerError::Usage(message) => RunError::Usage(message),
            cluster::controller::ControllerError::Io(message) => RunError::Io(message),
        }
    }
}

impl RunError {
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Config(_) | RunError::Usage(_) => 64,
            RunError::Io(_) | RunError::Serve(_) => 1,
        }
    }
}

/// The endpoint override from the standard SDK variables (`AWS_ENDPOINT_URL_LAMBDA`, then `AWS_ENDPOINT_URL`).
pub fn endpoint_override_from_env() -> Option<String> {
    ["AWS_ENDPOINT_URL_LAMBDA", "AWS_ENDPOINT_URL"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
}

/// Runs the gateway until SIGTERM/SIGINT.
pub fn run(args: Args) -> Result<(), RunError> {
    let control = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RunError::Io(format!("cannot start the async runtime: {e}")))?;
    match args.command {
        Some(Command::Controller(controller)) => {
            control.block_on(cluster::controller::run(controller))?;
            Ok(())
        }
        None => control.block_on(serve(args)),
    }
}

async fn serve(args: Args) -> Result<(), RunError> {
    let load_options = config::LoadOptions {
        secrets_dir: args.secrets_dir.clone(),
        endpoint_override: endpoint_override_from_env(),
        default_timeout: Some(args.default_timeout),
        source: if args.from_cluster {
            config::Source::Cluster
        } else {
            config::Source::Files
        },
    };
    let (config, cluster) = if args.from_cluster {
        let (config, watch, scope, fingerprint, client) =
            first_cluster_config(&args, &load_options).await?;
        let findings = config.findings.clone();
        cluster::log_problems(&config);
        (config, Some((watch, scope, fingerprint, findings, client)))
    } else {
        (config::load_files(&args.config, &load_options)?, None)
    };
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    if args.check {
        println!(
            "configuration OK: {} route rules, {} backends, listener port {}",
            config.routes.rules().len(),
            config.backends.len(),
            config
                .listener_port
                .map(|p| p.to_string())
                .unwrap_or_else(|| "none".into())
        );
        return Ok(());
    }
    let listen = match (args.listen, config.listener_port) {
        (Some(addr), _) => addr,
        (None, Some(port)) => SocketAddr::from(([0, 0, 0, 0], port)),
        (None, None) => {
            return Err(RunError::Usage(
                "no Gateway with an HTTP listener in the config files: add the Gateway manifest or pass --listen ADDR".into(),
            ))
        }
    };
    for backend in &config.backends {
        tracing::info!(
            backend = %backend.id, function = %backend.arn, endpoint = %backend.endpoint.authority,
            request_event = ?backend.request_event, response = ?backend.response_mode, invocation = ?backend.invocation,
            "backend"
        );
    }
    let workers = args
        .workers
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(usize::from)
                .unwrap_or(1)
        })
        .max(1);
    let limits = state::ClientLimits {
        header_read_timeout: args.header_read_timeout,
        body_read_timeout: args.body_read_timeout,
        idle_timeout: args.idle_timeout,
        max_header_bytes: args.max_header_bytes,
        max_connections_per_worker: connections_per_worker(args.max_connections, workers),
        ..state::ClientLimits::default()
    };
    let upstream = upstream::HttpUpstream::new()
        .map_err(|e| RunError::Io(format!("cannot set up TLS for Lambda endpoints: {e}")))?;
    let settings = state::Settings {
        config_paths: args.config.clone(),
        load_options,
        access_log: args.access_log,
        limits,
    };
    let deps = state::Dependencies {
        clock: clock::system(),
        upstream: std::sync::Arc::new(upstream),
        default_credentials: None,
    };
    let gateway = state::Gateway::new(config, settings, deps).await;
    let watch_files = !args.no_watch && cluster.is_none();
    if let Some((watch, scope, fingerprint, findings, client)) = cluster {
        if !args.no_watch {
            let status = args.write_status.then(|| cluster::StatusWriter {
                client,
                clock: clock::system(),
            });
            tokio::spawn(cluster::follow(
                watch,
                gateway.clone(),
                scope,
                fingerprint,
                findings,
                status,
            ));
        }
    }
    server::serve(gateway, listen, args.admin_listen, workers, watch_files).await?;
    Ok(())
}

/// `--from-cluster`: connects, waits for the first full sync of every watched kind, and returns the first
/// configuration that compiles (and, without `--listen`, has a listener port) — until then the gateway does
/// not listen, so it is not ready. With `--check`, the first sync's result is final.
async fn first_cluster_config(
    args: &Args,
    options: &config::LoadOptions,
) -> Result<
    (
        config::Config,
        cluster::ClusterWatch,
        cluster::Scope,
        String,
        kube::Client,
    ),
    RunError,
> {
    let client = cluster::client(args.kubeconfig.as_deref())
        .await
        .map_err(RunError::Usage)?;
    let watch = cluster::ClusterWatch::start(&client);
    watch.wait_synced().await;
    let scope = cluster::Scope {
        controller_name: args.controller_name.clone(),
        gateway: args.gateway.clone(),
    };
    let mut last = None;
    loop {
        let (selection, result) = cluster::compile_snapshot(&watch.snapshot(), &scope, options);
        if last.as_ref() != Some(&selection.fingerprint) {
            match result {
                Ok(config)
                    if args.check || args.listen.is_some() || config.listener_port.is_some() =>
                {
                    tracing::info!(gateways = ?selection.gateways, "cluster configuration compiled");
                    return Ok((config, watch, scope, selection.fingerprint, client));
                }
                Ok(_) => tracing::warn!(
                    controller_name = %scope.controller_name, gateway = ?scope.gateway,
                    "no Gateway of a GatewayClass with this controllerName has an HTTP listener yet; waiting (or pass --listen)"
                ),
                Err(error) if args.check => return Err(RunError::Config(error)),
                Err(error) => cluster::log_rejected(&error),
            }
            last = Some(selection.fingerprint);
        }
        watch.next_change().await;
    }
}

/// `--max-connections` split across workers, lowered so that every connection (plus one upstream connection
/// each and some spare descriptors) fits the process's open-files limit.
fn connections_per_worker(requested: usize, workers: usize) -> usize {
    let per_worker = (requested / workers).max(1);
    match open_files_limit() {
        Some(limit) => {
            // Each client connection may hold one upstream connection; keep 256 descriptors spare.
            let fit = (limit.saturating_sub(256) / 2 / workers as u64).max(1) as usize;
            if fit < per_worker {
                tracing::warn!(
                    open_files_limit = limit,
                    requested,
                    allowed = fit * workers,
                    "--max-connections lowered to fit the open-files limit (raise `ulimit -n` to allow more)"
                );
            }
            per_worker.min(fit)
        }
        None => per_worker,
    }
}

/// The soft `RLIMIT_NOFILE`, from `/proc/self/limits` (Linux).
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}
