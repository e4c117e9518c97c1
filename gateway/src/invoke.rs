//! The Lambda Invoke call: build the request from scratch (no client header reaches it), sign it with SigV4,
//! send it over a pooled hyper client (TLS verified against the system roots), read the answer.

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http::{HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::config::Backend;
use crate::credentials::Held;
use crate::response::LambdaReply;

/// Lambda's own response limit is 6 MB; anything far larger is not Lambda.
const MAX_RESPONSE_BYTES: usize = 7 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("could not sign the request: {0}")]
    Sign(String),
    #[error("could not reach the Lambda endpoint: {0}")]
    Unreachable(String),
    #[error("Lambda did not answer within {0:?}")]
    Timeout(Duration),
    #[error("could not read Lambda's response: {0}")]
    Read(String),
}

pub type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The TLS settings for Lambda endpoints: the system's root certificates (verification on), aws-lc-rs.
pub fn tls_config() -> Result<rustls::ClientConfig, InvokeError> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        tracing::warn!("no system CA certificates found (install ca-certificates): https Lambda endpoints will fail TLS verification");
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| InvokeError::Unreachable(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A pooled client (HTTP/1.1, HTTP/2 over ALPN for https).
pub fn client(tls: rustls::ClientConfig) -> HttpsClient {
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

/// This thread's client. Each worker thread runs its own single-threaded runtime, so its pooled connections
/// (and their tasks) stay on the thread that uses them: no cross-thread wake-ups on the hot path.
pub fn thread_client(tls: &rustls::ClientConfig) -> HttpsClient {
    THREAD_CLIENT.with(|cell| cell.get_or_init(|| client(tls.clone())).clone())
}

/// The signed Invoke request for `backend` carrying `event`.
pub fn signed_request(
    backend: &Backend,
    event: Bytes,
    credentials: &Held,
    now: SystemTime,
) -> Result<Request<Full<Bytes>>, InvokeError> {
    let uri = &backend.invoke_uri;
    let invocation_type = backend.invocation.header_value();
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(backend.invoke_uri_parsed.clone())
        .header(http::header::HOST, backend.endpoint.authority.as_str())
        .header("x-amz-invocation-type", invocation_type)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(event.clone()))
        .map_err(|e| InvokeError::Sign(e.to_string()))?;
    let path = backend.invoke_uri_parsed.path();
    let query = backend.invoke_uri_parsed.query().unwrap_or("");
    if crate::sigv4::is_canonical(path, query) {
        let signed = crate::sigv4::sign(
            &crate::sigv4::Signable {
                path,
                query,
                host: &backend.endpoint.authority,
                invocation_type,
                content_type: "application/json",
                body: &event,
                region: &backend.region,
            },
            credentials.credentials.access_key_id(),
            credentials.credentials.secret_access_key(),
            credentials.credentials.session_token(),
            now,
        );
        let headers = request.headers_mut();
        headers.insert("x-amz-date", header_value(signed.amz_date)?);
        if let Some(token) = credentials.credentials.session_token() {
            let mut value = header_value(token.to_string())?;
            value.set_sensitive(true);
            headers.insert("x-amz-security-token", value);
        }
        let mut authorization = header_value(signed.authorization)?;
        authorization.set_sensitive(true);
        headers.insert(http::header::AUTHORIZATION, authorization);
        return Ok(request);
    }
    let params = v4::SigningParams::builder()
        .identity(&credentials.identity)
        .region(&backend.region)
        .name("lambda")
        .time(now)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| InvokeError::Sign(e.to_string()))?
        .into();
    let headers = [
        ("host", backend.endpoint.authority.as_str()),
        ("x-amz-invocation-type", invocation_type),
        ("content-type", "application/json"),
    ];
    let signable = SignableRequest::new(
        "POST",
        uri.as_str(),
        headers.into_iter(),
        SignableBody::Bytes(&event),
    )
    .map_err(|e| InvokeError::Sign(e.to_string()))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| InvokeError::Sign(e.to_string()))?
        .into_parts();
    instructions.apply_to_request_http1x(&mut request);
    Ok(request)
}

fn header_value(value: String) -> Result<HeaderValue, InvokeError> {
    HeaderValue::try_from(value).map_err(|_| {
        InvokeError::Sign("credentials contain characters not allowed in a header".into())
    })
}

fn header_string(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .map(str::to_string)
}

/// Sends the signed request and reads Lambda's answer, bounded by `timeout` in total.
pub async fn send(
    client: &HttpsClient,
    request: Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<LambdaReply, InvokeError> {
    let call = async {
        let response = client.request(request).await.map_err(|e| {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            InvokeError::Unreachable(text)
        })?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| InvokeError::Read(e.to_string()))?
            .to_bytes();
        Ok(LambdaReply {
            status: parts.status.as_u16(),
            function_error: header_string(&parts.headers, "x-amz-function-error"),
            error_type: header_string(&parts.headers, "x-amzn-errortype"),
            retry_after: header_string(&parts.headers, "retry-after"),
            request_id: header_string(&parts.headers, "x-amzn-requestid"),
            executed_version: header_string(&parts.headers, "x-amz-executed-version"),
            body,
        })
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result,
        Err(_) => Err(InvokeError::Timeout(timeout)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{compile, LoadOptions};
    use aws_credential_types::Credentials;

    const BACKEND: &str = r#"
apiVersion: gateway.kgateway.dev/v1alpha1
kind: Backend
metadata: {name: lambda, namespace: ns}
spec:
  type: AWS
  aws:
    region: eu-west-1
    lambda: {functionName: echo, qualifier: live}
"#;

    #[test]
    fn signed_request_has_only_gateway_headers_and_a_sigv4_authorization() {
        let config = compile(&[("b.yaml", BACKEND)], &LoadOptions::default()).expect("compiles");
        let backend = &config.backends[0];
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_000_000);
        let held = Held::new(
            Credentials::new(
                "ASIAEXAMPLEKEY",
                "secret",
                Some("session-token".into()),
                None,
                "test",
            ),
            now,
        );
        let request =
            signed_request(backend, Bytes::from_static(b"{}"), &held, now).expect("signs");
        assert_eq!(
            request.uri().to_string(),
            "https://lambda.eu-west-1.amazonaws.com/2015-03-31/functions/echo/invocations?Qualifier=live"
        );
        let auth = request.headers()["authorization"].to_str().expect("ascii");
        assert!(
            auth.starts_with(
                "AWS4-HMAC-SHA256 Credential=ASIAEXAMPLEKEY/20251124/eu-west-1/lambda/aws4_request"
            ),
            "{auth}"
        );
        assert!(auth.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-invocation-type;x-amz-security-token"), "{auth}");
        assert_eq!(request.headers()["x-amz-security-token"], "session-token");
        assert_eq!(
            request.headers()["x-amz-invocation-type"],
            "RequestResponse"
        );
        let names: Vec<_> = request.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), 6, "{names:?}");
    }
}
