//! From Lambda's Invoke response (or a failure to get one) to the client's HTTP response. Pure.
//!
//! Error mapping (Lambda Invoke errors: https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html), every gateway-made error is JSON
//! `{"error": "<Code>", "message": "..."}`:
//!
//! | Lambda / gateway outcome                                  | client                                  |
//! |-----------------------------------------------------------|-----------------------------------------|
//! | 200, no `X-Amz-Function-Error`                            | per response mode (passthrough: 200)    |
//! | 200 + `X-Amz-Function-Error`                              | 502, the function's error JSON (no stack trace); 504 if it timed out |
//! | 202 (Async) / 204                                         | 202 / 204, empty body                   |
//! | 429 `TooManyRequestsException`                            | 429 + `Retry-After` (Lambda's, else 1)  |
//! | 404 `ResourceNotFoundException`                           | 502 `FunctionNotFound`                  |
//! | 403 `AccessDeniedException`                               | 502 `AccessDenied`                      |
//! | 403 signature / unknown key / expired token               | 502 `CredentialsRejected`               |
//! | 409 `ResourceConflictException`, 502 `ResourceNotReady…`  | 503 + `Retry-After: 1`                  |
//! | 413 `RequestTooLargeException`                            | 413                                     |
//! | 400 `InvalidRequestContentException`                      | 400                                     |
//! | other 4xx/5xx                                             | 502 `LambdaError`                       |
//!
//! `X-Amz-Log-Result` is never forwarded; only `x-amzn-requestid` and `x-amz-executed-version` are.
//!
//! Client-visible messages say what happened and what to check, never internals: Lambda's own error messages
//! (which name roles, accounts and ARNs) and the function's identity go into [`ClientReply::with_detail`], which
//! only the request's log line shows.
//!
//! A function's output never controls the client connection: in the unwrapping modes, hop-by-hop and framing
//! headers it returns (`content-length`, `transfer-encoding`, `connection`, `keep-alive`, `upgrade`, `te`,
//! `trailer`, `proxy-*`) are dropped, header names/values that are not valid HTTP are dropped (and reported in
//! [`Unwrapped::dropped`]), a status outside 200–599 is a 502 `MalformedLambdaResponse` (a 1xx cannot be a
//! final response), and 204/304 answers carry no body.

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Map, Value};

use crate::model::filters::is_hop_by_hop_or_framing;
use crate::model::{ClientReply, FunctionRef, InvocationMode, LambdaReply, Outcome, ResponseMode};

/// Lambda's error message from a JSON error body (`message` or `Message`), if any.
fn upstream_message(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .or_else(|| v.get("Message"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned())
}

/// The error code: `x-amzn-errortype` (before any `:`), else `__type`/`Type`/`code` in the body.
fn error_code(reply: &LambdaReply) -> String {
    if let Some(t) = &reply.error_type {
        return t.split(':').next().unwrap_or(t).to_string();
    }
    serde_json::from_slice::<Value>(&reply.body)
        .ok()
        .and_then(|v| {
            ["__type", "code", "Code"].iter().find_map(|k| {
                v.get(*k)
                    .and_then(Value::as_str)
                    .map(|s| s.rsplit('#').next().unwrap_or(s).to_string())
            })
        })
        .unwrap_or_default()
}

/// Whether a 403 means our credentials themselves were rejected (vs. a policy decision): the caller should
/// refresh them.
pub fn is_credential_rejection(code: &str) -> bool {
    matches!(
        code,
        "InvalidSignatureException"
            | "SignatureDoesNotMatch"
            | "UnrecognizedClientException"
            | "InvalidClientTokenId"
            | "ExpiredTokenException"
            | "ExpiredToken"
            | "IncompleteSignatureException"
    )
}

/// Maps Lambda's answer to the client's response.
pub fn map_reply(
    reply: &LambdaReply,
    function: FunctionRef<'_>,
    mode: ResponseMode,
    invocation: InvocationMode,
) -> ClientReply {
    let mut mapped = map_status(reply, function, mode, invocation);
    if let Some(id) = &reply.request_id {
        mapped.headers.push(("x-amzn-requestid".into(), id.clone()));
    }
    if let Some(v) = &reply.executed_version {
        mapped
            .headers
            .push(("x-amz-executed-version".into(), v.clone()));
    }
    mapped
}

fn map_status(
    reply: &LambdaReply,
    function: FunctionRef<'_>,
    mode: ResponseMode,
    invocation: InvocationMode,
) -> ClientReply {
    match reply.status {
        200 if reply.function_error.is_some() => function_error(reply, function),
        200 if invocation == InvocationMode::Async => empty(202),
        200 => unwrap(reply, mode, function),
        202 => empty(202),
        204 => empty(204),
        _ => lambda_error(reply, function),
    }
}

fn ok(status: u16, headers: Vec<(String, String)>, body: Bytes) -> ClientReply {
    ClientReply {
        status,
        headers,
        body,
        outcome: Outcome::Ok,
        error: None,
    }
}

fn empty(status: u16) -> ClientReply {
    ok(status, vec![], Bytes::new())
}

fn function_error(reply: &LambdaReply, function: FunctionRef<'_>) -> ClientReply {
    let kind = reply.function_error.clone().unwrap_or_default();
    let parsed = serde_json::from_slice::<Value>(&reply.body).ok();
    let mut error = match parsed {
        Some(Value::Object(map)) => map,
        _ => {
            let mut map = Map::new();
            map.insert(
                "errorMessage".into(),
                Value::String(String::from_utf8_lossy(&reply.body).into_owned()),
            );
            map
        }
    };
    // Stack traces are the function's internals; clients get the message and type only.
    error.remove("stackTrace");
    error.remove("trace");
    let message = error
        .get("errorMessage")
        .and_then(Value::as_str)
        .unwrap_or("");
    let error_type = error.get("errorType").and_then(Value::as_str).unwrap_or("");
    let timed_out = message.contains("Task timed out")
        || error_type.contains("Timeout")
        || error_type == "Sandbox.Timedout";
    let (status, outcome) = if timed_out {
        (504, Outcome::FunctionTimeout)
    } else {
        (502, Outcome::FunctionError)
    };
    tracing::debug!(function = %function, kind = %kind, "function error");
    ClientReply {
        status,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("x-amz-function-error".into(), kind),
        ],
        body: Bytes::from(serde_json::to_vec(&Value::Object(error)).expect("JSON serializes")),
        outcome,
        error: None,
    }
}

fn lambda_error(reply: &LambdaReply, function: FunctionRef<'_>) -> ClientReply {
    let code = error_code(reply);
    let said = upstream_message(&reply.body);
    let detail = format!(
        "Lambda answered HTTP {} {code} for {function}: {said}",
        reply.status
    );
    match (reply.status, code.as_str()) {
        (429, _) | (_, "TooManyRequestsException") => {
            let reason = serde_json::from_slice::<Value>(&reply.body)
                .ok()
                .and_then(|v| v.get("Reason").and_then(Value::as_str).map(str::to_string))
                .filter(|r| !r.is_empty() && r.len() <= 128 && r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
                .unwrap_or_else(|| "Throttled".into());
            let retry_after = reply
                .retry_after
                .clone()
                .filter(|v| !v.is_empty() && v.len() <= 32 && v.bytes().all(|b| b.is_ascii_digit()))
                .unwrap_or_else(|| "1".into());
            ClientReply::error(429, Outcome::Throttled, "Throttled", format!("Lambda throttled the route's function ({reason}); retry later"))
                .with_header("retry-after", retry_after)
                .with_header("x-podcred-lambda-reason", reason)
                .with_detail(detail)
        }
        (404, _) | (_, "ResourceNotFoundException") => ClientReply::error(
            502,
            Outcome::FunctionNotFound,
            "FunctionNotFound",
            "the route's Lambda function (or its qualifier) does not exist: check the Backend's functionName, qualifier and region",
        )
        .with_detail(detail),
        (_, code) if is_credential_rejection(code) => ClientReply::error(
            502,
            Outcome::CredentialsRejected,
            "CredentialsRejected",
            "Lambda rejected the gateway's credentials; the gateway refreshes them — check its credential source if this persists",
        )
        .with_detail(detail),
        (403, _) | (_, "AccessDeniedException") => ClientReply::error(
            502,
            Outcome::AccessDenied,
            "AccessDenied",
            "the gateway's role is not allowed to invoke the route's function (it needs lambda:InvokeFunction)",
        )
        .with_detail(detail),
        (409, _) | (_, "ResourceNotReadyException") | (_, "ResourceConflictException") => ClientReply::error(
            503,
            Outcome::NotReady,
            "FunctionNotReady",
            "the route's Lambda function is being created or updated; retry shortly",
        )
        .with_header("retry-after", "1")
        .with_detail(detail),
        (413, _) => ClientReply::error(413, Outcome::TooLarge, "PayloadTooLarge", "Lambda refused the payload as too large").with_detail(detail),
        (400, "InvalidRequestContentException") => {
            ClientReply::error(400, Outcome::BadRequest, "InvalidRequestContent", "Lambda could not parse the event").with_detail(detail)
        }
        (status, _) => ClientReply::error(
            502,
            Outcome::LambdaError,
            "LambdaError",
            format!("Lambda answered HTTP {status}"),
        )
        .with_detail(detail),
    }
}

fn malformed(detail: impl std::fmt::Display, function: FunctionRef<'_>) -> ClientReply {
    ClientReply::error(
        502,
        Outcome::MalformedResponse,
        "MalformedLambdaResponse",
        "the function's response does not fit the route's response mode",
    )
    .with_detail(format!("{function}: {detail}"))
}

fn unwrap(reply: &LambdaReply, mode: ResponseMode, function: FunctionRef<'_>) -> ClientReply {
    let unwrapped = match mode {
        ResponseMode::Passthrough => {
            return ok(
                200,
                vec![("content-type".into(), "application/json".into())],
                reply.body.clone(),
            )
        }
        ResponseMode::Envoy => unwrap_envoy(&reply.body),
        ResponseMode::ApiGatewayV1 => unwrap_api_gateway(&reply.body, false),
        ResponseMode::ApiGatewayV2 => unwrap_api_gateway(&reply.body, true),
    };
    match unwrapped {
        Ok(unwrapped) => {
            if !unwrapped.dropped.is_empty() {
                tracing::warn!(function = %function, dropped = ?unwrapped.dropped, "dropped headers the function returned that a gateway must not forward");
            }
            let body = if matches!(unwrapped.status, 204 | 304) {
                Bytes::new()
            } else {
                unwrapped.body
            };
            ok(unwrapped.status, unwrapped.headers, body)
        }
        Err(problem) => malformed(problem, function),
    }
}

/// A response the function shaped itself (Envoy / API Gateway modes), with its headers made safe to forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unwrapped {
    pub status: u16,
    /// Lower-case names, valid values; no hop-by-hop or framing header.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// Headers the function returned that were not forwarded: `name (why)`.
    pub dropped: Vec<String>,
}

impl Unwrapped {
    /// The function's response with only the headers a client may receive from it.
    fn sanitized(status: u16, headers: Vec<(String, String)>, body: Bytes) -> Unwrapped {
        let mut dropped = Vec::new();
        let headers = sanitize(headers, &mut dropped);
        Unwrapped {
            status,
            headers,
            body,
            dropped,
        }
    }
}

/// Keeps the headers a client may receive from a function; reports the others.
fn sanitize(headers: Vec<(String, String)>, dropped: &mut Vec<String>) -> Vec<(String, String)> {
    headers
        .into_iter()
        .filter(|(name, value)| {
            let why = if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                "not a valid header name"
            } else if http::HeaderValue::from_str(value).is_err() {
                "value is not a valid header value"
            } else if is_hop_by_hop_or_framing(name) {
                "hop-by-hop or framing header"
            } else {
                return true;
            };
            dropped.push(format!("{} ({why})", name.escape_debug()));
            false
        })
        .collect()
}

fn status_code(value: Option<&Value>) -> Result<Option<u16>, String> {
    // A final response status: 1xx are interim answers and cannot end a request.
    let final_status = |n: u64| u16::try_from(n).ok().filter(|n| (200..=599).contains(n));
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.as_u64() == Some(0) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(final_status)
            .map(Some)
            .ok_or_else(|| format!("statusCode {n} is not an HTTP status from 200 to 599")),
        Some(Value::String(s)) => s
            .parse::<u64>()
            .ok()
            .and_then(final_status)
            .map(Some)
            .ok_or_else(|| {
                format!(
                    "statusCode {:?} is not an HTTP status from 200 to 599",
                    s.chars().take(32).collect::<String>()
                )
            }),
        Some(_) => Err("statusCode is not a number".to_string()),
    }
}

fn header_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn decode_body(body: Option<&Value>, base64_flag: bool) -> Result<Bytes, String> {
    let text = match body {
        None | Some(Value::Null) => return Ok(Bytes::new()),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    if base64_flag {
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map(Bytes::from)
            .map_err(|e| format!("isBase64Encoded is true but body is not base64: {e}"))
    } else {
        Ok(Bytes::from(text))
    }
}

fn set_header(headers: &mut Vec<(String, String)>, name: &str, value: String) {
    let lower = name.to_ascii_lowercase();
    headers.retain(|(n, _)| n != &lower);
    headers.push((lower, value));
}

/// Envoy's unwrapping: protobuf JSON accepts `status_code` or `statusCode` (etc.); unknown fields ignored.
pub fn unwrap_envoy(body: &[u8]) -> Result<Unwrapped, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON ({e})"))?;
    let obj = value.as_object().ok_or("not a JSON object")?;
    let field = |a: &str, b: &str| obj.get(a).or_else(|| obj.get(b));
    let status = status_code(field("status_code", "statusCode"))?.unwrap_or(200);
    let is_base64 = field("is_base64_encoded", "isBase64Encoded")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    if let Some(Value::Object(map)) = obj.get("headers") {
        for (k, v) in map {
            set_header(&mut headers, k, header_text(v));
        }
    }
    if let Some(Value::Array(cookies)) = obj.get("cookies") {
        headers.extend(
            cookies
                .iter()
                .map(|c| ("set-cookie".to_string(), header_text(c))),
        );
    }
    let body = decode_body(field("body", "body"), is_base64)?;
    Ok(Unwrapped::sanitized(status, headers, body))
}

/// API Gateway payload 1.0 / 2.0 response rules.
pub fn unwrap_api_gateway(body: &[u8], v2: bool) -> Result<Unwrapped, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON ({e})"))?;
    let structured = value.as_object().filter(|o| o.contains_key("statusCode"));
    let Some(obj) = structured else {
        if v2 {
            // 2.0 inference: valid JSON without statusCode is the body of a 200 application/json response.
            return Ok(Unwrapped {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body: Bytes::copy_from_slice(body),
                dropped: vec![],
            });
        }
        return Err("payload format 1.0 requires statusCode".into());
    };
    let status = status_code(obj.get("statusCode"))?.unwrap_or(200);
    let mut headers: Vec<(String, String)> = Vec::new();
    match obj.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (k, v) in map {
                set_header(&mut headers, k, header_text(v));
            }
        }
        Some(_) => return Err("headers must be an object".into()),
    }
    if !v2 {
        match obj.get("multiValueHeaders") {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (k, v) in map {
                    let Value::Array(values) = v else {
                        return Err(format!(
                            "multiValueHeaders.{} must be a list",
                            k.escape_debug()
                        ));
                    };
                    // Multi-value entries replace a same-named single-value header.
                    let lower = k.to_ascii_lowercase();
                    headers.retain(|(n, _)| n != &lower);
                    headers.extend(values.iter().map(|item| (lower.clone(), header_text(item))));
                }
            }
            Some(_) => return Err("multiValueHeaders must be an object".into()),
        }
    }
    if v2 {
        match obj.get("cookies") {
            None | Some(Value::Null) => {}
            Some(Value::Array(cookies)) => headers.extend(
                cookies
                    .iter()
                    .map(|c| ("set-cookie".to_string(), header_text(c))),
            ),
            Some(_) => return Err("cookies must be a list".into()),
        }
    }
    let is_base64 = match obj.get("isBase64Encoded") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("isBase64Encoded must be a boolean".into()),
    };
    let body = decode_body(obj.get("body"), is_base64)?;
    Ok(Unwrapped::sanitized(status, headers, body))
}

#[cfg(test)]
mod tests;
