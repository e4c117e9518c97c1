//! One client connection: HTTP/1.1 served by hyper, with the time limits a proxy facing untrusted clients needs.
//!
//! Contract (each limit is a flag, see [`crate::state::ClientLimits`]):
//! - **Header read timeout**: from the first byte of a request to the end of its headers. A client that sends
//!   half a request line or half its headers is disconnected.
//! - **Body read timeout**: enforced by the pipeline (408, then the connection closes).
//! - **Idle timeout**: a connection with no request in flight that makes no progress (no bytes read or written —
//!   this also covers a client that stops reading its response) is closed.
//! - **Header size**: larger request heads get hyper's 431.
//! - **Lingering close**: when a body is refused unread (413, 408), the reply says `connection: close`, the write
//!   side is shut down after it, and what the client still sends is read and discarded (for at most
//!   `linger` between reads and 30 s overall, like nginx's `lingering_timeout`/`lingering_time`), so the client
//!   reads the reply instead of a connection reset.
//! - **No request can take a worker down**: a panic in the pipeline is caught, answered with a 500 JSON error,
//!   counted in `gateway_panics_total` and logged.
//! - **Graceful stop**: on shutdown, idle connections close at once; a request in flight finishes and its
//!   reply carries `connection: close`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt as _;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::metrics::ClosedLabels;
use crate::model::{ClientReply, Outcome};
use crate::pipeline;
use crate::state::{ClientLimits, Gateway};

/// The most time spent discarding a refused body after the reply (nginx's `lingering_time`).
const LINGER_TOTAL: Duration = Duration::from_secs(30);

/// What the connection has been doing, shared by the socket wrapper, the service and the driver.
#[derive(Debug)]
struct Activity {
    opened: Instant,
    /// Milliseconds since `opened` of the last byte read or written.
    last_progress_ms: AtomicU64,
    /// Milliseconds since `opened` of the first byte of a request whose head is not complete yet (0 = none).
    head_started_ms: AtomicU64,
    /// Requests handed to the pipeline and not answered yet.
    in_flight: AtomicU32,
    /// The last reply refused a body unread: discard what the client still sends before closing.
    linger: AtomicBool,
    stopping: AtomicBool,
    /// Wakes the driver when a request head starts, so the header deadline replaces the (longer) idle one.
    head_started: tokio::sync::Notify,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            opened: Instant::now(),
            last_progress_ms: AtomicU64::new(0),
            head_started_ms: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            linger: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            head_started: tokio::sync::Notify::new(),
        }
    }

    /// Never 0, so 0 can mean "unset".
    fn now_ms(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64 + 1
    }

    fn at(&self, ms: u64) -> Instant {
        self.opened + Duration::from_millis(ms.saturating_sub(1))
    }

    fn on_read(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        let now = self.now_ms();
        self.last_progress_ms.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Relaxed) == 0 {
            // Bytes of a new request: its head must be complete within the header timeout.
            let started = self
                .head_started_ms
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
            if started {
                self.head_started.notify_one();
            }
        }
    }

    fn on_write(&self, bytes: usize) {
        if bytes > 0 {
            self.last_progress_ms
                .store(self.now_ms(), Ordering::Relaxed);
        }
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_started_ms.store(0, Ordering::Relaxed);
    }

    fn request_finished(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.last_progress_ms
            .store(self.now_ms(), Ordering::Relaxed);
    }

    fn idle(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_started_ms.load(Ordering::Relaxed) == 0
    }

    /// When the connection must be closed unless something happens first, and why.
    fn deadline(&self, limits: &ClientLimits) -> (Instant, &'static str) {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            // The pipeline bounds a request in flight (body read timeout, route timeout); look again later.
            return (Instant::now() + limits.idle_timeout, "");
        }
        match self.head_started_ms.load(Ordering::Relaxed) {
            0 => (
                self.at(self.last_progress_ms.load(Ordering::Relaxed)) + limits.idle_timeout,
                "idle_timeout",
            ),
            started => (
                self.at(started) + limits.header_read_timeout,
                "header_read_timeout",
            ),
        }
    }
}

/// The client socket, reporting progress to [`Activity`].
struct TrackedIo {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for TrackedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            self.activity.on_read(buf.filled().len() - before);
        }
        result
    }
}

impl AsyncWrite for TrackedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = result {
            self.activity.on_write(n);
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = result {
            self.activity.on_write(n);
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The hyper service: runs the pipeline behind a panic guard.
#[derive(Clone)]
struct ProxyService {
    gateway: Arc<Gateway>,
    peer: SocketAddr,
    activity: Arc<Activity>,
}

impl hyper::service::Service<http::Request<Incoming>> for ProxyService {
    type Response = http::Response<Full<Bytes>>;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn call(&self, request: http::Request<Incoming>) -> Self::Future {
        let this = self.clone();
        this.activity.request_started();
        Box::pin(async move {
            let served =
                std::panic::AssertUnwindSafe(pipeline::serve(&this.gateway, request, this.peer))
                    .catch_unwind()
                    .await;
            let (reply, close) = match served {
                Ok(served) => (served.reply, served.close_connection),
                Err(panic) => (panicked(&this.gateway, panic.as_ref()), false),
            };
            if close {
                this.activity.linger.store(true, Ordering::Relaxed);
            }
            let close = close || this.activity.stopping.load(Ordering::Relaxed);
            this.activity.request_finished();
            Ok(into_response(reply, close))
        })
    }
}

fn panicked(gateway: &Gateway, panic: &(dyn std::any::Any + Send)) -> ClientReply {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into());
    gateway.metrics.panics.inc();
    tracing::error!(panic = %message, "BUG: the request pipeline panicked; answered 500");
    ClientReply::error(
        500,
        Outcome::Internal,
        "InternalError",
        "the gateway failed while handling this request",
    )
}

/// The client's HTTP response. Header names/values were validated where they were made; any that still is not
/// valid HTTP is dropped rather than sent.
pub fn into_response(reply: ClientReply, close: bool) -> http::Response<Full<Bytes>> {
    let mut response = http::Response::new(Full::new(reply.body));
    *response.status_mut() =
        http::StatusCode::from_u16(reply.status).unwrap_or(http::StatusCode::BAD_GATEWAY);
    let headers = response.headers_mut();
    for (name, value) in reply.headers {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::try_from(name.as_str()),
            http::HeaderValue::try_from(value.as_str()),
        ) {
            headers.append(name, value);
        }
    }
    if close {
        headers.insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    response
}

/// Serves one client connection until it closes, times out, or `stop` fires and it is idle.
pub async fn serve(
    gateway: Arc<Gateway>,
    stream: TcpStream,
    peer: SocketAddr,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let limits = gateway.settings.limits;
    let activity = Arc::new(Activity::new());
    let io = TrackedIo {
        inner: stream,
        activity: activity.clone(),
    };
    let service = ProxyService {
        gateway: gateway.clone(),
        peer,
        activity: activity.clone(),
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .max_header_size(limits.max_header_bytes)
        // The header timeout is ours (counted from the first byte, not from the end of the last response).
        .header_read_timeout(None)
        .keep_alive(true)
        // One buffer per response instead of a writev of head + body: fewer, larger TCP segments on loopback.
        .writev(false);
    let connection = builder
        .serve_connection(TokioIo::new(io), service)
        .without_shutdown();
    let mut connection = std::pin::pin!(connection);
    let mut stopping = *stop.borrow();
    let (deadline, mut reason) = activity.deadline(&limits);
    let timer = tokio::time::sleep_until(deadline);
    let mut timer = std::pin::pin!(timer);
    loop {
        if stopping {
            activity.stopping.store(true, Ordering::Relaxed);
            if activity.idle() {
                return;
            }
        }
        tokio::select! {
            finished = &mut connection => {
                if let Ok(parts) = finished {
                    let mut stream = parts.io.into_inner().inner;
                    if activity.linger.load(Ordering::Relaxed) {
                        linger(&mut stream, limits.linger).await;
                    } else {
                        let _ = stream.shutdown().await;
                    }
                }
                return;
            }
            _ = &mut timer => {
                // Progress may have moved the deadline since it was set.
                let (current, reason_now) = activity.deadline(&limits);
                if !reason.is_empty() && reason == reason_now && current <= Instant::now() {
                    gateway.metrics.connections_closed.get_or_create(&ClosedLabels { reason }).inc();
                    tracing::debug!(%peer, reason, "closing client connection");
                    return;
                }
                reason = reason_now;
                timer.as_mut().reset(current);
            }
            _ = activity.head_started.notified() => {
                let (current, reason_now) = activity.deadline(&limits);
                reason = reason_now;
                timer.as_mut().reset(current);
            }
            changed = stop.changed(), if !stopping => {
                stopping = changed.is_err() || *stop.borrow();
            }
        }
    }
}

/// Shuts the write side (the client gets the reply and a FIN), then reads and discards what the client still
/// sends until it closes, stays silent for `quiet`, or [`LINGER_TOTAL`] has passed.
async fn linger(stream: &mut TcpStream, quiet: Duration) {
    let _ = stream.shutdown().await;
    let until = Instant::now() + LINGER_TOTAL;
    let mut sink = vec![0u8; 64 * 1024];
    loop {
        let wait = quiet.min(until.saturating_duration_since(Instant::now()));
        match tokio::time::timeout(wait, stream.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => continue,
            _ => return,
        }
    }
}
