use super::*;
use serde_json::json;

fn input<'a>(
    headers: &'a [(&'a str, &'a str)],
    body: &'a [u8],
    query: Option<&'a str>,
) -> EventInput<'a> {
    EventInput {
        method: "POST",
        path: "/echo/x",
        raw_query: query,
        headers,
        body,
        source_ip: "10.1.2.3",
        request_id: "req-1",
        now: time::macros::datetime!(2026-11-25 13:07:03.25 UTC),
        route_path: "/echo",
        protocol: "HTTP/1.1",
        account_id: None,
    }
}

fn build_json(mode: RequestEvent, input: &EventInput<'_>) -> Value {
    serde_json::from_slice(&build(mode, input).expect("builds")).expect("JSON")
}

#[test]
fn raw_passes_the_json_body_through_byte_for_byte() {
    let body = br#"{"key1":"value1", "key2":"value2"}"#;
    let out = build(RequestEvent::Raw, &input(&[], body, None)).expect("JSON body");
    assert_eq!(&out[..], &body[..]);
    assert_eq!(
        &build(RequestEvent::Raw, &input(&[], b"", None)).unwrap()[..],
        b"{}"
    );
    assert!(matches!(
        build(RequestEvent::Raw, &input(&[], b"key=value", None)),
        Err(EventError::BodyNotJson(_))
    ));
    // Well-formed JSON syntax around a string that is not UTF-8 is not JSON.
    assert!(matches!(
        build(
            RequestEvent::Raw,
            &input(&[], b"{\"key1\":\"\xbdalu1\"}", None)
        ),
        Err(EventError::BodyNotJson(_))
    ));
}

/// curl -d sends application/x-www-form-urlencoded: Envoy base64-encodes it (only exact JSON/JS/XML/text stay text).
#[test]
fn envoy_envelope_matches_envoys_field_names_and_text_rule() {
    let headers = [
        ("Host", "localhost:8080"),
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("X-Multi", "a"),
        ("x-multi", "b"),
        ("Connection", "keep-alive"),
    ];
    let event = build_json(
        RequestEvent::Envoy,
        &input(&headers, br#"{"k":"v"}"#, Some("a=1&a=2&b=x%20y")),
    );
    assert_eq!(
        event,
        json!({
            "raw_path": "/echo/x?a=1&a=2&b=x%20y",
            "method": "POST",
            "headers": {"host": "localhost:8080", "content-type": "application/x-www-form-urlencoded", "x-multi": "a,b"},
            "query_string_parameters": {"a": "1", "b": "x y"},
            "body": "eyJrIjoidiJ9",
            "is_base64_encoded": true,
        })
    );
    let text_cases = [
        ("application/json", false),
        ("text/plain; charset=utf-8", false),
        ("application/json; charset=utf-8", true),
        ("image/png", true),
    ];
    for (ct, b64) in text_cases {
        let headers = [("content-type", ct)];
        let event = build_json(RequestEvent::Envoy, &input(&headers, b"{}", None));
        assert_eq!(event["is_base64_encoded"], json!(b64), "{ct}");
    }
}

#[test]
fn api_gateway_v1_event_has_the_payload_1_0_shape() {
    let headers = [
        ("Host", "api.example.com"),
        ("User-Agent", "curl/8"),
        ("Content-Type", "application/json"),
        ("X-Multi", "a"),
        ("X-Multi", "b"),
    ];
    let event = build_json(
        RequestEvent::ApiGatewayV1,
        &input(&headers, br#"{"k":"v"}"#, Some("a=1&a=2")),
    );
    assert_eq!(event["version"], "1.0");
    assert_eq!(event["resource"], "/echo");
    assert_eq!(event["path"], "/echo/x");
    assert_eq!(event["httpMethod"], "POST");
    assert_eq!(event["headers"]["X-Multi"], "b");
    assert_eq!(event["multiValueHeaders"]["X-Multi"], json!(["a", "b"]));
    assert_eq!(event["queryStringParameters"], json!({"a": "2"}));
    assert_eq!(
        event["multiValueQueryStringParameters"],
        json!({"a": ["1", "2"]})
    );
    assert_eq!(event["body"], r#"{"k":"v"}"#);
    assert_eq!(event["isBase64Encoded"], false);
    assert_eq!(event["requestContext"]["identity"]["sourceIp"], "10.1.2.3");
    assert_eq!(event["requestContext"]["identity"]["userAgent"], "curl/8");
    assert_eq!(event["requestContext"]["domainName"], "api.example.com");
    assert_eq!(event["requestContext"]["domainPrefix"], "api");
    assert_eq!(
        event["requestContext"]["requestTime"],
        "25/Nov/2026:13:07:03 +0000"
    );
    assert_eq!(
        event["requestContext"]["requestTimeEpoch"],
        1_795_612_023_250i64
    );
    assert_eq!(event["pathParameters"], Value::Null);
    // No body, no query: nulls, as API Gateway sends them.
    let bare = build_json(RequestEvent::ApiGatewayV1, &input(&[], b"", None));
    assert_eq!(
        (bare["body"].clone(), bare["queryStringParameters"].clone()),
        (Value::Null, Value::Null)
    );
}

#[test]
fn api_gateway_v2_event_joins_duplicates_and_splits_cookies() {
    let headers = [
        ("Host", "x.example.com:8080"),
        ("Cookie", "a=1; b=2"),
        ("X-Multi", "a"),
        ("x-multi", "b"),
        ("content-type", "application/octet-stream"),
    ];
    let event = build_json(
        RequestEvent::ApiGatewayV2,
        &input(&headers, &[0, 159, 146, 150], Some("q=1&q=2&r=")),
    );
    assert_eq!(event["version"], "2.0");
    assert_eq!(event["routeKey"], "$default");
    assert_eq!(event["rawPath"], "/echo/x");
    assert_eq!(event["rawQueryString"], "q=1&q=2&r=");
    assert_eq!(event["cookies"], json!(["a=1", "b=2"]));
    assert_eq!(event["headers"]["x-multi"], "a,b");
    assert!(event["headers"].get("cookie").is_none());
    assert_eq!(event["queryStringParameters"], json!({"q": "1,2", "r": ""}));
    assert_eq!(event["body"], "AJ+Slg==");
    assert_eq!(event["isBase64Encoded"], true);
    assert_eq!(
        event["requestContext"]["http"],
        json!({"method": "POST", "path": "/echo/x", "protocol": "HTTP/1.1", "sourceIp": "10.1.2.3", "userAgent": ""})
    );
    assert_eq!(
        event["requestContext"]["time"],
        "25/Nov/2026:13:07:03 +0000"
    );
    assert_eq!(event["requestContext"]["domainName"], "x.example.com");
    let bare = build_json(RequestEvent::ApiGatewayV2, &input(&[], b"", None));
    assert!(
        bare.get("body").is_none()
            && bare.get("cookies").is_none()
            && bare.get("queryStringParameters").is_none()
    );
}
