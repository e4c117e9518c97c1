//! `webhook` binary: parse flags (nothing is bound or read before they validate), then either run the
//! admission webhook server or `webhook inject`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tracing_subscriber::EnvFilter;
use webhook::admission::Admission;
use webhook::cache::{self, AnnotationDefaults, LiveIdentities, ServiceAccountCache};
use webhook::config::{self, Command, Config, LogConfig, LogFormat};
use webhook::container_credentials::{self, ContainerCredentials};
use webhook::metrics::Metrics;
use webhook::server::{self, AppState, Listeners};

/// mimalloc: the admission path allocates many small JSON values per request (≈ +75 % throughput over
/// glibc malloc in `tests/bench/webhook.sh`). Tuned for a small resident set, see [`ALLOCATOR_SETTINGS`].
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc reads its options from the environment at process start. Lazily committed arenas and immediate
/// purging keep RSS at the glibc level (idle ≈ 15 MiB instead of ≈ 24 MiB; 50,000 cached ServiceAccounts
/// ≈ 19 MiB instead of ≈ 44 MiB) at no measurable throughput cost. Values already in the environment win.
const ALLOCATOR_SETTINGS: [(&str, &str); 2] = [
    ("MIMALLOC_ARENA_EAGER_COMMIT", "0"),
    ("MIMALLOC_PURGE_DELAY", "0"),
];

/// Re-executes the server once with [`ALLOCATOR_SETTINGS`] in its environment (same PID, same arguments).
/// If that fails the server still runs, with mimalloc's defaults.
fn apply_allocator_settings() {
    use std::os::unix::process::CommandExt;
    if ALLOCATOR_SETTINGS
        .iter()
        .all(|(name, _)| std::env::var_os(name).is_some())
    {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        command.arg0(arg0);
    }
    command.args(args);
    for (name, value) in ALLOCATOR_SETTINGS {
        if std::env::var_os(name).is_none() {
            command.env(name, value);
        }
    }
    let error = command.exec();
    eprintln!("could not re-execute with allocator settings ({error}); continuing with mimalloc's defaults");
}

/// How often the TLS files and the container-credentials file are re-checked besides file events.
const FILE_RECHECK: Duration = Duration::from_secs(10);

fn init_logging(log: &LogConfig) {
    // RUST_LOG wins when set; otherwise `-v` maps onto our crates' level, dependencies stay at info.
    let level = log.level().to_string().to_lowercase();
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("info,webhook={level},certs={level}")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match log.format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Plain => builder.init(),
    }
    for ignored in &log.ignored {
        tracing::info!("flag accepted for compatibility: {ignored}");
    }
}

async fn kube_client(config: &Config) -> Result<kube::Client, String> {
    let mut kube_config = match (&config.kubeconfig, &config.kube_api) {
        (Some(path), _) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("--kubeconfig={}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .map_err(|e| format!("--kubeconfig={}: {e}", path.display()))?
        }
        (None, Some(url)) => kube::Config::new(
            url.parse()
                .map_err(|e| format!("--kube-api={url}: not a URL: {e}"))?,
        ),
        (None, None) => {
            tracing::warn!(
                "Neither --kubeconfig nor --kube-api was specified. Using the inClusterConfig."
            );
            kube::Config::incluster().map_err(|e| {
                format!("in-cluster Kubernetes configuration unavailable ({e}); pass --kubeconfig or --kube-api")
            })?
        }
    };
    if let (Some(_), Some(url)) = (&config.kubeconfig, &config.kube_api) {
        kube_config.cluster_url = url
            .parse()
            .map_err(|e| format!("--kube-api={url}: not a URL: {e}"))?;
    }
    kube::Client::try_from(kube_config).map_err(|e| format!("cannot create Kubernetes client: {e}"))
}

/// Resolves on the first SIGTERM/SIGINT; a second one exits immediately with status 1 (upstream).
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{signal, SignalKind};
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        let _ = first_tx.send(());
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        tracing::error!("second signal received, exiting");
        std::process::exit(1);
    });
    async move {
        let _ = first_rx.await;
    }
}

async fn serve(config: Config) -> Result<(), String> {
    tracing::info!("Creating server");
    // Everything that can fail on bad input happens before binding.
    let resolver = certs::ReloadingCertResolver::load(&config.tls_cert, &config.tls_key)
        .map_err(|e| format!("cannot load --tls-cert/--tls-key: {e}"))?;
    if let Some(warning) = config.tls.raised_min_version_warning() {
        tracing::warn!("{warning}");
    }
    let tls = certs::server_config(resolver.clone(), &config.tls, &[b"h2", b"http/1.1"])
        .map_err(|e| format!("invalid TLS settings: {e}"))?;
    let client = kube_client(&config).await?;
    let compose_role_arn = if config.compose_role_arn {
        let composer = cache::role_arn_composer_from_imds()
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(partition = %composer.partition, account = %composer.account_id, "composing role ARNs");
        Some(composer)
    } else {
        None
    };

    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let defaults = AnnotationDefaults {
        annotation_prefix: config.annotation_prefix.clone(),
        sidecar_prefix: config.sidecar.as_ref().map(|s| s.annotation_prefix.clone()),
        audience: config.token_audience.clone(),
        regional_sts: config.sts_regional_endpoint,
        token_expiration: config.token_expiration,
        compose_role_arn,
    };
    let sa_cache = ServiceAccountCache::new(
        defaults,
        config.service_account_lookup_grace_period,
        config.watch_config_map,
        metrics.cache.clone(),
    );
    let credentials = ContainerCredentials::new();
    let _credentials_watch = match &config.watch_container_credentials_config {
        Some(path) => Some(
            container_credentials::watch(credentials.clone(), path.clone(), FILE_RECHECK).map_err(
                |e| {
                    format!(
                        "cannot watch --watch-container-credentials-config={}: {e}",
                        path.display()
                    )
                },
            )?,
        ),
        None => None,
    };
    let _cert_watch = certs::watch(resolver.clone(), FILE_RECHECK).map_err(|e| e.to_string())?;

    let webhook_listener = server::bind_all_interfaces(config.port)
        .map_err(|e| format!("cannot listen on --port={}: {e}", config.port))?;
    let metrics_listener = server::bind_all_interfaces(config.metrics_port).map_err(|e| {
        format!(
            "cannot listen on --metrics-port={}: {e}",
            config.metrics_port
        )
    })?;

    let _cache_tasks = cache::run(
        sa_cache.clone(),
        client,
        config.watch_config_map.then_some(config.namespace.as_str()),
    );
    let identities = Arc::new(LiveIdentities {
        cache: sa_cache.clone(),
        container_credentials: credentials.clone(),
    });
    let state = Arc::new(AppState {
        admission: Admission::new(config.mutate_config(), identities),
        metrics,
        registry,
        cache: sa_cache,
        container_credentials: credentials,
        tls: Some(resolver),
        max_request_bytes: config.max_request_bytes,
        enable_debugging_handlers: config.enable_debugging_handlers,
        timeouts: Default::default(),
    });
    server::serve(
        state,
        Listeners {
            webhook: webhook_listener,
            metrics: metrics_listener,
            tls: Arc::new(tls),
        },
        shutdown_signal(),
    )
    .await
    .map_err(|e| format!("server error: {e}"))
}

fn main() -> ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let command = match config::parse(std::env::args_os()) {
        Ok(command) => command,
        Err(rejected) => {
            for message in &rejected.messages {
                eprintln!("{message}");
            }
            return ExitCode::from(u8::try_from(rejected.exit_code).unwrap_or(1));
        }
    };
    match command {
        Command::Print(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Command::Inject(inject) => {
            let mut stdin = std::io::stdin().lock();
            let mut stdout = std::io::stdout().lock();
            let mut stderr = std::io::stderr().lock();
            match webhook::inject::run(&inject, &mut stdin, &mut stdout, &mut stderr) {
                Ok(_) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("webhook inject: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Serve(config) => {
            apply_allocator_settings();
            init_logging(&config.log);
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("cannot start the async runtime: {error}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(serve(*config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(message) => {
                    tracing::error!("{message}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
