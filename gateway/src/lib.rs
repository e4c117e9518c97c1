//! podcred gateway: serves HTTP routes by invoking AWS Lambda functions over the Invoke API with SigV4.
//!
//! Reads the seed's own manifests (Gateway API `Gateway` + `HTTPRoute`, kgateway `Backend`), signs with
//! credentials from the container-credentials endpoint (or the standard chain, or a Secret), and maps Lambda's
//! answers to HTTP per `reference/lambda-gateway.md` §5.7. Pure cores: [`config`], [`routing`], [`event`],
//! [`response`], [`endpoint`]; I/O: [`credentials`], [`invoke`], [`server`].

pub mod config;
pub mod credentials;
pub mod event;
pub mod invoke;
pub mod metrics;
pub mod model;
pub mod response;
pub mod routing;
pub mod server;
pub mod signing;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Command-line options (see README).
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "gateway",
    version,
    about = "HTTP gateway to AWS Lambda, configured by kgateway Backend + Gateway API HTTPRoute manifests"
)]
pub struct Args {
    /// YAML files holding Gateway, HTTPRoute, Backend (and Secret) objects; several documents per file allowed.
    #[arg(long = "config", short = 'c', required = true, num_args = 1..)]
    pub config: Vec<PathBuf>,
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
}

impl RunError {
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Config(_) | RunError::Usage(_) => 64,
            RunError::Io(_) => 1,
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
///
/// Threads: one control thread (config, reloads, credential refresh, admin listener, signals) and `--workers`
/// proxy threads, each with its own single-threaded runtime, its own `SO_REUSEPORT` listener on the same
/// address and its own upstream connection pool — the nginx worker model, without cross-thread wake-ups.
pub fn run(args: Args) -> Result<(), RunError> {
    let control = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RunError::Io(format!("cannot start the async runtime: {e}")))?;
    control.block_on(serve(args))
}

async fn serve(args: Args) -> Result<(), RunError> {
    let options = config::LoadOptions {
        secrets_dir: args.secrets_dir.clone(),
        endpoint_override: endpoint_override_from_env(),
        default_timeout: Some(args.default_timeout),
    };
    let config = config::load_files(&args.config, &options)?;
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
    let gateway = server::Gateway::new(config, args.config.clone(), options, args.access_log)
        .await
        .map_err(|e| RunError::Io(format!("cannot set up TLS for Lambda endpoints: {e}")))?;
    let admin_listener = tokio::net::TcpListener::bind(args.admin_listen)
        .await
        .map_err(|e| {
            RunError::Io(format!(
                "cannot listen on {} (admin): {e}",
                args.admin_listen
            ))
        })?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let workers = args
        .workers
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(usize::from)
                .unwrap_or(1)
        })
        .max(1);
    let mut threads = Vec::new();
    let mut bound = listen;
    for index in 0..workers {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let gateway = gateway.clone();
        let mut stop = stop_rx.clone();
        let addr = bound;
        let thread = std::thread::Builder::new()
            .name(format!("gateway-worker-{index}"))
            .spawn(move || {
                worker(index, addr, gateway, ready_tx, async move {
                    let _ = stop.changed().await;
                })
            })
            .map_err(|e| RunError::Io(format!("cannot start worker thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(actual)) => bound = actual,
            Ok(Err(e)) => {
                let _ = stop_tx.send(true);
                return Err(RunError::Io(format!("cannot listen on {addr}: {e}")));
            }
            Err(_) => return Err(RunError::Io("a worker thread died while starting".into())),
        }
        threads.push(thread);
    }

    let _watcher = if args.no_watch {
        None
    } else {
        Some(
            server::watch_config(gateway.clone())
                .map_err(|e| RunError::Io(format!("cannot watch the config files: {e}")))?,
        )
    };
    tracing::info!(listen = %bound, admin = %args.admin_listen, workers, "gateway serving");

    let mut admin_stop = stop_rx.clone();
    let admin = axum::serve(admin_listener, server::admin_router(gateway.clone()))
        .with_graceful_shutdown(async move {
            let _ = admin_stop.changed().await;
        });
    let signal = async {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    };
    let (admin_result, ()) = tokio::join!(admin, signal);
    admin_result.map_err(|e| RunError::Io(format!("admin server: {e}")))?;
    for thread in threads {
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
    tracing::info!("gateway stopped");
    Ok(())
}

/// One proxy worker: a single-threaded runtime serving its own `SO_REUSEPORT` listener until `stop`.
fn worker(
    index: usize,
    addr: SocketAddr,
    gateway: std::sync::Arc<server::Gateway>,
    ready: std::sync::mpsc::Sender<std::io::Result<SocketAddr>>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    runtime.block_on(async move {
        let listener = match bind_reuseport(addr) {
            Ok(l) => l,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let _ = ready.send(listener.local_addr());
        let app = server::proxy_router(gateway).into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(worker = index, error = %e, "proxy worker stopped");
        }
    });
}

fn bind_reuseport(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
