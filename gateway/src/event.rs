//! Building the Lambda event from an HTTP request. Pure: time, request id and source address are inputs.
//!
//! - `Raw`: the body is the event (it must be JSON: Lambda answers 400 otherwise, so we check first).
//! - `Envoy`: Envoy `aws_lambda` filter's envelope (`raw_path`, `method`, `headers`, `query_string_parameters`,
//!   `body`, `is_base64_encoded`), with Envoy's text/base64 rule.
//! - `ApiGatewayV1` / `ApiGatewayV2`: API Gateway proxy payload formats 1.0 and 2.0 (field names as AWS sends them).

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::model::RequestEvent;

/// Hop-by-hop headers never appear in an event.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
];

/// The parts of an HTTP request an event is built from.
#[derive(Debug, Clone)]
pub struct EventInput<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub raw_query: Option<&'a str>,
    /// In arrival order; names as received.
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
    pub source_ip: &'a str,
    pub request_id: &'a str,
    pub now: OffsetDateTime,
    /// The matched route's path value (API Gateway's `resource`).
    pub route_path: &'a str,
    pub protocol: &'a str,
    pub account_id: Option<&'a str>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error("the request body is not JSON, and the route passes it to Lambda as the event, which must be JSON: {0}")]
    BodyNotJson(String),
}

pub fn build(mode: RequestEvent, input: &EventInput<'_>) -> Result<Bytes, EventError> {
    match mode {
        RequestEvent::Raw => raw(input),
        RequestEvent::Envoy => Ok(to_bytes(&envoy(input))),
        RequestEvent::ApiGatewayV1 => Ok(to_bytes(&api_gateway_v1(input))),
        RequestEvent::ApiGatewayV2 => Ok(to_bytes(&api_gateway_v2(input))),
    }
}

fn to_bytes(value: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("JSON values serialize"))
}

fn raw(input: &EventInput<'_>) -> Result<Bytes, EventError> {
    if input.body.iter().all(u8::is_ascii_whitespace) {
        // Lambda treats an empty payload as `{}`; send exactly that so every runtime agrees.
        return Ok(Bytes::from_static(b"{}"));
    }
    // JSON is UTF-8 (RFC 8259 §8.1). Checked first: `IgnoredAny` skips string contents without validating
    // them, so `{"k":"\xbd"}` would pass and Lambda would refuse it (found by the gateway_event fuzz target).
    let text = std::str::from_utf8(input.body)
        .map_err(|e| EventError::BodyNotJson(format!("the body is not UTF-8: {e}")))?;
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map_err(|e| EventError::BodyNotJson(e.to_string()))?;
    Ok(Bytes::copy_from_slice(input.body))
}

fn header<'a>(input: &EventInput<'a>, name: &str) -> Option<&'a str> {
    input
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
}

fn event_headers<'a>(input: &'a EventInput<'a>) -> impl Iterator<Item = (String, &'a str)> + 'a {
    input
        .headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), *v))
        .filter(|(n, _)| !HOP_BY_HOP.contains(&n.as_str()))
}

/// Envoy keeps a body as text only for these exact content types (no parameters) or `text/*`.
fn envoy_is_text(content_type: Option<&str>) -> bool {
    match content_type {
        Some(ct) => {
            ct.starts_with("text/")
                || matches!(
                    ct,
                    "application/json" | "application/javascript" | "application/xml"
                )
        }
        None => false,
    }
}

/// API Gateway passes text media types as text, the rest base64-encoded.
fn api_gateway_is_text(content_type: Option<&str>, body: &[u8]) -> bool {
    if body.is_empty() {
        return true;
    }
    let Some(ct) = content_type else {
        return std::str::from_utf8(body).is_ok();
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let texty = essence.starts_with("text/")
        || essence.ends_with("+json")
        || essence.ends_with("+xml")
        || matches!(
            essence.as_str(),
            "application/json"
                | "application/javascript"
                | "application/xml"
                | "application/x-www-form-urlencoded"
        );
    texty && std::str::from_utf8(body).is_ok()
}

fn body_field(body: &[u8], as_text: bool) -> (Value, bool) {
    if as_text {
        (
            Value::String(String::from_utf8_lossy(body).into_owned()),
            false,
        )
    } else {
        (
            Value::String(base64::engine::general_purpose::STANDARD.encode(body)),
            true,
        )
    }
}

fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    crate::routing::parse_query(raw)
}

fn envoy(input: &EventInput<'_>) -> Value {
    let mut headers = Map::new();
    for (name, value) in event_headers(input) {
        match headers.get_mut(&name) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(value);
            }
            _ => {
                headers.insert(name, Value::String(value.to_string()));
            }
        }
    }
    let mut query = Map::new();
    for (k, v) in query_pairs(input.raw_query) {
        // The Envoy code keeps the first value of a repeated parameter.
        query.entry(k).or_insert(Value::String(v));
    }
    let raw_path = match input.raw_query {
        Some(q) => format!("{}?{q}", input.path),
        None => input.path.to_string(),
    };
    let (body, is_base64) = body_field(input.body, envoy_is_text(header(input, "content-type")));
    json!({
        "raw_path": raw_path,
        "method": input.method,
        "headers": headers,
        "query_string_parameters": query,
        "body": body,
        "is_base64_encoded": is_base64,
    })
}

fn request_time(now: OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
    );
    now.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_default()
}

fn epoch_millis(now: OffsetDateTime) -> i64 {
    i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or_default()
}

fn domain(input: &EventInput<'_>) -> (String, String) {
    let host = header(input, "host").unwrap_or("localhost");
    let domain = host.split(':').next().unwrap_or(host).to_string();
    let prefix = domain.split('.').next().unwrap_or("").to_string();
    (domain, prefix)
}

fn api_gateway_v1(input: &EventInput<'_>) -> Value {
    let mut headers = Map::new();
    let mut multi_headers: Map<String, Value> = Map::new();
    for (name, value) in input
        .headers
        .iter()
        .filter(|(n, _)| !HOP_BY_HOP.contains(&n.to_ascii_lowercase().as_str()))
    {
        // Payload 1.0 keeps header names as sent; the last value wins in `headers`.
        headers.insert(name.to_string(), Value::String(value.to_string()));
        match multi_headers.get_mut(*name) {
            Some(Value::Array(values)) => values.push(Value::String(value.to_string())),
            _ => {
                multi_headers.insert(name.to_string(), json!([value]));
            }
        }
    }
    let pairs = query_pairs(input.raw_query);
    let (query, multi_query) = if pairs.is_empty() {
        (Value::Null, Value::Null)
    } else {
        let mut single = Map::new();
        let mut multi: Map<String, Value> = Map::new();
        for (k, v) in pairs {
            single.insert(k.clone(), Value::String(v.clone()));
            match multi.get_mut(&k) {
                Some(Value::Array(values)) => values.push(Value::String(v)),
                _ => {
                    multi.insert(k, json!([v]));
                }
            }
        }
        (Value::Object(single), Value::Object(multi))
    };
    let as_text = api_gateway_is_text(header(input, "content-type"), input.body);
    let (body, is_base64) = if input.body.is_empty() {
        (Value::Null, false)
    } else {
        body_field(input.body, as_text)
    };
    let (domain_name, domain_prefix) = domain(input);
    json!({
        "version": "1.0",
        "resource": input.route_path,
        "path": input.path,
        "httpMethod": input.method,
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query,
        "requestContext": {
            "accountId": input.account_id.unwrap_or("anonymous"),
            "apiId": "podcred",
            "domainName": domain_name,
            "domainPrefix": domain_prefix,
            "extendedRequestId": input.request_id,
            "httpMethod": input.method,
            "identity": {
                "accessKey": null, "accountId": null, "caller": null, "cognitoAuthenticationProvider": null,
                "cognitoAuthenticationType": null, "cognitoIdentityId": null, "cognitoIdentityPoolId": null,
                "principalOrgId": null, "sourceIp": input.source_ip, "user": null,
                "userAgent": header(input, "user-agent"), "userArn": null,
            },
            "path": input.path,
            "protocol": input.protocol,
            "requestId": input.request_id,
            "requestTime": request_time(input.now),
            "requestTimeEpoch": epoch_millis(input.now),
            "resourceId": input.route_path,
            "resourcePath": input.route_path,
            "stage": "$default",
        },
        "pathParameters": null,
        "stageVariables": null,
        "body": body,
        "isBase64Encoded": is_base64,
    })
}

fn api_gateway_v2(input: &EventInput<'_>) -> Value {
    let mut headers = Map::new();
    let mut cookies = Vec::new();
    for (name, value) in event_headers(input) {
        if name == "cookie" {
            cookies.extend(
                value
                    .split(';')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(|c| Value::String(c.into())),
            );
            continue;
        }
        match headers.get_mut(&name) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(value);
            }
            _ => {
                headers.insert(name, Value::String(value.to_string()));
            }
        }
    }
    let mut query = Map::new();
    for (k, v) in query_pairs(input.raw_query) {
        match query.get_mut(&k) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&v);
            }
            _ => {
                query.insert(k, Value::String(v));
            }
        }
    }
    let (domain_name, domain_prefix) = domain(input);
    let mut event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": input.path,
        "rawQueryString": input.raw_query.unwrap_or(""),
        "headers": headers,
        "requestContext": {
            "accountId": input.account_id.unwrap_or("anonymous"),
            "apiId": "podcred",
            "domainName": domain_name,
            "domainPrefix": domain_prefix,
            "http": {
                "method": input.method,
                "path": input.path,
                "protocol": input.protocol,
                "sourceIp": input.source_ip,
                "userAgent": header(input, "user-agent").unwrap_or(""),
            },
            "requestId": input.request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": request_time(input.now),
            "timeEpoch": epoch_millis(input.now),
        },
        "isBase64Encoded": false,
    });
    let object = event.as_object_mut().expect("literal object");
    if !cookies.is_empty() {
        object.insert("cookies".into(), Value::Array(cookies));
    }
    if !query.is_empty() {
        object.insert("queryStringParameters".into(), Value::Object(query));
    }
    if !input.body.is_empty() {
        let (body, is_base64) = body_field(
            input.body,
            api_gateway_is_text(header(input, "content-type"), input.body),
        );
        object.insert("body".into(), body);
        object.insert("isBase64Encoded".into(), Value::Bool(is_base64));
    }
    event
}

#[cfg(test)]
mod tests;
