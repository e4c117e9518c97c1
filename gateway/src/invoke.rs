//! The Lambda Invoke request: built from scratch (no client header reaches it) and signed with SigV4
//! ([`crate::signing`]). Sending it is [`crate::upstream`]'s job.

use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderValue, Method, Request};
use http_body_util::Full;

use crate::credentials::Held;
use crate::model::Backend;
use crate::signing;

#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("could not sign the request: {0}")]
    Sign(String),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{compile, LoadOptions};
    use aws_credential_types::Credentials;
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    use aws_sigv4::sign::v4;
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
        let held = Held::new(Credentials::new(
            "ASIAEXAMPLEKEY",
            "secret",
            Some("session-token".into()),
            None,
            "test",
        ));
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
                let held = Held::new(credentials.clone());
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
            let held = Held::new(credentials.clone());
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
        let held = Held::new(Credentials::new(
            "ASIAEXAMPLEKEY",
            "secret",
            Some("tok\nen-SECRET".into()),
            None,
            "test",
        ));
        let err = signed_request(&config.backends[0], Bytes::from_static(b"{}"), &held, now)
            .expect_err("a newline cannot be sent in a header");
        assert!(matches!(err, InvokeError::Sign(_)), "{err:?}");
        assert!(!err.to_string().contains("SECRET"), "{err}");
    }
}
