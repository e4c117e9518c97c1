//! The Lambda Invoke call: build the request from scratch (no client header reaches it), sign it with SigV4
//! ([`crate::signing`]), send it over a pooled hyper client (TLS verified against the system roots), read the
//! answer.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::credentials::Held;
use crate::model::{Backend, LambdaReply};
use crate::signing;

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

/// The signed Invoke request for `backend` carrying `event`: service `lambda`, the Backend's region, the session
/// token signed when present. Signed by [`signing`] (this thread's signer and key cache), whose headers are
/// byte for byte those of aws-sigv4's `http_request::sign` with default settings (see that module).
pub fn signed_request(
    backend: &Backend,
    event: Bytes,
    credentials: &Held,
    now: SystemTime,
) -> Result<Request<Full<Bytes>>, InvokeError> {
    let invocation_type = backend.invocation.header_value();
    let uri = &backend.invoke_uri_parsed;
    let signable = signing::SignableInvoke {
        path: uri.path(),
        query: uri.query(),
        host: backend.endpoint.authority.as_str(),
        content_type: "application/json",
        invocation_type,
        body: &event,
        region: &backend.region,
        service: "lambda",
    };
    let signed = signing::sign(&signable, &credentials.credentials, now)
        .map_err(|e| InvokeError::Sign(e.to_string()))?;

    let mut request = Request::builder()
        .method(Method::POST)
        .uri(backend.invoke_uri_parsed.clone())
        .header(http::header::HOST, backend.endpoint.authority.as_str())
        .header("x-amz-invocation-type", invocation_type)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(event))
        .map_err(|e| InvokeError::Sign(e.to_string()))?;
    let headers = request.headers_mut();
    // The signature and the token are marked sensitive (redacted in Debug, never HPACK-indexed on HTTP/2); a
    // value that is not a valid header (a malformed session token) is an error, not a panic.
    let invalid =
        |_| InvokeError::Sign("credentials contain characters not allowed in a header".into());
    headers.insert(
        "x-amz-date",
        HeaderValue::try_from(signed.amz_date).map_err(invalid)?,
    );
    let mut authorization = HeaderValue::try_from(signed.authorization).map_err(invalid)?;
    authorization.set_sensitive(true);
    headers.insert(http::header::AUTHORIZATION, authorization);
    if let Some(token) = signed.session_token {
        let mut token = header_value(token)?;
        token.set_sensitive(true);
        headers.insert("x-amz-security-token", token);
    }
    Ok(request)
}

fn header_value(value: &str) -> Result<HeaderValue, InvokeError> {
    HeaderValue::from_str(value).map_err(|_| {
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
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    use aws_sigv4::sign::v4;

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

    fn backend_yaml(region: &str, lambda: &str) -> String {
        format!(
            "apiVersion: gateway.kgateway.dev/v1alpha1\nkind: Backend\nmetadata: {{name: lambda, namespace: ns}}\n\
             spec:\n  type: AWS\n  aws:\n    region: {region}\n    lambda: {lambda}\n"
        )
    }

    /// What `aws-sigv4` produces with its own default settings for the request the gateway sends.
    fn reference_headers(
        backend: &Backend,
        body: &[u8],
        credentials: &Credentials,
        now: SystemTime,
    ) -> std::collections::HashMap<String, String> {
        let identity = credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&backend.region)
            .name("lambda")
            .time(now)
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let headers = [
            ("host", backend.endpoint.authority.as_str()),
            ("x-amz-invocation-type", backend.invocation.header_value()),
            ("content-type", "application/json"),
        ];
        let signable = SignableRequest::new(
            "POST",
            backend.invoke_uri.as_str(),
            headers.into_iter(),
            SignableBody::Bytes(body),
        )
        .unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        instructions
            .headers()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The cached settings (no excluded-header list) sign exactly like aws-sigv4's defaults, across regions,
    /// qualifiers (including `$LATEST`, which needs encoding), custom endpoints with a path prefix, empty bodies and
    /// with/without a session token; and every signature header lands on the request.
    #[test]
    fn signatures_equal_aws_sigv4_with_default_settings() {
        let cases = [
            ("us-east-1", "{functionName: echo}", &br#"{"key1":"value1", "key2":"value2"}"#[..]),
            ("eu-west-1", "{functionName: echo, qualifier: $LATEST}", b"{}"),
            (
                "cn-north-1",
                "{functionName: my_fn-1, qualifier: live, endpointURL: \"http://127.0.0.1:3002/prefix\"}",
                b"",
            ),
        ];
        for (i, (region, lambda, body)) in cases.into_iter().enumerate() {
            let yaml = backend_yaml(region, lambda);
            let config = compile(&[("b.yaml", yaml.as_str())], &LoadOptions::default())
                .unwrap_or_else(|e| panic!("case {i}: {e:?}"));
            let backend = &config.backends[0];
            for token in [Some("FQoGZXIvYXdzEBYaD+token/=="), None] {
                let now =
                    SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_000_000 + i as u64 * 86_399);
                let credentials = Credentials::new(
                    "ASIAEXAMPLE",
                    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                    token.map(str::to_string),
                    None,
                    "test",
                );
                let held = Held::new(credentials.clone(), now);
                let request = signed_request(backend, Bytes::copy_from_slice(body), &held, now)
                    .expect("signs");
                let expected = reference_headers(backend, body, &credentials, now);
                assert_eq!(expected.len(), 2 + usize::from(token.is_some()), "case {i}");
                for (name, value) in &expected {
                    assert_eq!(
                        request.headers()[name.as_str()],
                        value.as_str(),
                        "case {i} {name}"
                    );
                }
                assert!(request.headers()["authorization"].is_sensitive());
                if token.is_some() {
                    assert!(request.headers()["x-amz-security-token"].is_sensitive());
                }
            }
        }
    }

    /// Through `signed_request` (the wiring: path, query, host, region as the request is sent) on random
    /// compiled Backends, the thread's signer reused across midnight UTC: every signature header equals
    /// aws-sigv4's. The signer itself is property-tested on 5,000 requests in `signing`.
    #[test]
    fn random_backends_sign_like_aws_sigv4_through_the_thread_signer() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        let pick = |rng: &mut rand::rngs::StdRng, items: &[&'static str]| {
            items[rng.random_range(0..items.len())]
        };
        let mut checked = 0;
        for case in 0..300 {
            let region = pick(
                &mut rng,
                &[
                    "us-east-1",
                    "eu-west-1",
                    "cn-north-1",
                    "us-gov-west-1",
                    "ap-south-2",
                ],
            );
            let name = pick(&mut rng, &["echo", "my_fn-1", "A9"]);
            let qualifier = pick(
                &mut rng,
                &[
                    "",
                    ", qualifier: $LATEST",
                    ", qualifier: \"7\"",
                    ", qualifier: live",
                ],
            );
            let base: String = (0..rng.random_range(0..8))
                .map(|_| {
                    pick(
                        &mut rng,
                        &["/", "a", ".", "..", "%20", "$", "(", "~", "é", "=", "@"],
                    )
                })
                .collect();
            let endpoint = match rng.random_range(0..3) {
                0 => String::new(),
                1 => format!(", endpointURL: \"http://127.0.0.1:3002/{base}\""),
                _ => format!(", endpointURL: \"https://lambda.example:443/{base}\""),
            };
            let invocation = pick(&mut rng, &["", ", invocationMode: Async"]);
            let yaml = backend_yaml(
                region,
                &format!("{{functionName: {name}{qualifier}{endpoint}{invocation}}}"),
            );
            let Ok(config) = compile(&[("b.yaml", yaml.as_str())], &LoadOptions::default()) else {
                continue;
            };
            let backend = &config.backends[0];
            let token = rng.random_bool(0.7).then(|| format!("FQoG+tok/{case}=="));
            let credentials = Credentials::new(
                pick(&mut rng, &["AKIDEXAMPLE", "ASIAOTHER"]),
                pick(&mut rng, &["secret", "secret2"]),
                token.clone(),
                None,
                "test",
            );
            let now = SystemTime::UNIX_EPOCH
                + Duration::from_secs(1_764_028_800 - 2 + rng.random_range(0..4));
            let body: Vec<u8> = (0..rng.random_range(0..300))
                .map(|_| rng.random())
                .collect();
            let held = Held::new(credentials.clone(), now);
            let request = signed_request(backend, Bytes::from(body.clone()), &held, now)
                .unwrap_or_else(|e| panic!("case {case}: {e}"));
            let expected = reference_headers(backend, &body, &credentials, now);
            assert_eq!(
                expected.len(),
                2 + usize::from(token.is_some()),
                "case {case}"
            );
            for (name, value) in &expected {
                assert_eq!(
                    request.headers()[name.as_str()],
                    value.as_str(),
                    "case {case} {name} {}",
                    backend.invoke_uri
                );
            }
            checked += 1;
        }
        assert!(checked > 250, "{checked}");
    }

    #[test]
    fn a_session_token_that_is_not_a_header_value_is_a_sign_error_that_does_not_leak_it() {
        let config = compile(&[("b.yaml", BACKEND)], &LoadOptions::default()).expect("compiles");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_000_000);
        let held = Held::new(
            Credentials::new(
                "ASIAEXAMPLEKEY",
                "secret",
                Some("tok\nen-SECRET".into()),
                None,
                "test",
            ),
            now,
        );
        let err = signed_request(&config.backends[0], Bytes::from_static(b"{}"), &held, now)
            .expect_err("a newline cannot be sent in a header");
        assert!(matches!(err, InvokeError::Sign(_)), "{err:?}");
        assert!(!err.to_string().contains("SECRET"), "{err}");
    }
}
