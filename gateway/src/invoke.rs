//! The Lambda Invoke request: built from scratch (no client header reaches it) and signed with SigV4.
//! Sending it is [`crate::upstream`]'s job.

use std::sync::LazyLock;
use std::time::SystemTime;

use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http::{HeaderValue, Method, Request};
use http_body_util::Full;

use crate::credentials::Held;
use crate::model::Backend;

#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("could not sign the request: {0}")]
    Sign(String),
}

/// aws-sigv4's default settings without the excluded-header list. That list only filters the headers handed to
/// the signer, and the gateway hands it exactly `host`, `x-amz-invocation-type` and `content-type` (none of them
/// excluded), so the canonical request is the same; building the settings once and cloning them with no list
/// saves the per-request `Vec` that `SigningSettings::default()` allocates.
fn signing_settings() -> SigningSettings {
    static SETTINGS: LazyLock<SigningSettings> = LazyLock::new(|| {
        let mut settings = SigningSettings::default();
        settings.excluded_headers = None;
        settings
    });
    SETTINGS.clone()
}

/// The signed Invoke request for `backend` carrying `event`. The canonical request and the signature come from
/// `aws-sigv4` (service `lambda`, the Backend's region, the session token signed when present).
pub fn signed_request(
    backend: &Backend,
    event: Bytes,
    credentials: &Held,
    now: SystemTime,
) -> Result<Request<Full<Bytes>>, InvokeError> {
    let invocation_type = backend.invocation.header_value();
    let params = v4::SigningParams::builder()
        .identity(&credentials.identity)
        .region(&backend.region)
        .name("lambda")
        .time(now)
        .settings(signing_settings())
        .build()
        .map_err(|e| InvokeError::Sign(e.to_string()))?
        .into();
    let signed_headers = [
        ("host", backend.endpoint.authority.as_str()),
        ("x-amz-invocation-type", invocation_type),
        ("content-type", "application/json"),
    ];
    let signable = SignableRequest::new(
        "POST",
        backend.invoke_uri.as_str(),
        signed_headers.into_iter(),
        SignableBody::Bytes(&event),
    )
    .map_err(|e| InvokeError::Sign(e.to_string()))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| InvokeError::Sign(e.to_string()))?
        .into_parts();
    let (signature_headers, _query) = instructions.into_parts();

    let mut request = Request::builder()
        .method(Method::POST)
        .uri(backend.invoke_uri_parsed.clone())
        .header(http::header::HOST, backend.endpoint.authority.as_str())
        .header("x-amz-invocation-type", invocation_type)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(event))
        .map_err(|e| InvokeError::Sign(e.to_string()))?;
    let headers = request.headers_mut();
    // Applied here rather than with `apply_to_request_http1x`, which panics on a value that is not a valid
    // header (a malformed session token); this maps it to an error instead. The signature and the token are
    // marked sensitive (redacted in Debug, never HPACK-indexed on HTTP/2); aws-sigv4 only marks the token.
    for header in signature_headers {
        let mut value = header_value(header.value())?;
        value.set_sensitive(
            header.sensitive() || matches!(header.name(), "authorization" | "x-amz-security-token"),
        );
        headers.insert(header.name(), value);
    }
    Ok(request)
}

fn header_value(value: &str) -> Result<HeaderValue, InvokeError> {
    HeaderValue::from_str(value).map_err(|_| {
        InvokeError::Sign("credentials contain characters not allowed in a header".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{compile, LoadOptions};
    use aws_credential_types::Credentials;
    use std::time::Duration;

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
