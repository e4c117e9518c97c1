//! The gateway against serverless-offline (a real Node.js Lambda runtime over the Invoke API): payload modes,
//! response unwrapping, error mapping, payload limits, timeouts and live reloads.
//!
//! One serverless-offline is shared by the tests of this file (its watchdog stops it when the binary exits);
//! each test runs its own gateway. serverless-offline does not check SigV4 — `gateway_sigv4.rs` covers
//! signing against the moto wrapper. Credentials here come from a Secret manifest (`auth.type: Secret`).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use integration::gateway::{backend_yaml, header, Gateway};
use integration::serverless::ServerlessOffline;
use serde_json::{json, Value};

fn sls() -> &'static ServerlessOffline {
    static SLS: OnceLock<ServerlessOffline> = OnceLock::new();
    SLS.get_or_init(ServerlessOffline::start)
}

fn route(path: &str, kind: &str, backend: &str, extra: &str) -> String {
    format!(
        r#"  - matches: [{{path: {{type: {kind}, value: "{path}"}}}}]
    backendRefs: [{{group: gateway.kgateway.dev, kind: Backend, name: {backend}}}]
{extra}"#
    )
}

/// The config used by most tests: one route per case.
fn config(endpoint: &str, throttle_endpoint: Option<&str>) -> String {
    let mut yaml = String::from(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: static-keys, namespace: test}\nstringData: {accessKey: AKIDSTATICEXAMPLE, secretKey: not-checked-by-serverless-offline}\n---\n",
    );
    yaml += "kind: Gateway\napiVersion: gateway.networking.k8s.io/v1\nmetadata: {name: http, namespace: test}\nspec:\n  gatewayClassName: podcred\n  listeners: [{protocol: HTTP, port: 8080, name: http}]\n---\n";
    yaml += &backend_yaml("echo", "echo", endpoint, "", "");
    yaml += &backend_yaml(
        "envoy",
        "event-echo",
        endpoint,
        ", payloadTransformMode: Envoy",
        "",
    );
    yaml += &backend_yaml(
        "v1-event",
        "event-echo",
        endpoint,
        ", payloadTransformMode: ApiGatewayV1",
        "gateway.podcred.dev/response-mode: passthrough",
    );
    yaml += &backend_yaml(
        "v2-event",
        "event-echo",
        endpoint,
        ", payloadTransformMode: ApiGatewayV2",
        "gateway.podcred.dev/response-mode: passthrough",
    );
    yaml += &backend_yaml(
        "apigw-v1",
        "apigw",
        endpoint,
        ", payloadTransformMode: ApiGatewayV1",
        "",
    );
    yaml += &backend_yaml(
        "apigw-v2",
        "apigw",
        endpoint,
        ", payloadTransformMode: ApiGatewayV2",
        "",
    );
    yaml += &backend_yaml("fail", "fail", endpoint, "", "");
    yaml += &backend_yaml("missing", "no-such-function", endpoint, "", "");
    yaml += &backend_yaml("async", "echo", endpoint, ", invocationMode: Async", "");
    yaml += &backend_yaml("slow", "slow", endpoint, "", "");
    if let Some(t) = throttle_endpoint {
        yaml += &backend_yaml("throttled", "echo", t, "", "");
    }
    yaml += "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: routes, namespace: test}\nspec:\n  parentRefs: [{name: http}]\n  rules:\n";
    yaml += &route("/echo", "PathPrefix", "echo", "");
    yaml += &route("/envoy", "PathPrefix", "envoy", "");
    yaml += &route("/v1-event", "PathPrefix", "v1-event", "");
    yaml += &route("/v2-event", "PathPrefix", "v2-event", "");
    yaml += &route("/apigw-v1", "Exact", "apigw-v1", "");
    yaml += &route("/apigw-v2", "Exact", "apigw-v2", "");
    yaml += &route("/fail", "Exact", "fail", "");
    yaml += &route("/missing", "Exact", "missing", "");
    yaml += &route("/async", "Exact", "async", "");
    yaml += &route("/slow", "Exact", "slow", "    timeouts: {request: 1s}\n");
    yaml += &route(
        "/slow-ok",
        "Exact",
        "slow",
        "    timeouts: {request: 10s}\n",
    );
    if throttle_endpoint.is_some() {
        yaml += &route("/throttled", "Exact", "throttled", "");
    }
    yaml
}

struct Setup {
    _dir: tempfile::TempDir,
    config_path: std::path::PathBuf,
    gateway: Gateway,
}

fn setup(throttle_endpoint: Option<&str>) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = dir.path().join("routes.yaml");
    std::fs::write(&config_path, config(&sls().endpoint(), throttle_endpoint))
        .expect("write config");
    let gateway = Gateway::start(&config_path, &[], &[]);
    gateway.wait_ready(Duration::from_secs(10));
    Setup {
        _dir: dir,
        config_path,
        gateway,
    }
}

async fn post(url: &str, content_type: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .header("content-type", content_type)
        .header("x-test", "round-trip")
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"))
}

#[tokio::test]
#[ignore = "needs peers: run make test"]
async fn passthrough_reproduces_the_seed_and_envelope_modes_round_trip_through_a_real_runtime() {
    let s = setup(None);
    let g = &s.gateway;

    // Passthrough (our default): the seed's documented output, byte for byte, from the real Node.js handler.
    let seed = post(
        &g.url("/echo"),
        "application/x-www-form-urlencoded",
        r#"{"key1":"value1", "key2":"value2"}"#,
    )
    .await;
    assert_eq!(seed.status(), 200);
    assert_eq!(
        seed.text().await.unwrap(),
        r#"{"statusCode":200,"body":"Response from AWS Lambda. Here's the request you just sent me: {\"key1\":\"value1\",\"key2\":\"value2\"}"}"#
    );

    // Envoy envelope + Envoy unwrapping: the function returns the envelope it got; Envoy's unwrapping then
    // turns its `body` (base64: curl's form content type) back into our bytes and its `headers` into ours.
    let envoy = post(
        &g.url("/envoy/sub?x=1&x=2"),
        "application/x-www-form-urlencoded",
        "a=b&c=d",
    )
    .await;
    assert_eq!(envoy.status(), 200);
    assert_eq!(header(&envoy, "x-test"), Some("round-trip"));
    assert_eq!(envoy.text().await.unwrap(), "a=b&c=d");

    // The events as a real runtime receives them (response passthrough via annotation).
    let v1: Value = post(
        &g.url("/v1-event/items?a=1&a=2"),
        "application/json",
        r#"{"k":"v"}"#,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v1["version"], "1.0");
    assert_eq!(v1["httpMethod"], "POST");
    assert_eq!(v1["path"], "/v1-event/items");
    assert_eq!(v1["resource"], "/v1-event");
    assert_eq!(
        v1["multiValueQueryStringParameters"],
        json!({"a": ["1", "2"]})
    );
    assert_eq!(v1["body"], r#"{"k":"v"}"#);
    assert_eq!(v1["isBase64Encoded"], false);
    assert_eq!(v1["requestContext"]["identity"]["sourceIp"], "127.0.0.1");

    let v2: Value = reqwest::Client::new()
        .post(g.url("/v2-event/items?a=1&a=2"))
        .header("cookie", "c1=x; c2=y")
        .header("content-type", "application/octet-stream")
        .body(vec![0u8, 255, 1])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v2["version"], "2.0");
    assert_eq!(v2["rawPath"], "/v2-event/items");
    assert_eq!(v2["rawQueryString"], "a=1&a=2");
    assert_eq!(v2["queryStringParameters"], json!({"a": "1,2"}));
    assert_eq!(v2["cookies"], json!(["c1=x", "c2=y"]));
    assert_eq!(v2["isBase64Encoded"], true);
    assert_eq!(v2["body"], "AP8B");
    assert_eq!(v2["requestContext"]["http"]["method"], "POST");
}

#[tokio::test]
#[ignore = "needs peers: run make test"]
async fn api_gateway_style_responses_are_unwrapped_with_v1_and_v2_rules() {
    let s = setup(None);
    let g = &s.gateway;

    let v1 = post(&g.url("/apigw-v1"), "application/json", "{}").await;
    assert_eq!(v1.status(), 201);
    assert_eq!(header(&v1, "content-type"), Some("text/plain"));
    assert_eq!(header(&v1, "x-custom"), Some("one"));
    let multi: Vec<_> = v1
        .headers()
        .get_all("x-multi")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert_eq!(multi, ["a", "b"]);
    assert!(
        v1.headers().get("set-cookie").is_none(),
        "payload 1.0 has no cookies field"
    );
    assert_eq!(v1.text().await.unwrap(), "method=POST");

    let v2 = post(&g.url("/apigw-v2"), "application/json", "{}").await;
    assert_eq!(v2.status(), 201);
    let cookies: Vec<_> = v2
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert_eq!(cookies, ["session=abc; Path=/", "theme=dark"]);
    assert!(
        v2.headers().get("x-multi").is_none(),
        "payload 2.0 has no multiValueHeaders"
    );
    assert_eq!(v2.text().await.unwrap(), "method=POST");

    // 2.0 inference: JSON without statusCode is the body of a 200 application/json response.
    let inferred = post(
        &g.url("/apigw-v2"),
        "application/json",
        r#"{"shape":"no-status"}"#,
    )
    .await;
    assert_eq!(inferred.status(), 200);
    assert_eq!(header(&inferred, "content-type"), Some("application/json"));
    assert_eq!(
        inferred.json::<Value>().await.unwrap(),
        json!({"message": "no statusCode here", "path": "/apigw-v2"})
    );
    let bare = post(
        &g.url("/apigw-v2"),
        "application/json",
        r#"{"shape":"bare-string"}"#,
    )
    .await;
    assert_eq!(bare.status(), 200);
    assert_eq!(bare.text().await.unwrap(), r#""just a string""#);

    let binary = post(
        &g.url("/apigw-v2"),
        "application/json",
        r#"{"shape":"binary"}"#,
    )
    .await;
    assert_eq!(binary.status(), 200);
    assert_eq!(
        header(&binary, "content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(
        binary.bytes().await.unwrap().as_ref(),
        [0u8, 1, 2, 253, 254, 255]
    );

    // 1.0 has no inference: a response without statusCode is malformed.
    let malformed = post(
        &g.url("/apigw-v1"),
        "application/json",
        r#"{"shape":"no-status"}"#,
    )
    .await;
    assert_eq!(malformed.status(), 502);
    assert_eq!(
        malformed.json::<Value>().await.unwrap()["error"],
        "MalformedLambdaResponse"
    );
}

/// A tiny Invoke endpoint that always throttles (the only fake in this file: serverless-offline cannot throttle).
async fn throttling_endpoint() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(|| async {
        (
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            [("x-amzn-errortype", "TooManyRequestsException"), ("retry-after", "3"), ("content-type", "application/json")],
            r#"{"Reason":"ConcurrentInvocationLimitExceeded","Type":"User","message":"Rate Exceeded."}"#,
        )
    });
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), task)
}

#[tokio::test]
#[ignore = "needs peers: run make test"]
async fn lambda_errors_are_mapped_per_the_documented_table() {
    let (throttle, _task) = throttling_endpoint().await;
    let s = setup(Some(&throttle));
    let g = &s.gateway;

    // A function that throws: 502 with the function's error JSON, without its stack trace.
    let fail = post(&g.url("/fail"), "application/json", "{}").await;
    assert_eq!(fail.status(), 502);
    assert_eq!(header(&fail, "x-amz-function-error"), Some("Unhandled"));
    let error: Value = fail.json().await.unwrap();
    assert_eq!(
        error,
        json!({"errorMessage": "deliberate failure from the fail function", "errorType": "Error"})
    );

    // A missing function: 502 with a clear message (serverless-offline answers 404 ResourceNotFoundException).
    // The function's name stays out of the client's answer; the request's log line has it.
    let missing = post(&g.url("/missing"), "application/json", "{}").await;
    assert_eq!(missing.status(), 502);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"], "FunctionNotFound");
    assert!(!body.to_string().contains("no-such-function"), "{body}");
    let request_id = body["requestId"].as_str().expect("request id").to_string();
    let log = g.log();
    assert!(
        log.lines()
            .any(|l| l.contains(&request_id) && l.contains("no-such-function")),
        "no log line names the function for request {request_id}:\n{log}"
    );

    // Throttling: 429 with Retry-After passed through and the reason in a header.
    let throttled = post(&g.url("/throttled"), "application/json", "{}").await;
    assert_eq!(throttled.status(), 429);
    assert_eq!(header(&throttled, "retry-after"), Some("3"));
    assert_eq!(
        header(&throttled, "x-podcred-lambda-reason"),
        Some("ConcurrentInvocationLimitExceeded")
    );

    // Async: 202, empty body.
    let queued = post(&g.url("/async"), "application/json", r#"{"k":"v"}"#).await;
    assert_eq!(queued.status(), 202);
    assert_eq!(queued.text().await.unwrap(), "");

    // The route's timeout (1 s) is shorter than the function (3 s): 504.
    let started = Instant::now();
    let slow = post(&g.url("/slow"), "application/json", r#"{"sleepMs":3000}"#).await;
    assert_eq!(slow.status(), 504);
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "timed out after {:?}",
        started.elapsed()
    );
    assert_eq!(slow.json::<Value>().await.unwrap()["error"], "Timeout");

    // A body that is not JSON cannot be a raw event: 400 before calling Lambda.
    let not_json = post(&g.url("/echo"), "text/plain", "key=value").await;
    assert_eq!(not_json.status(), 400);
    assert_eq!(
        not_json.json::<Value>().await.unwrap()["error"],
        "InvalidRequestContent"
    );

    // No route: 404 JSON.
    let none = post(&g.url("/nowhere"), "application/json", "{}").await;
    assert_eq!(none.status(), 404);

    // Metrics count function errors and throttles per route and function.
    let metrics = reqwest::get(g.admin_url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"gateway_lambda_function_errors_total{route="test/routes#6",function="arn:aws:lambda:us-east-1:123456789012:function:fail"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"gateway_lambda_throttles_total{route="test/routes#11""#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"status="504",outcome="timeout""#),
        "{metrics}"
    );
}

#[tokio::test]
#[ignore = "needs peers: run make test"]
async fn payload_limits_are_enforced_before_lambda_is_called() {
    let s = setup(None);
    let g = &s.gateway;
    // 6 MB + 1 for a synchronous invoke; a JSON string so only the size is wrong.
    let big = format!("\"{}\"", "x".repeat(6 * 1024 * 1024 - 1));
    let too_big = post(&g.url("/echo"), "application/json", big).await;
    assert_eq!(too_big.status(), 413);
    assert_eq!(
        too_big.json::<Value>().await.unwrap()["error"],
        "PayloadTooLarge"
    );

    // Asynchronous invokes are limited to 1 MB.
    let medium = format!("\"{}\"", "x".repeat(1024 * 1024));
    let async_too_big = post(&g.url("/async"), "application/json", medium.clone()).await;
    assert_eq!(async_too_big.status(), 413);
    // ... while the same body is fine synchronously, and reaches the real function.
    let ok = post(&g.url("/echo"), "application/json", medium).await;
    assert_eq!(ok.status(), 200);
    assert!(ok.text().await.unwrap().len() > 1024 * 1024);
}

#[tokio::test]
#[ignore = "needs peers: run make test"]
async fn config_changes_are_reloaded_without_dropping_in_flight_requests() {
    let s = setup(None);
    let g = &s.gateway;
    let url = g.url("/slow-ok");
    // A request that takes 2 s is in flight while the routes change under it.
    let in_flight =
        tokio::spawn(async move { post(&url, "application/json", r#"{"sleepMs":2000}"#).await });
    tokio::time::sleep(Duration::from_millis(500)).await;

    let new_config = config(&sls().endpoint(), None)
        .replace("value: \"/slow-ok\"", "value: \"/slow-renamed\"")
        .replace("value: \"/echo\"", "value: \"/echo-v2\"");
    std::fs::write(&s.config_path, new_config).unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = post(&g.url("/echo-v2"), "application/json", "{}").await;
        if r.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "new route never served; last status {}\n{}",
            r.status(),
            g.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        post(&g.url("/echo"), "application/json", "{}")
            .await
            .status(),
        404,
        "old route removed"
    );

    let finished = in_flight.await.unwrap();
    assert_eq!(
        finished.status(),
        200,
        "the in-flight request completed on the old routes"
    );
    assert_eq!(
        finished.text().await.unwrap(),
        r#"{"statusCode":200,"body":"slept 2000 ms"}"#
    );

    // A broken edit is rejected and the last good config keeps serving.
    std::fs::write(&s.config_path, "kind: HTTPRoute\napiVersion: gateway.networking.k8s.io/v1\nmetadata: {name: x}\nspec: {rules: [{backendRefs: [{group: gateway.kgateway.dev, kind: Backend, name: gone}]}]}\n").unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        post(&g.url("/echo-v2"), "application/json", "{}")
            .await
            .status(),
        200
    );
    let metrics = reqwest::get(g.admin_url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"gateway_config_reloads_total{result="error"} 1"#),
        "{metrics}"
    );
    assert!(
        g.log().contains("Backend default/gone not found"),
        "{}",
        g.log()
    );
}
