//! The HTTP layer: proxy workers, the admin listener, config reloads and signals. The request pipeline itself
//! is [`crate::pipeline`]; this layer only accepts connections, enforces client limits
//! ([`connection`]) and writes replies.
//!
//! Threads: one control thread (reloads, credential refresh, the admin listener, signals) and `--workers` proxy
//! threads, each with its own single-threaded runtime, its own `SO_REUSEPORT` listener on the same address and
//! its own upstream connections — the nginx worker model, without cross-thread wake-ups. Each worker holds at
//! most `max_connections_per_worker` client connections; further connections wait in the kernel's listen
//! backlog instead of exhausting file descriptors.

pub mod admin;
pub mod connection;
pub mod watch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch as signal_watch, Semaphore};

use crate::state::Gateway;

/// Why the server could not start or stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start a thread or runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot watch the config files: {0}")]
    Watch(certs::WatchError),
    #[error("admin server: {0}")]
    Admin(std::io::Error),
}

/// Serves `gateway` on `listen` (proxy) and `admin` until SIGTERM/SIGINT; in-flight requests finish first.
/// Runs inside the control runtime.
pub async fn serve(
    gateway: Arc<Gateway>,
    listen: SocketAddr,
    admin: SocketAddr,
    workers: usize,
    watch_files: bool,
) -> Result<(), ServeError> {
    let server = Server::start(gateway, listen, admin, workers, watch_files).await?;
    tracing::info!(listen = %server.proxy_addr, admin = %server.admin_addr, workers, "gateway serving");
    server.run_until(shutdown_signal()).await
}

/// A started gateway: its listeners are bound and its workers accept connections.
pub struct Server {
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    stop_tx: signal_watch::Sender<bool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    admin: tokio::task::JoinHandle<std::io::Result<()>>,
    _watcher: Option<certs::FileWatch>,
}

impl Server {
    /// Binds the admin listener and `workers` proxy listeners (port 0 picks one port for all of them).
    pub async fn start(
        gateway: Arc<Gateway>,
        listen: SocketAddr,
        admin: SocketAddr,
        workers: usize,
        watch_files: bool,
    ) -> Result<Server, ServeError> {
        let admin_listener = tokio::net::TcpListener::bind(admin)
            .await
            .map_err(|source| ServeError::Listen {
                addr: admin,
                source,
            })?;
        let admin_addr = admin_listener
            .local_addr()
            .map_err(|source| ServeError::Listen {
                addr: admin,
                source,
            })?;
        let (stop_tx, stop_rx) = signal_watch::channel(false);
        let mut threads = Vec::new();
        let mut bound = listen;
        for index in 0..workers.max(1) {
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let gateway = gateway.clone();
            let stop = stop_rx.clone();
            let addr = bound;
            let thread = std::thread::Builder::new()
                .name(format!("gateway-worker-{index}"))
                .spawn(move || worker(index, addr, gateway, ready_tx, stop))
                .map_err(ServeError::Runtime)?;
            match ready_rx.recv() {
                Ok(Ok(actual)) => bound = actual,
                Ok(Err(source)) => {
                    let _ = stop_tx.send(true);
                    return Err(ServeError::Listen { addr, source });
                }
                Err(_) => {
                    return Err(ServeError::Runtime(std::io::Error::other(
                        "a worker thread died while starting",
                    )))
                }
            }
            threads.push(thread);
        }
        let watcher = if watch_files {
            Some(watch::watch_config(gateway.clone()).map_err(ServeError::Watch)?)
        } else {
            None
        };
        let mut admin_stop = stop_rx.clone();
        let admin = tokio::spawn(async move {
            axum::serve(admin_listener, admin::router(gateway))
                .with_graceful_shutdown(async move {
                    let _ = admin_stop.changed().await;
                })
                .await
        });
        Ok(Server {
            proxy_addr: bound,
            admin_addr,
            stop_tx,
            threads,
            admin,
            _watcher: watcher,
        })
    }

    /// Serves until `stop` completes, then stops accepting and waits for in-flight requests.
    pub async fn run_until(
        self,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), ServeError> {
        stop.await;
        let _ = self.stop_tx.send(true);
        let admin = self.admin.await;
        for thread in self.threads {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        tracing::info!("gateway stopped");
        match admin {
            Ok(result) => result.map_err(ServeError::Admin),
            Err(join) => Err(ServeError::Admin(std::io::Error::other(join))),
        }
    }
}

/// One proxy worker: a single-threaded runtime serving its own `SO_REUSEPORT` listener until `stop`.
fn worker(
    index: usize,
    addr: SocketAddr,
    gateway: Arc<Gateway>,
    ready: std::sync::mpsc::Sender<std::io::Result<SocketAddr>>,
    stop: signal_watch::Receiver<bool>,
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
        accept_loop(index, listener, gateway, stop).await;
    });
}

async fn accept_loop(
    index: usize,
    listener: tokio::net::TcpListener,
    gateway: Arc<Gateway>,
    mut stop: signal_watch::Receiver<bool>,
) {
    let capacity = gateway.settings.limits.max_connections_per_worker.max(1);
    let slots = Arc::new(Semaphore::new(capacity));
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            _ = stop.changed() => break,
        };
        let Ok(slot) = slot else { break };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.changed() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let gateway = gateway.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    connection::serve(gateway, stream, peer, stop).await;
                    drop(slot);
                });
            }
            Err(error) => {
                // Out of file descriptors (or another transient failure): wait instead of spinning.
                tracing::warn!(worker = index, %error, "accept failed; retrying in 100 ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    drop(listener);
    // Graceful stop: wait until every connection of this worker has finished.
    let _ = slots.acquire_many(capacity as u32).await;
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
