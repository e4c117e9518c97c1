//! From Lambda's Invoke response (or a failure to get one) to the client's HTTP response. Pure.
//!
//! Error mapping (reference/lambda-gateway.md §5.7 and §9), every gateway-made error is JSON
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

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Map, Value};

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
    let mapped = map_status(reply, function, mode, invocation);
    let mut mapped = mapped;
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
        200 if invocation == InvocationMode::Async => empty(202, Outcome::Ok),
        200 => unwrap(reply, mode),
        202 => empty(202, Outcome::Ok),
        204 => empty(204, Outcome::Ok),
        _ => lambda_error(reply, function),
    }
}

fn empty(status: u16, outcome: Outcome) -> ClientReply {
    ClientReply {
        status,
        headers: vec![],
        body: Bytes::new(),
        outcome,
    }
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
    }
}

fn lambda_error(reply: &LambdaReply, function: FunctionRef<'_>) -> ClientReply {
    let code = error_code(reply);
    let detail = upstream_message(&reply.body);
    match (reply.status, code.as_str()) {
        (429, _) | (_, "TooManyRequestsException") => {
            let reason = serde_json::from_slice::<Value>(&reply.body)
                .ok()
                .and_then(|v| v.get("Reason").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_else(|| "Throttled".into());
            let retry_after = reply.retry_after.clone().filter(|v| !v.is_empty()).unwrap_or_else(|| "1".into());
            ClientReply::error(429, Outcome::Throttled, "Throttled", format!("Lambda throttled the invocation of {function} ({reason}); retry later"))
                .with_header("retry-after", retry_after)
                .with_header("x-podcred-lambda-reason", reason)
        }
        (404, _) | (_, "ResourceNotFoundException") => ClientReply::error(
            502,
            Outcome::FunctionNotFound,
            "FunctionNotFound",
            format!("the Lambda function {function} does not exist (or the qualifier is unknown): check the Backend's functionName, qualifier and region. Lambda said: {detail}"),
        ),
        (_, code) if is_credential_rejection(code) => ClientReply::error(
            502,
            Outcome::CredentialsRejected,
            "CredentialsRejected",
            format!("Lambda rejected the gateway's credentials ({code}) when invoking {function}; the gateway refreshes them, check its credential source if this persists"),
        ),
        (403, _) | (_, "AccessDeniedException") => ClientReply::error(
            502,
            Outcome::AccessDenied,
            "AccessDenied",
            format!("the gateway's role is not allowed to invoke {function} (it needs lambda:InvokeFunction). Lambda said: {detail}"),
        ),
        (409, _) | (_, "ResourceNotReadyException") | (_, "ResourceConflictException") => ClientReply::error(
            503,
            Outcome::NotReady,
            "FunctionNotReady",
            format!("the Lambda function {function} is being created or updated; retry shortly. Lambda said: {detail}"),
        )
        .with_header("retry-after", "1"),
        (413, _) => ClientReply::error(413, Outcome::TooLarge, "PayloadTooLarge", format!("Lambda refused the payload as too large: {detail}")),
        (400, "InvalidRequestContentException") => {
            ClientReply::error(400, Outcome::BadRequest, "InvalidRequestContent", format!("Lambda could not parse the event: {detail}"))
        }
        (status, code) => ClientReply::error(
            502,
            Outcome::LambdaError,
            "LambdaError",
            format!("Lambda answered HTTP {status} {code} when invoking {function}: {detail}"),
        ),
    }
}

fn malformed(detail: impl std::fmt::Display) -> ClientReply {
    ClientReply::error(
        502,
        Outcome::MalformedResponse,
        "MalformedLambdaResponse",
        format!("the function's response does not fit the route's response mode: {detail}"),
    )
}

fn unwrap(reply: &LambdaReply, mode: ResponseMode) -> ClientReply {
    match mode {
        ResponseMode::Passthrough => ClientReply {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: reply.body.clone(),
            outcome: Outcome::Ok,
        },
        ResponseMode::Envoy => unwrap_envoy(&reply.body),
        ResponseMode::ApiGatewayV1 => unwrap_api_gateway(&reply.body, false),
        ResponseMode::ApiGatewayV2 => unwrap_api_gateway(&reply.body, true),
    }
}

fn status_code(value: Option<&Value>) -> Result<Option<u16>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .filter(|n| (100..=599).contains(n) || *n == 0)
            .map(|n| (n != 0).then_some(n))
            .ok_or_else(|| format!("statusCode {n} is not an HTTP status")),
        Some(Value::String(s)) => s
            .parse::<u16>()
            .ok()
            .filter(|n| (100..=599).contains(n))
            .map(Some)
            .ok_or_else(|| format!("statusCode {s:?} is not an HTTP status")),
        Some(other) => Err(format!("statusCode is {other}, not a number")),
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
fn unwrap_envoy(body: &[u8]) -> ClientReply {
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return malformed(format!("not JSON ({e})")),
    };
    let Some(obj) = value.as_object() else {
        return malformed("not a JSON object");
    };
    let field = |a: &str, b: &str| obj.get(a).or_else(|| obj.get(b));
    let status = match status_code(field("status_code", "statusCode")) {
        Ok(s) => s.unwrap_or(200),
        Err(e) => return malformed(e),
    };
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
    match decode_body(obj.get("body"), is_base64) {
        Ok(body) => ClientReply {
            status,
            headers,
            body,
            outcome: Outcome::Ok,
        },
        Err(e) => malformed(e),
    }
}

/// API Gateway payload 1.0 / 2.0 response rules.
fn unwrap_api_gateway(body: &[u8], v2: bool) -> ClientReply {
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return malformed(format!("not JSON ({e})")),
    };
    let structured = value.as_object().filter(|o| o.contains_key("statusCode"));
    let Some(obj) = structured else {
        if v2 {
            // 2.0 inference: valid JSON without statusCode is the body of a 200 application/json response.
            return ClientReply {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body: Bytes::copy_from_slice(body),
                outcome: Outcome::Ok,
            };
        }
        return malformed("payload format 1.0 requires statusCode");
    };
    let status = match status_code(obj.get("statusCode")) {
        Ok(Some(s)) => s,
        Ok(None) => 200,
        Err(e) => return malformed(e),
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    match obj.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (k, v) in map {
                set_header(&mut headers, k, header_text(v));
            }
        }
        Some(_) => return malformed("headers must be an object"),
    }
    if !v2 {
        match obj.get("multiValueHeaders") {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (k, v) in map {
                    let Value::Array(values) = v else {
                        return malformed(format!("multiValueHeaders.{k} must be a list"));
                    };
                    // Multi-value entries replace a same-named single-value header.
                    let lower = k.to_ascii_lowercase();
                    headers.retain(|(n, _)| n != &lower);
                    headers.extend(values.iter().map(|item| (lower.clone(), header_text(item))));
                }
            }
            Some(_) => return malformed("multiValueHeaders must be an object"),
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
            Some(_) => return malformed("cookies must be a list"),
        }
    }
    let is_base64 = match obj.get("isBase64Encoded") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return malformed("isBase64Encoded must be a boolean"),
    };
    match decode_body(obj.get("body"), is_base64) {
        Ok(body) => ClientReply {
            status,
            headers,
            body,
            outcome: Outcome::Ok,
        },
        Err(e) => malformed(e),
    }
}

#[cfg(test)]
mod tests;
