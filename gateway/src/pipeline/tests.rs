//! The whole request pipeline in-process: a compiled config, a pinned clock, a scripted Lambda in place of the
//! network. One case per row of the README's error table, plus hostile requests and hostile function output.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{future, ProvideCredentials, SharedCredentialsProvider};
use http_body_util::StreamBody;
use serde_json::Value;

use super::*;
use crate::clock::Clock;
use crate::config::{compile, LoadOptions};
use crate::state::{ClientLimits, Dependencies, Settings};
use crate::upstream::{Upstream, UpstreamFuture};

const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY";

/// Backends (static keys unless said otherwise) and one route per case.
fn config_yaml() -> String {
    let backend = |name: &str, lambda: &str, auth: bool| {
        let auth = if auth {
            "auth: {type: Secret, secretRef: {name: keys}}"
        } else {
            ""
        };
        format!(
            "apiVersion: gateway.kgateway.dev/v1alpha1\nkind: Backend\nmetadata: {{name: {name}, namespace: ns}}\n\
             spec:\n  type: AWS\n  aws:\n    region: us-east-1\n    accountId: \"123456789012\"\n    {auth}\n    \
             lambda: {lambda}\n---\n"
        )
    };
    let mut yaml = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: keys, namespace: ns}}\n\
         stringData: {{accessKey: AKIDEXAMPLE, secretKey: \"{SECRET_KEY}\"}}\n---\n"
    );
    yaml += &backend(
        "echo",
        "{functionName: echo, endpointURL: \"http://lambda.internal.example:9001\"}",
        true,
    );
    yaml += &backend(
        "envoy",
        "{functionName: shaped, payloadTransformMode: Envoy}",
        true,
    );
    yaml += &backend(
        "v1",
        "{functionName: shaped, payloadTransformMode: ApiGatewayV1}",
        true,
    );
    yaml += &backend("async", "{functionName: echo, invocationMode: Async}", true);
    yaml += &backend("chain", "{functionName: echo}", false);
    yaml += "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: ns}\nspec:\n  rules:\n";
    for (path, backend, extra) in [
        ("/echo", "echo", ""),
        ("/envoy", "envoy", ""),
        ("/v1", "v1", ""),
        ("/async", "async", ""),
        ("/chain", "chain", ""),
        ("/zero", "echo", ", weight: 0"),
    ] {
        yaml += &format!(
            "  - matches: [{{path: {{type: PathPrefix, value: {path}}}}}]\n    \
             backendRefs: [{{group: gateway.kgateway.dev, kind: Backend, name: {backend}{extra}}}]\n"
        );
    }
    yaml + FILTER_ROUTES
}

/// Routes with filters (a second HTTPRoute, so the rule indexes of `r` stay as they are).
const FILTER_ROUTES: &str = r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: f, namespace: ns}
spec:
  rules:
  - matches: [{path: {type: PathPrefix, value: /filtered}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: X-Set, value: by-filter}], remove: [authorization]}
    - type: URLRewrite
      urlRewrite: {hostname: inside.example, path: {type: ReplacePrefixMatch, replacePrefixMatch: /inner}}
    - type: ResponseHeaderModifier
      responseHeaderModifier: {set: [{name: x-ok, value: by-filter}], add: [{name: x-rule, value: "1"}]}
    backendRefs:
    - group: gateway.kgateway.dev
      kind: Backend
      name: envoy
      filters:
      - type: RequestHeaderModifier
        requestHeaderModifier: {add: [{name: x-set, value: by-backend}]}
      - type: ResponseHeaderModifier
        responseHeaderModifier: {add: [{name: x-backend, value: envoy}]}
  - matches: [{path: {type: PathPrefix, value: /moved}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}}
    - type: ResponseHeaderModifier
      responseHeaderModifier: {set: [{name: cache-control, value: no-store}]}
"#;

#[derive(Debug)]
struct PinnedClock(SystemTime);

impl Clock for PinnedClock {
    fn now(&self) -> SystemTime {
        self.0
    }
}

type Script =
    Box<dyn Fn(&http::Request<Full<Bytes>>) -> Result<LambdaReply, UpstreamError> + Send + Sync>;

/// Lambda, scripted: answers each call with the next reply and remembers every request it got.
struct ScriptedLambda {
    replies: Mutex<VecDeque<Script>>,
    seen: Mutex<Vec<http::Request<Full<Bytes>>>>,
}

impl std::fmt::Debug for ScriptedLambda {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScriptedLambda")
    }
}

impl Upstream for ScriptedLambda {
    fn call(&self, request: http::Request<Full<Bytes>>, _timeout: Duration) -> UpstreamFuture<'_> {
        let script = self.replies.lock().unwrap().pop_front();
        let answer = match script {
            Some(script) => script(&request),
            None => Err(UpstreamError::Unreachable("no scripted reply".into())),
        };
        self.seen.lock().unwrap().push(request);
        Box::pin(async move { answer })
    }
}

#[derive(Debug)]
struct FailingProvider;

impl ProvideCredentials for FailingProvider {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::ready(Err(CredentialsError::provider_error(
            "the container credentials endpoint http://127.0.0.1:9911/v1/credentials refused the connection",
        )))
    }
}

struct Harness {
    gateway: Arc<Gateway>,
    lambda: Arc<ScriptedLambda>,
}

fn reply(status: u16, headers: &[(&str, &str)], body: &str) -> Script {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let body = body.to_string();
    Box::new(move |_| {
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        Ok(LambdaReply {
            status,
            function_error: get("x-amz-function-error"),
            error_type: get("x-amzn-errortype"),
            retry_after: get("retry-after"),
            request_id: get("x-amzn-requestid"),
            executed_version: get("x-amz-executed-version"),
            body: Bytes::from(body.clone()),
        })
    })
}

async fn harness(limits: ClientLimits, script: Vec<Script>) -> Harness {
    let config = compile(&[("c.yaml", &config_yaml())], &LoadOptions::default()).expect("compiles");
    let lambda = Arc::new(ScriptedLambda {
        replies: Mutex::new(script.into()),
        seen: Mutex::new(vec![]),
    });
    let deps = Dependencies {
        clock: Arc::new(PinnedClock(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_000_000),
        )),
        upstream: lambda.clone(),
        default_credentials: Some((
            "container credentials endpoint http://127.0.0.1:9911/v1/credentials".into(),
            SharedCredentialsProvider::new(FailingProvider),
        )),
    };
    let settings = Settings {
        access_log: true,
        limits,
        ..Settings::default()
    };
    Harness {
        gateway: Gateway::new(config, settings, deps).await,
        lambda,
    }
}

const PEER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 40000);

fn post(path: &str, headers: &[(&str, &str)], body: &str) -> http::Request<Full<Bytes>> {
    let mut builder = http::Request::post(path).header("host", "gw.example");
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    builder
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Bytes,
    outcome: Outcome,
    close: bool,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

async fn send<B>(h: &Harness, request: http::Request<B>) -> Answer
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let served = serve(&h.gateway, request, PEER).await;
    Answer {
        status: served.reply.status,
        headers: served.reply.headers.clone(),
        body: served.reply.body.clone(),
        outcome: served.reply.outcome,
        close: served.close_connection,
    }
}

const SEED_BODY: &str = r#"{"key1":"value1", "key2":"value2"}"#;

#[tokio::test]
async fn a_passthrough_request_is_signed_sent_and_answered_with_the_function_output() {
    let output = r#"{"statusCode":200,"body":"Response from AWS Lambda"}"#;
    let h = harness(
        ClientLimits::default(),
        vec![reply(
            200,
            &[
                ("x-amzn-requestid", "lambda-1"),
                ("x-amz-log-result", "c2VjcmV0"),
            ],
            output,
        )],
    )
    .await;
    let answer = send(
        &h,
        post(
            "/echo",
            &[
                ("authorization", "Bearer client-secret"),
                ("x-amz-security-token", "client-token"),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            SEED_BODY,
        ),
    )
    .await;
    assert_eq!((answer.status, answer.text().as_str()), (200, output));
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(answer.header("x-amzn-requestid"), Some("lambda-1"));
    assert_eq!(answer.header("x-amz-log-result"), None);

    let seen = h.lambda.seen.lock().unwrap();
    let sent = &seen[0];
    assert_eq!(
        sent.uri().to_string(),
        "http://lambda.internal.example:9001/2015-03-31/functions/echo/invocations"
    );
    let mut names: Vec<&str> = sent.headers().keys().map(|k| k.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "authorization",
            "content-type",
            "host",
            "x-amz-date",
            "x-amz-invocation-type"
        ],
        "only the gateway's own headers reach Lambda"
    );
    let authorization = sent.headers()["authorization"].to_str().unwrap();
    assert!(
        authorization.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20251124/us-east-1/lambda/aws4_request"
        ),
        "{authorization}"
    );
    assert_eq!(sent.headers()["x-amz-date"], "20251124T160000Z");
}

/// Every gateway-made error of the README's table: status, code, extra headers, whether Lambda was called,
/// and that the client-visible body carries no internal detail.
#[tokio::test]
async fn every_error_of_the_error_table_is_answered_as_documented() {
    struct Case {
        name: &'static str,
        request: http::Request<Full<Bytes>>,
        lambda: Option<Script>,
        status: u16,
        code: &'static str,
        header: Option<(&'static str, &'static str)>,
        outcome: Outcome,
    }
    let cases = vec![
        Case {
            name: "no route",
            request: post("/nowhere", &[], "{}"),
            lambda: None,
            status: 404,
            code: "NoRoute",
            header: None,
            outcome: Outcome::NoRoute,
        },
        Case {
            name: "no backend with weight",
            request: post("/zero", &[], "{}"),
            lambda: None,
            status: 500,
            code: "NoBackend",
            header: None,
            outcome: Outcome::NoBackend,
        },
        Case {
            name: "raw mode, body not JSON",
            request: post("/echo", &[], "key1=value1"),
            lambda: None,
            status: 400,
            code: "InvalidRequestContent",
            header: None,
            outcome: Outcome::BadRequest,
        },
        Case {
            name: "declared body over 6 MB",
            request: post("/echo", &[("content-length", "6291457")], ""),
            lambda: None,
            status: 413,
            code: "PayloadTooLarge",
            header: None,
            outcome: Outcome::TooLarge,
        },
        Case {
            name: "no credentials",
            request: post("/chain", &[], "{}"),
            lambda: None,
            status: 503,
            code: "NoCredentials",
            header: Some(("retry-after", "1")),
            outcome: Outcome::NoCredentials,
        },
        Case {
            name: "throttled",
            request: post("/echo", &[], "{}"),
            lambda: Some(reply(
                429,
                &[("retry-after", "7")],
                r#"{"Reason":"ReservedFunctionConcurrentInvocationLimitExceeded","message":"Rate Exceeded."}"#,
            )),
            status: 429,
            code: "Throttled",
            header: Some(("retry-after", "7")),
            outcome: Outcome::Throttled,
        },
        Case {
            name: "function not found",
            request: post("/echo", &[], "{}"),
            lambda: Some(reply(
                404,
                &[("x-amzn-errortype", "ResourceNotFoundException")],
                r#"{"message":"Function not found: arn:aws:lambda:us-east-1:123456789012:function:echo"}"#,
            )),
            status: 502,
            code: "FunctionNotFound",
            header: None,
            outcome: Outcome::FunctionNotFound,
        },
        Case {
            name: "access denied",
            request: post("/echo", &[], "{}"),
            lambda: Some(reply(
                403,
                &[("x-amzn-errortype", "AccessDeniedException")],
                r#"{"message":"User: arn:aws:sts::123456789012:assumed-role/gw-role/s is not authorized to perform: lambda:InvokeFunction"}"#,
            )),
            status: 502,
            code: "AccessDenied",
            header: None,
            outcome: Outcome::AccessDenied,
        },
        Case {
            name: "credentials rejected",
            request: post("/echo", &[], "{}"),
            lambda: Some(reply(
                403,
                &[("x-amzn-errortype", "InvalidSignatureException")],
                r#"{"message":"The request signature we calculated does not match"}"#,
            )),
            status: 502,
            code: "CredentialsRejected",
            header: None,
            outcome: Outcome::CredentialsRejected,
        },
        Case {
            name: "function not ready",
            request: post("/echo", &[], "{}"),
            lambda: Some(reply(
                409,
                &[("x-amzn-errortype", "ResourceConflictException")],
                r#"{"message":"The operation cannot be performed at this time."}"#,
            )),
            status: 503,
            code: "FunctionNotReady",
            header: Some(("retry-after", "1")),
            outcome: Outcome::NotReady,
        },
        Case {
            name: "Lambda says too large",
            request: post("/echo", &[], "{}"),
            lambda: Some(reply(
                413,
                &[("x-amzn-errortype", "RequestTooLargeException")],
                r#"{"message":"Request must be smaller than 6291456 bytes"}"#,
            )),
            status: 413,
            code: "PayloadTooLarge",
            header: None,
            outcome: Outcome::TooLarge,
        },
        Case {
            name: "other Lambda error",
            request: post("/echo", &[], "{}"),
            lambda: Some(reply(
                500,
                &[("x-amzn-errortype", "ServiceException")],
                r#"{"message":"internal at 10.0.0.7"}"#,
            )),
            status: 502,
            code: "LambdaError",
            header: None,
            outcome: Outcome::LambdaError,
        },
        Case {
            name: "malformed function output",
            request: post("/envoy", &[], "{}"),
            lambda: Some(reply(200, &[], "not json")),
            status: 502,
            code: "MalformedLambdaResponse",
            header: None,
            outcome: Outcome::MalformedResponse,
        },
        Case {
            name: "route timeout",
            request: post("/echo", &[], "{}"),
            lambda: Some(Box::new(|_| {
                Err(UpstreamError::Timeout(Duration::from_secs(60)))
            })),
            status: 504,
            code: "Timeout",
            header: None,
            outcome: Outcome::Timeout,
        },
        Case {
            name: "Lambda unreachable",
            request: post("/echo", &[], "{}"),
            lambda: Some(Box::new(|_| {
                Err(UpstreamError::Unreachable("tcp connect error: Connection refused (os error 111) to lambda.internal.example:9001".into()))
            })),
            status: 502,
            code: "LambdaUnreachable",
            header: None,
            outcome: Outcome::Unreachable,
        },
    ];
    // Strings that must never reach a client: endpoints, credential sources, roles, accounts, Lambda's messages.
    let internals = [
        "lambda.internal.example",
        "127.0.0.1:9911",
        "arn:aws",
        "123456789012",
        "Connection refused",
        "10.0.0.7",
        SECRET_KEY,
    ];
    for case in cases {
        let calls = usize::from(case.lambda.is_some());
        let h = harness(ClientLimits::default(), case.lambda.into_iter().collect()).await;
        if case.outcome == Outcome::NoCredentials {
            // Let the refresher try (and fail) once.
            tokio::task::yield_now().await;
        }
        let answer = send(&h, case.request).await;
        let body = answer.json();
        assert_eq!(
            answer.status,
            case.status,
            "{}: {}",
            case.name,
            answer.text()
        );
        assert_eq!(body["error"], case.code, "{}: {}", case.name, answer.text());
        assert_eq!(answer.outcome, case.outcome, "{}", case.name);
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{}",
            case.name
        );
        assert_eq!(
            body["requestId"].as_str().map(str::len),
            Some(24),
            "{}",
            case.name
        );
        if let Some((name, value)) = case.header {
            assert_eq!(answer.header(name), Some(value), "{}", case.name);
        }
        assert_eq!(
            h.lambda.seen.lock().unwrap().len(),
            calls,
            "{}: Lambda calls",
            case.name
        );
        for secret in internals {
            assert!(
                !answer.text().contains(secret),
                "{}: the client saw {secret:?}: {}",
                case.name,
                answer.text()
            );
        }
    }
}

#[tokio::test]
async fn function_errors_are_502_without_stack_traces_and_timeouts_504() {
    let h = harness(
        ClientLimits::default(),
        vec![
            reply(200, &[("x-amz-function-error", "Unhandled")], r#"{"errorMessage":"boom","errorType":"Error","stackTrace":["at handler (/var/task/index.js:3)"]}"#),
            reply(200, &[("x-amz-function-error", "Unhandled")], r#"{"errorMessage":"2025-11-24T16:00:00Z 1234 Task timed out after 3.00 seconds"}"#),
        ],
    )
    .await;
    let error = send(&h, post("/echo", &[], "{}")).await;
    assert_eq!(error.status, 502);
    assert_eq!(error.header("x-amz-function-error"), Some("Unhandled"));
    assert_eq!(
        error.json(),
        serde_json::json!({"errorMessage": "boom", "errorType": "Error"})
    );
    let timeout = send(&h, post("/echo", &[], "{}")).await;
    assert_eq!(
        (timeout.status, timeout.outcome),
        (504, Outcome::FunctionTimeout)
    );
}

#[tokio::test]
async fn async_invocations_answer_202_with_an_empty_body() {
    let h = harness(ClientLimits::default(), vec![reply(202, &[], "")]).await;
    let answer = send(&h, post("/async", &[], "{}")).await;
    assert_eq!((answer.status, answer.body.len()), (202, 0));
    let seen = h.lambda.seen.lock().unwrap();
    assert_eq!(seen[0].headers()["x-amz-invocation-type"], "Event");
}

fn streamed(
    chunks: Vec<Bytes>,
    then_stall: bool,
) -> http::Request<impl Body<Data = Bytes, Error = std::io::Error>> {
    let stream = futures::stream::iter(
        chunks
            .into_iter()
            .map(|c| Ok::<_, std::io::Error>(hyper::body::Frame::data(c))),
    );
    let stream = if then_stall {
        futures::StreamExt::boxed(futures::StreamExt::chain(
            stream,
            futures::stream::pending(),
        ))
    } else {
        futures::StreamExt::boxed(stream)
    };
    http::Request::post("/echo")
        .header("host", "gw.example")
        .body(StreamBody::new(stream))
        .unwrap()
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_refused_and_the_connection_closes() {
    let h = harness(ClientLimits::default(), vec![]).await;
    let chunk = Bytes::from(vec![b' '; 1024 * 1024]);
    let answer = send(&h, streamed(vec![chunk; 7], false)).await;
    assert_eq!(
        (answer.status, answer.json()["error"].as_str()),
        (413, Some("PayloadTooLarge"))
    );
    assert!(
        answer.close,
        "the rest of the body is not read: the connection must close"
    );
    assert!(h.lambda.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_body_that_stops_arriving_gets_408_after_the_body_read_timeout() {
    let limits = ClientLimits {
        body_read_timeout: Duration::from_millis(200),
        ..ClientLimits::default()
    };
    let h = harness(limits, vec![]).await;
    let answer = send(&h, streamed(vec![Bytes::from_static(b"{\"half\":")], true)).await;
    assert_eq!(
        (answer.status, answer.json()["error"].as_str()),
        (408, Some("RequestTimeout"))
    );
    assert!(answer.close);
}

#[tokio::test]
async fn hostile_host_headers_do_not_panic() {
    for host in [
        "[",
        "[::1",
        "[]:",
        ":",
        "a:b:c",
        "[::1]:99999999999",
        "\u{7f}",
    ] {
        let h = harness(ClientLimits::default(), vec![reply(200, &[], "{}")]).await;
        let mut request = post("/echo", &[], "{}");
        if let Ok(value) = http::HeaderValue::from_str(host) {
            request.headers_mut().insert(http::header::HOST, value);
        }
        let answer = send(&h, request).await;
        assert_eq!(answer.status, 200, "Host {host:?}: {}", answer.text());
    }
    assert_eq!(host_without_port("[::1]:8080"), "[::1]");
    assert_eq!(host_without_port("example.com:8080"), "example.com");
    assert_eq!(host_without_port("["), "[");
}

/// A function's output must not control the client connection: framing and hop-by-hop headers are dropped,
/// invalid headers dropped, impossible statuses refused, bodies of 204 removed.
#[tokio::test]
async fn hostile_function_output_cannot_break_the_client_connection() {
    let framing = r#"{"statusCode":200,"headers":{"content-length":"1","transfer-encoding":"chunked","connection":"close","keep-alive":"timeout=1","upgrade":"h2c","te":"trailers","trailer":"x","proxy-authenticate":"Basic","bad header":"x","x-newline":"a\r\nset-cookie: injected=1","x-ok":"kept"},"body":"a body longer than one byte"}"#;
    let h = harness(
        ClientLimits::default(),
        vec![
            reply(200, &[], framing),
            reply(200, &[], framing),
            reply(200, &[], r#"{"statusCode":1000,"body":"x"}"#),
            reply(200, &[], r#"{"statusCode":101,"body":"x"}"#),
            reply(200, &[], r#"{"statusCode":"abc","body":"x"}"#),
            reply(200, &[], r#"{"statusCode":204,"body":"must not be sent"}"#),
        ],
    )
    .await;
    for path in ["/envoy", "/v1"] {
        let answer = send(&h, post(path, &[], "{}")).await;
        assert_eq!(answer.status, 200, "{path}");
        assert_eq!(answer.text(), "a body longer than one byte", "{path}");
        let mut names: Vec<&str> = answer.headers.iter().map(|(n, _)| n.as_str()).collect();
        names.sort();
        let expected: &[&str] = if path == "/envoy" {
            &["content-type", "x-ok"]
        } else {
            &["x-ok"]
        };
        assert_eq!(names, expected, "{path}");
    }
    for status in ["1000", "101", "\"abc\""] {
        let answer = send(&h, post("/envoy", &[], "{}")).await;
        assert_eq!(
            (answer.status, answer.json()["error"].as_str()),
            (502, Some("MalformedLambdaResponse")),
            "statusCode {status}"
        );
    }
    let no_content = send(&h, post("/envoy", &[], "{}")).await;
    assert_eq!((no_content.status, no_content.body.len()), (204, 0));
}

#[tokio::test]
async fn requests_are_counted_per_route_function_status_and_outcome() {
    let h = harness(ClientLimits::default(), vec![reply(200, &[], "{}")]).await;
    send(&h, post("/echo", &[], "{}")).await;
    send(&h, post("/nowhere", &[], "{}")).await;
    let text = h.gateway.metrics.encode();
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("gateway_requests_total{"))
        .collect();
    let mut series = series;
    series.sort();
    assert_eq!(
        series,
        [
            r#"gateway_requests_total{route="-",function="-",status="404",outcome="no_route"} 1"#,
            r#"gateway_requests_total{route="ns/r#0",function="arn:aws:lambda:us-east-1:123456789012:function:echo",status="200",outcome="ok"} 1"#,
        ]
    );
}

/// The event Lambda was sent in the n-th call.
fn sent_event(h: &Harness, n: usize) -> Value {
    let seen = h.lambda.seen.lock().unwrap();
    let body = futures::executor::block_on(seen[n].body().clone().collect())
        .expect("a Full body")
        .to_bytes();
    serde_json::from_slice(&body).expect("JSON event")
}

#[tokio::test]
async fn request_filters_change_the_event_and_rules_without_filters_see_the_request_as_sent() {
    let h = harness(
        ClientLimits::default(),
        vec![
            reply(
                200,
                &[],
                r#"{"status_code":200,"headers":{"x-ok":"from-function"},"body":"ok"}"#,
            ),
            reply(200, &[], r#"{"status_code":200,"body":"ok"}"#),
        ],
    )
    .await;
    let headers = [
        ("x-set", "from-client"),
        ("authorization", "Bearer client-secret"),
    ];
    let answer = send(&h, post("/filtered/a?q=1", &headers, "{}")).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let event = sent_event(&h, 0);
    assert_eq!(event["raw_path"], "/inner/a?q=1", "{event}");
    assert_eq!(event["headers"]["host"], "inside.example", "{event}");
    // The rule's `set`, then the backendRef's `add`; the removed header never reaches the function.
    assert_eq!(event["headers"]["x-set"], "by-filter,by-backend", "{event}");
    assert!(event["headers"].get("authorization").is_none(), "{event}");
    // Response filters run on the sanitised function response: the rule's, then the backend's.
    assert_eq!(answer.header("x-ok"), Some("by-filter"));
    assert_eq!(answer.header("x-rule"), Some("1"));
    assert_eq!(answer.header("x-backend"), Some("envoy"));

    // Routing saw the request as sent (the filters apply after matching), and a rule without filters passes
    // the request through unchanged.
    let answer = send(&h, post("/envoy/a", &headers, "{}")).await;
    assert_eq!(answer.status, 200);
    let event = sent_event(&h, 1);
    assert_eq!(event["raw_path"], "/envoy/a", "{event}");
    assert_eq!(event["headers"]["host"], "gw.example", "{event}");
    assert_eq!(event["headers"]["x-set"], "from-client", "{event}");
    assert_eq!(answer.header("x-rule"), None);
}

#[tokio::test]
async fn a_redirect_is_answered_by_the_gateway_without_calling_lambda() {
    let h = harness(ClientLimits::default(), vec![]).await;
    let answer = send(&h, post("/moved/a/b?x=1", &[], "{}")).await;
    assert_eq!(answer.status, 302);
    assert_eq!(answer.outcome, Outcome::Redirect);
    // No Gateway in this configuration: the port the client named is the listener's (none here).
    assert_eq!(
        answer.header("location"),
        Some("http://gw.example/new/a/b?x=1")
    );
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    assert!(answer.body.is_empty());

    let mut request = post("/moved", &[], "");
    request.headers_mut().insert(
        http::header::HOST,
        http::HeaderValue::from_static("gw.example:9000"),
    );
    let answer = send(&h, request).await;
    assert_eq!(
        answer.header("location"),
        Some("http://gw.example:9000/new")
    );
    assert!(h.lambda.seen.lock().unwrap().is_empty());
    let metrics = h.gateway.metrics.encode();
    assert!(
        metrics.contains(r#"gateway_requests_total{route="ns/f#1",function="-",status="302",outcome="redirect"} 2"#),
        "{metrics}"
    );
}
