//! podcred gateway: serves HTTP routes by invoking AWS Lambda functions over the Invoke API with SigV4.
//!
//! Reads the seed's own manifests (Gateway API `Gateway` + `HTTPRoute`, kgateway `Backend`), signs with
//! credentials from the container-credentials endpoint (or the standard chain, or a Secret), and maps Lambda's
//! answers to HTTP per `reference/lambda-gateway.md` §5.7. Pure cores: [`config`], [`routing`], [`event`],
//! [`response`], [`endpoint`]; I/O: [`credentials`], [`invoke`], [`server`].

pub mod config;
pub mod credentials;
pub mod endpoint;
pub mod event;
pub mod invoke;
pub mod metrics;
pub mod response;
pub mod routing;
pub mod server;

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

pub async fn run(args: Args) -> Result<(), RunError> {
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
        .map_err(|e| RunError::Io(format!("cannot build the HTTPS client: {e}")))?;

    let proxy_listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| RunError::Io(format!("cannot listen on {listen}: {e}")))?;
    let admin_listener = tokio::net::TcpListener::bind(args.admin_listen)
        .await
        .map_err(|e| {
            RunError::Io(format!(
                "cannot listen on {} (admin): {e}",
                args.admin_listen
            ))
        })?;
    let _watcher = if args.no_watch {
        None
    } else {
        Some(
            server::watch_config(gateway.clone())
                .map_err(|e| RunError::Io(format!("cannot watch the config files: {e}")))?,
        )
    };
    tracing::info!(%listen, admin = %args.admin_listen, "gateway serving");

    let shutdown = shutdown_signal();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let admin = axum::serve(admin_listener, server::admin_router(gateway.clone()))
        .with_graceful_shutdown({
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.changed().await;
            }
        });
    let proxy = axum::serve(
        proxy_listener,
        server::proxy_router(gateway.clone()).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let (proxy_result, admin_result) = tokio::join!(proxy, admin);
    proxy_result.map_err(|e| RunError::Io(format!("proxy server: {e}")))?;
    admin_result.map_err(|e| RunError::Io(format!("admin server: {e}")))?;
    tracing::info!("gateway stopped");
    Ok(())
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
