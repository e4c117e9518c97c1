//! Sending a signed Invoke request to Lambda and reading its answer.
//!
//! [`Upstream`] is the seam: the gateway uses [`HttpUpstream`] (pooled HTTP/1.1 and HTTP/2 over TLS verified
//! against the system roots, one pool per worker thread); in-process tests put a scripted fake in its place.
//! Every call is bounded by the route's timeout, and Lambda's answer by [`MAX_RESPONSE_BYTES`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::model::LambdaReply;

/// Lambda's own response limit is 6 MB; anything far larger is not Lambda.
pub const MAX_RESPONSE_BYTES: usize = 7 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("could not reach the Lambda endpoint: {0}")]
    Unreachable(String),
    #[error("Lambda did not answer within {0:?}")]
    Timeout(Duration),
    #[error("could not read Lambda's response: {0}")]
    Read(String),
}

pub type UpstreamFuture<'a> =
    Pin<Box<dyn Future<Output = Result<LambdaReply, UpstreamError>> + Send + 'a>>;

/// Where signed Invoke requests go.
pub trait Upstream: Send + Sync + std::fmt::Debug + 'static {
    /// Sends `request` and reads the answer, all within `timeout`.
    fn call(&self, request: Request<Full<Bytes>>, timeout: Duration) -> UpstreamFuture<'_>;
}

pub type SharedUpstream = Arc<dyn Upstream>;

/// The TLS settings for Lambda endpoints: the system's root certificates (verification on), aws-lc-rs.
pub fn tls_config() -> Result<rustls::ClientConfig, UpstreamError> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        tracing::warn!("no system CA certificates found (install ca-certificates): https Lambda endpoints will fail TLS verification");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| UpstreamError::Unreachable(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A pooled client (HTTP/1.1, HTTP/2 over ALPN for https).
fn client(tls: rustls::ClientConfig) -> HttpsClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(256)
        .build(https)
}

thread_local! {
    static THREAD_CLIENT: std::cell::OnceCell<HttpsClient> = const { std::cell::OnceCell::new() };
}

/// The real Lambda client. Each worker thread runs its own single-threaded runtime and gets its own pool, so
/// pooled connections (and their tasks) stay on the thread that uses them.
#[derive(Debug, Clone)]
pub struct HttpUpstream {
    tls: rustls::ClientConfig,
}

impl HttpUpstream {
    pub fn new() -> Result<HttpUpstream, UpstreamError> {
        Ok(HttpUpstream { tls: tls_config()? })
    }

    fn thread_client(&self) -> HttpsClient {
        THREAD_CLIENT.with(|cell| cell.get_or_init(|| client(self.tls.clone())).clone())
    }
}

impl Upstream for HttpUpstream {
    fn call(&self, request: Request<Full<Bytes>>, timeout: Duration) -> UpstreamFuture<'_> {
        let client = self.thread_client();
        Box::pin(async move { send(&client, request, timeout).await })
    }
}

fn header_string(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .map(str::to_string)
}

/// The error and its sources on one line (for the log only: it may name the endpoint).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Reads the parts of Lambda's answer the response mapping needs.
pub fn lambda_reply(parts: &http::response::Parts, body: Bytes) -> LambdaReply {
    LambdaReply {
        status: parts.status.as_u16(),
        function_error: header_string(&parts.headers, "x-amz-function-error"),
        error_type: header_string(&parts.headers, "x-amzn-errortype"),
        retry_after: header_string(&parts.headers, "retry-after"),
        request_id: header_string(&parts.headers, "x-amzn-requestid"),
        executed_version: header_string(&parts.headers, "x-amz-executed-version"),
        body,
    }
}

async fn send(
    client: &HttpsClient,
    request: Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<LambdaReply, UpstreamError> {
    let call = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| UpstreamError::Unreachable(error_chain(&e)))?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| UpstreamError::Read(e.to_string()))?
            .to_bytes();
        Ok(lambda_reply(&parts, body))
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result,
        Err(_) => Err(UpstreamError::Timeout(timeout)),
    }
}
