//! Process wiring: parse and validate configuration, set up logging, build the runtime, start the
//! refreshers and listeners, and handle SIGTERM (drain) or the `exec` child's lifetime.
//!
//! Contract: configuration problems (flags, env, YAML, auth token files) are printed one per line
//! and exit 64 before any port is bound; a listener that cannot be bound exits 1; `exec` exits with
//! the child's status (128+N when the child died of signal N).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};

use crate::auth_token::{load_or_create, AuthToken};
use crate::config::{resolve, Cli, Command, LogFormat, Mode, Settings, EXIT_CONFIG};
use crate::exchange::StsExchanger;
use crate::metrics::Metrics;
use crate::role::{self, SystemClock};
use crate::server::{bind_all, serve, App, ListenerKind, ServedRole};

/// Entry point; returns the process exit code.
pub fn main_entry() -> i32 {
    let cli = Cli::parse();
    let mode = match cli.command {
        Some(Command::Exec { .. }) => Mode::Exec,
        None => Mode::Serve,
    };
    let settings = match resolve(&cli.options, mode) {
        Ok(s) => s,
        Err(problems) => return config_failure(&problems),
    };
    init_logging(&settings);

    // Exec: pick the role before anything is bound.
    let exec = match cli.command {
        Some(Command::Exec { role, command }) => {
            let index = match &role {
                Some(name) => settings.roles.iter().position(|r| &r.settings.name == name),
                None => settings
                    .default_role
                    .as_ref()
                    .and_then(|d| settings.roles.iter().position(|r| &r.settings.name == d))
                    .or_else(|| (settings.roles.len() == 1).then_some(0)),
            };
            let Some(index) = index else {
                let names: Vec<&str> = settings
                    .roles
                    .iter()
                    .map(|r| r.settings.name.as_str())
                    .collect();
                return config_failure(&[format!(
                    "exec: choose a role with --role (one of: {})",
                    names.join(", ")
                )]);
            };
            Some((index, command))
        }
        None => None,
    };

    // Auth tokens are part of the configuration: load or create them before binding.
    let mut temp_dir = None;
    let mut tokens = Vec::new();
    let mut token_paths = Vec::new();
    let mut problems = Vec::new();
    for r in &settings.roles {
        let path = match &r.auth_token_file {
            Some(p) => p.clone(),
            None => {
                let dir = match &temp_dir {
                    Some(d) => d,
                    None => match private_temp_dir() {
                        Ok(d) => temp_dir.insert(d),
                        Err(e) => return config_failure(&[e]),
                    },
                };
                dir.path.join(format!("token-{}", r.settings.name))
            }
        };
        match load_or_create(&path, settings.auth_token_file_mode) {
            Ok((token, generated)) => {
                tracing::info!(role = %r.settings.name, path = %path.display(), generated, "auth token ready");
                tokens.push(token);
            }
            Err(e) => problems.push(e),
        }
        token_paths.push(path);
    }
    if !problems.is_empty() {
        return config_failure(&problems);
    }

    let mut builder = if settings.worker_threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(settings.worker_threads);
        b
    };
    let runtime = match builder
        .enable_all()
        .max_blocking_threads(4)
        .thread_keep_alive(Duration::from_secs(2))
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("credproxy: cannot start the async runtime: {e}");
            return 1;
        }
    };
    let code = runtime.block_on(async_main(settings, tokens, token_paths, exec));
    drop(temp_dir);
    code
}

fn config_failure(problems: &[String]) -> i32 {
    for p in problems {
        eprintln!("credproxy: invalid configuration: {p}");
    }
    EXIT_CONFIG
}

fn init_logging(settings: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log_filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match settings.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Plain => builder.try_init(),
    };
}

/// A 0700 temporary directory removed on drop (exec mode's token file lives there).
struct TempDir {
    path: PathBuf,
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn private_temp_dir() -> Result<TempDir, String> {
    use std::os::unix::fs::DirBuilderExt;
    let suffix: u64 = rand::random();
    let path = std::env::temp_dir().join(format!("credproxy-{}-{suffix:016x}", std::process::id()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&path)
        .map_err(|e| {
            format!(
                "cannot create a private directory for the auth token in {}: {e}",
                path.display()
            )
        })?;
    Ok(TempDir { path })
}

async fn async_main(
    settings: Settings,
    tokens: Vec<AuthToken>,
    token_paths: Vec<PathBuf>,
    exec: Option<(usize, Vec<OsString>)>,
) -> i32 {
    // Several rustls providers may be compiled in; pick aws-lc-rs explicitly.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let metrics = Arc::new(Metrics::new());
    let mut roles = Vec::new();
    for (r, token) in settings.roles.iter().zip(tokens) {
        let exchanger = StsExchanger::new(&r.endpoint, r.request.clone()).await;
        tracing::info!(
            role = %r.settings.name,
            role_arn = %r.request.role_arn,
            region = %r.endpoint.region,
            sts_endpoint = r.endpoint.url.as_deref().unwrap_or("(regional default)"),
            session_name = %r.request.session_name,
            "prefetching credentials"
        );
        let handle = role::spawn(
            r.settings.clone(),
            exchanger,
            Arc::new(SystemClock),
            role::thread_random(),
            metrics.clone(),
        );
        roles.push(ServedRole { handle, token });
    }
    let default_role = settings
        .default_role
        .as_ref()
        .and_then(|d| roles.iter().position(|r| &r.handle.settings.name == d));
    let app = Arc::new(App {
        roles,
        default_role,
        allowed_hosts: settings.allowed_hosts.clone(),
        metrics,
        cold_start_wait: settings.cold_start_wait,
        draining: AtomicBool::new(false),
    });

    let credential_listeners = match bind_all(&settings.listen, "--listen").await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("{e}");
            return 1;
        }
    };
    let bound: Vec<_> = credential_listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect();
    for l in credential_listeners {
        tokio::spawn(serve(l, app.clone(), ListenerKind::Credentials));
    }
    if let Some(m) = settings.metrics_listen {
        match bind_all(&[m], "--metrics-listen").await {
            Ok(ls) => {
                for l in ls {
                    tokio::spawn(serve(l, app.clone(), ListenerKind::Metrics));
                }
            }
            Err(e) => {
                tracing::error!("{e}");
                return 1;
            }
        }
    }
    tracing::info!(listen = ?bound, metrics = ?settings.metrics_listen, "serving /v1/credentials");

    match exec {
        None => wait_for_shutdown(&app, settings.drain).await,
        Some((index, command)) => {
            let addr = bound[0];
            let role_name = &app.roles[index].handle.settings.name;
            let path = if Some(index) == app.default_role {
                "/v1/credentials".to_string()
            } else {
                format!("/v1/credentials/{role_name}")
            };
            run_child(
                &app,
                index,
                &format!("http://{addr}{path}"),
                &token_paths[index],
                command,
            )
            .await
        }
    }
}

async fn wait_for_shutdown(app: &App, drain: Duration) -> i32 {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return 1;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    app.draining.store(true, Ordering::Relaxed);
    tracing::info!(
        drain_s = drain.as_secs_f64(),
        "shutdown requested; still serving during the drain period"
    );
    tokio::select! {
        _ = tokio::time::sleep(drain) => tracing::info!("drain period over; exiting"),
        _ = term.recv() => tracing::info!("second signal; exiting now"),
        _ = int.recv() => tracing::info!("second signal; exiting now"),
    }
    0
}

async fn run_child(
    app: &App,
    index: usize,
    url: &str,
    token_file: &Path,
    command: Vec<OsString>,
) -> i32 {
    // Give the child credentials from its first call when STS is reachable.
    let _ = app.roles[index]
        .handle
        .lookup_or_wait(Duration::from_secs(5))
        .await;
    if !app.roles[index].handle.is_ready() {
        tracing::warn!("starting the command before credentials are available; it will get 503/502 until they are");
    }
    let (program, args) = command.split_first().expect("clap requires a command");
    let mut child = match tokio::process::Command::new(program)
        .args(args)
        .env("AWS_CONTAINER_CREDENTIALS_FULL_URI", url)
        .env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", token_file)
        .env_remove("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        .env_remove("AWS_CONTAINER_AUTHORIZATION_TOKEN")
        // SDK chains try web identity before the container provider: the child must not see it,
        // or it would bypass credproxy (and call STS itself on every start).
        .env_remove("AWS_ROLE_ARN")
        .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
        .env_remove("AWS_ROLE_SESSION_NAME")
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(command = %program.to_string_lossy(), "cannot start the command: {e}");
            return 127;
        }
    };
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return 1;
    };
    loop {
        tokio::select! {
            status = child.wait() => return exit_code(status),
            _ = term.recv() => forward(&child, rustix::process::Signal::TERM),
            _ = int.recv() => forward(&child, rustix::process::Signal::INT),
        }
    }
}

fn forward(child: &tokio::process::Child, sig: rustix::process::Signal) {
    if let Some(pid) = child
        .id()
        .and_then(|id| rustix::process::Pid::from_raw(id as i32))
    {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

fn exit_code(status: std::io::Result<ExitStatus>) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)),
        Err(e) => {
            tracing::error!("waiting for the command failed: {e}");
            1
        }
    }
}
