//! Gateway fuzz targets: the config compiler, request-event building and response mapping on arbitrary input.
//! Each panics when an invariant breaks (see the table in `lib.rs`).

use bytes::Bytes;
use gateway::config::{compile, LoadOptions};
use gateway::event::{self, EventInput};
use gateway::model::{FunctionRef, InvocationMode, LambdaReply, RequestEvent, ResponseMode};
use gateway::response;
use serde_json::Value;

/// Any YAML: the compiler answers with a configuration or with one-line problems, never panics, and compiling
/// the same text twice gives the same result.
pub fn gateway_config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let first = compile(&[("fuzz.yaml", &text)], &LoadOptions::default());
    let second = compile(&[("fuzz.yaml", &text)], &LoadOptions::default());
    match (first, second) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.routes.rules().len(), b.routes.rules().len());
            assert_eq!(a.backends.len(), b.backends.len());
            for backend in &a.backends {
                assert!(backend.arn.starts_with("arn:"), "{}", backend.arn);
                assert!(
                    backend.invoke_uri.contains("/2015-03-31/functions/"),
                    "{}",
                    backend.invoke_uri
                );
            }
            for line in a.warnings.iter().chain(&b.warnings) {
                assert!(!line.is_empty() && !line.contains('\n'), "{line:?}");
            }
        }
        (Err(a), Err(b)) => {
            assert!(!a.problems.is_empty(), "rejected without a problem");
            assert_eq!(a.problems, b.problems, "problems are deterministic");
            for line in &a.problems {
                assert!(!line.is_empty() && !line.contains('\n'), "{line:?}");
            }
        }
        _ => panic!("the same text compiled differently twice"),
    }
}

const REQUEST_EVENTS: [RequestEvent; 4] = [
    RequestEvent::Raw,
    RequestEvent::Envoy,
    RequestEvent::ApiGatewayV1,
    RequestEvent::ApiGatewayV2,
];

/// Selector byte (request mode) + an HTTP-ish request: `path[?query]` on the first line, `name: value` header
/// lines, a blank line, the body. Events in the envelope modes are JSON objects; a raw event is the body itself
/// (or `{}`), and only when the body is JSON.
pub fn gateway_event(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mode = REQUEST_EVENTS[usize::from(selector) % REQUEST_EVENTS.len()];
    let split = rest
        .windows(2)
        .position(|w| w == b"\n\n")
        .unwrap_or(rest.len());
    let head = String::from_utf8_lossy(&rest[..split]).into_owned();
    let body = rest.get(split + 2..).unwrap_or_default();
    let mut lines = head.lines();
    let target = lines.next().unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let headers: Vec<(&str, &str)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim(), v.trim()))
        .collect();
    let input = EventInput {
        method: "POST",
        path,
        raw_query: query,
        headers: &headers,
        body,
        source_ip: "10.0.0.1",
        request_id: "0123456789abcdef01234567",
        now: time::OffsetDateTime::UNIX_EPOCH,
        route_path: "/",
        protocol: "HTTP/1.1",
        account_id: Some("123456789012"),
    };
    match event::build(mode, &input) {
        Ok(event) => {
            let value: Value = serde_json::from_slice(&event)
                .unwrap_or_else(|e| panic!("{mode:?} event is not JSON ({e})"));
            if mode == RequestEvent::Raw {
                if body.iter().all(u8::is_ascii_whitespace) {
                    assert_eq!(&event[..], b"{}");
                } else {
                    assert_eq!(&event[..], body, "a raw event is the body itself");
                }
            } else {
                assert!(value.is_object(), "{mode:?} event is not an object");
            }
        }
        Err(_) => assert_eq!(mode, RequestEvent::Raw, "only raw events can be refused"),
    }
}

const RESPONSE_MODES: [ResponseMode; 4] = [
    ResponseMode::Passthrough,
    ResponseMode::Envoy,
    ResponseMode::ApiGatewayV1,
    ResponseMode::ApiGatewayV2,
];
const LAMBDA_STATUSES: [u16; 12] = [200, 200, 202, 204, 400, 403, 404, 409, 413, 429, 500, 503];

/// Selector byte (response mode, invocation, Lambda status, function error) + the function's output. The
/// client reply is always a valid HTTP response that the function cannot frame: a final status, valid header
/// names and values, no hop-by-hop or framing header, no body on 204/304, and gateway errors as JSON.
pub fn gateway_response(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let selector = usize::from(selector);
    let mode = RESPONSE_MODES[selector % 4];
    let invocation = if (selector / 4) % 2 == 0 {
        InvocationMode::Sync
    } else {
        InvocationMode::Async
    };
    let status = LAMBDA_STATUSES[(selector / 8) % LAMBDA_STATUSES.len()];
    let function_error = (status == 200 && selector >= 128).then(|| "Unhandled".to_string());
    let reply = LambdaReply {
        status,
        function_error,
        error_type: None,
        retry_after: Some("2".into()),
        request_id: Some("lambda-request".into()),
        executed_version: None,
        body: Bytes::copy_from_slice(body),
    };
    let function = FunctionRef {
        name: "fuzz",
        qualifier: None,
        region: "us-east-1",
    };
    let mapped = response::map_reply(&reply, function, mode, invocation);
    assert!(
        (200..=599).contains(&mapped.status),
        "status {}",
        mapped.status
    );
    for (name, value) in &mapped.headers {
        assert!(
            http::HeaderName::from_bytes(name.as_bytes()).is_ok(),
            "invalid header name {name:?}"
        );
        assert!(
            http::HeaderValue::from_str(value).is_ok(),
            "invalid value for {name}: {value:?}"
        );
        let lower = name.to_ascii_lowercase();
        assert!(
            !matches!(
                lower.as_str(),
                "content-length"
                    | "transfer-encoding"
                    | "connection"
                    | "keep-alive"
                    | "upgrade"
                    | "te"
                    | "trailer"
            ) && !lower.starts_with("proxy-"),
            "the function set the framing header {name}"
        );
    }
    if matches!(mapped.status, 204 | 304) {
        assert!(mapped.body.is_empty(), "a {} carries a body", mapped.status);
    }
    if mapped.error.is_some() {
        let error: Value = serde_json::from_slice(&mapped.body).expect("gateway errors are JSON");
        assert!(error["error"].is_string() && error["message"].is_string());
    }
}
