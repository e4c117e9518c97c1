//! HTTPRoute filters end to end: the `gateway` binary (file mode) in front of serverless-offline, whose
//! `event-echo` function returns the event it received, so each filter's effect is read from what a real
//! Node.js Lambda runtime got — RequestHeaderModifier (rule and backendRef level), URLRewrite (host and path,
//! in API Gateway 1.0 and 2.0 events), RequestRedirect (answered by the gateway, no Lambda call: the metrics
//! say so), and ResponseHeaderModifier on a function's response and on a gateway-made error.

use std::time::Duration;

use integration::gateway::{backend_yaml, header, Gateway};
use integration::serverless::ServerlessOffline;
use serde_json::Value;

/// The filters under test, one rule each (rule indexes are asserted in the metrics below).
const ROUTE: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: filters, namespace: test}
spec:
  parentRefs: [{name: http}]
  rules:
  # 0: request headers, at rule and backendRef level
  - matches: [{path: {type: PathPrefix, value: /headers}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: X-Set, value: set-by-filter}]
        add: [{name: X-Add, value: added-by-filter}]
        remove: [X-Remove]
    backendRefs:
    - group: gateway.kgateway.dev
      kind: Backend
      name: envoy-event
      filters:
      - type: RequestHeaderModifier
        requestHeaderModifier: {add: [{name: x-backend, value: envoy-event}]}
      - type: ResponseHeaderModifier
        responseHeaderModifier: {add: [{name: x-picked, value: envoy-event}]}
  # 1: host and path prefix rewrite (payload format 2.0)
  - matches: [{path: {type: PathPrefix, value: /rewrite/prefix/}}]
    filters:
    - type: URLRewrite
      urlRewrite:
        hostname: rewritten.example
        path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}
    backendRefs: [{group: gateway.kgateway.dev, kind: Backend, name: v2-event}]
  # 2: full path rewrite (payload format 1.0)
  - matches: [{path: {type: Exact, value: /rewrite/full}}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /replaced}}
    backendRefs: [{group: gateway.kgateway.dev, kind: Backend, name: v1-event}]
  # 3: scheme redirect
  - matches: [{path: {type: Exact, value: /redirect/https}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {scheme: https, statusCode: 301}
  # 4: host and prefix redirect; the port is the Gateway listener's (8080), not the one the test connects to
  - matches: [{path: {type: PathPrefix, value: /redirect/prefix}}]
    filters:
    - type: RequestRedirect
      requestRedirect:
        hostname: new.example
        statusCode: 308
        path: {type: ReplacePrefixMatch, replacePrefixMatch: /moved}
  # 5: port 80 is http's default, so it is left out
  - matches: [{path: {type: Exact, value: /redirect/port}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {port: 80, path: {type: ReplaceFullPath, replaceFullPath: /x}}
  # 6: response headers on a function's response
  - matches: [{path: {type: Exact, value: /response}}]
    filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        set: [{name: X-Custom, value: set-by-filter}]
        add: [{name: x-added, value: "yes"}]
        remove: [set-cookie]
    backendRefs: [{group: gateway.kgateway.dev, kind: Backend, name: apigw-v2}]
  # 7: response headers on a gateway-made error (the function does not exist)
  - matches: [{path: {type: Exact, value: /response-error}}]
    filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier: {set: [{name: x-route, value: response-error}]}
    backendRefs: [{group: gateway.kgateway.dev, kind: Backend, name: missing}]
"#;

/// [`backend_yaml`] with `payloadTransformMode: mode`.
fn backend_with_mode(
    name: &str,
    function: &str,
    endpoint: &str,
    mode: &str,
    annotations: &str,
) -> String {
    backend_yaml(
        name,
        function,
        endpoint,
        &format!(", payloadTransformMode: {mode}"),
        annotations,
    )
}

fn config(endpoint: &str) -> String {
    let mut yaml = String::from(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: static-keys, namespace: test}\nstringData: {accessKey: AKIDSTATICEXAMPLE, secretKey: not-checked-by-serverless-offline}\n---\n",
    );
    yaml += "kind: Gateway\napiVersion: gateway.networking.k8s.io/v1\nmetadata: {name: http, namespace: test}\nspec:\n  gatewayClassName: podcred\n  listeners: [{protocol: HTTP, port: 8080, name: http}]\n---\n";
    let passthrough = "gateway.podcred.dev/response-mode: passthrough";
    yaml += &backend_with_mode("envoy-event", "event-echo", endpoint, "Envoy", passthrough);
    yaml += &backend_with_mode(
        "v1-event",
        "event-echo",
        endpoint,
        "ApiGatewayV1",
        passthrough,
    );
    yaml += &backend_with_mode(
        "v2-event",
        "event-echo",
        endpoint,
        "ApiGatewayV2",
        passthrough,
    );
    yaml += &backend_with_mode("apigw-v2", "apigw", endpoint, "ApiGatewayV2", "");
    yaml += &backend_with_mode("missing", "no-such-function", endpoint, "Envoy", "");
    yaml + ROUTE
}

#[tokio::test]
#[ignore = "needs peers: run make test"]
async fn every_supported_filter_changes_what_a_real_function_sees_or_what_the_client_gets() {
    let sls = ServerlessOffline::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = dir.path().join("routes.yaml");
    std::fs::write(&config_path, config(&sls.endpoint())).expect("write config");
    let gateway = Gateway::start(&config_path, &[], &[]);
    gateway.wait_ready(Duration::from_secs(10));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // RequestHeaderModifier: set overwrites, add appends (Envoy's event joins repeats with ','), remove drops,
    // names in any case; then the backendRef's own filter adds its header.
    let response = client
        .post(gateway.url("/headers/x"))
        .header("content-type", "application/json")
        .header("x-set", "from-client")
        .header("x-add", "from-client")
        .header("x-remove", "must-not-arrive")
        .header("x-keep", "kept")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-picked"), Some("envoy-event"));
    let event: Value = response.json().await.unwrap();
    let headers = &event["headers"];
    assert_eq!(headers["x-set"], "set-by-filter", "{event}");
    assert_eq!(headers["x-add"], "from-client,added-by-filter", "{event}");
    assert_eq!(headers["x-backend"], "envoy-event", "{event}");
    assert_eq!(headers["x-keep"], "kept", "{event}");
    assert!(headers.get("x-remove").is_none(), "{event}");
    assert_eq!(event["raw_path"], "/headers/x", "{event}");

    // URLRewrite, payload format 2.0: Host and the matched prefix replaced, the query kept.
    let event: Value = client
        .get(gateway.url("/rewrite/prefix/items/1?a=1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(event["rawPath"], "/v2/items/1", "{event}");
    assert_eq!(event["rawQueryString"], "a=1", "{event}");
    assert_eq!(
        event["requestContext"]["http"]["path"], "/v2/items/1",
        "{event}"
    );
    assert_eq!(event["headers"]["host"], "rewritten.example", "{event}");
    assert_eq!(
        event["requestContext"]["domainName"], "rewritten.example",
        "{event}"
    );

    // URLRewrite, payload format 1.0: the full path replaced; Host untouched.
    let event: Value = client
        .get(gateway.url("/rewrite/full"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(event["path"], "/replaced", "{event}");
    assert_eq!(event["requestContext"]["path"], "/replaced", "{event}");
    assert_eq!(
        event["headers"]["host"],
        format!("127.0.0.1:{}", gateway.addr.port()),
        "{event}"
    );

    // RequestRedirect: the gateway answers.
    for (path, status, location) in [
        (
            "/redirect/https",
            301,
            "https://127.0.0.1/redirect/https".to_string(),
        ),
        (
            "/redirect/prefix/a/b?q=1",
            308,
            "http://new.example:8080/moved/a/b?q=1".to_string(),
        ),
        ("/redirect/port", 302, "http://127.0.0.1/x".to_string()),
    ] {
        let response = client.get(gateway.url(path)).send().await.unwrap();
        assert_eq!(response.status(), status, "{path}");
        assert_eq!(
            header(&response, "location"),
            Some(location.as_str()),
            "{path}"
        );
        assert!(response.bytes().await.unwrap().is_empty(), "{path}");
    }

    // ResponseHeaderModifier on the function's own (sanitised) response: set replaces the function's value,
    // add adds, remove drops its cookies.
    let response = client
        .post(gateway.url("/response"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(header(&response, "x-custom"), Some("set-by-filter"));
    assert_eq!(header(&response, "x-added"), Some("yes"));
    assert_eq!(header(&response, "content-type"), Some("text/plain"));
    assert!(response.headers().get("set-cookie").is_none());
    assert_eq!(response.text().await.unwrap(), "method=POST");

    // ... and on a reply the gateway made itself.
    let response = client
        .post(gateway.url("/response-error"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(header(&response, "x-route"), Some("response-error"));

    // The redirects never reached Lambda: they are counted without a function.
    let metrics = reqwest::get(gateway.admin_url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for expected in [
        r#"gateway_requests_total{route="test/filters#3",function="-",status="301",outcome="redirect"} 1"#,
        r#"gateway_requests_total{route="test/filters#4",function="-",status="308",outcome="redirect"} 1"#,
        r#"gateway_requests_total{route="test/filters#5",function="-",status="302",outcome="redirect"} 1"#,
    ] {
        assert!(metrics.contains(expected), "{expected} not in:\n{metrics}");
    }
}
