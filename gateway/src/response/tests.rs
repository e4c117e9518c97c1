use super::*;

const FUNCTION: FunctionRef<'static> = FunctionRef {
    name: "echo",
    qualifier: None,
    region: "us-east-1",
};

fn reply(status: u16, headers: &[(&str, &str)], body: &str) -> LambdaReply {
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.to_string())
    };
    LambdaReply {
        status,
        function_error: get("x-amz-function-error"),
        error_type: get("x-amzn-errortype"),
        retry_after: get("retry-after"),
        request_id: get("x-amzn-requestid"),
        executed_version: get("x-amz-executed-version"),
        body: Bytes::from(body.to_string()),
    }
}

struct Case {
    name: &'static str,
    status: u16,
    headers: &'static [(&'static str, &'static str)],
    body: &'static str,
    mode: ResponseMode,
    invocation: InvocationMode,
    want_status: u16,
    /// Exact body, or None to skip.
    want_body: Option<&'static str>,
    want_body_contains: &'static str,
    want_headers: &'static [(&'static str, &'static str)],
    want_outcome: Outcome,
}

const SEED_BODY: &str = r#"{"statusCode":200,"body":"Response from AWS Lambda. Here's the request you just sent me: {\"key1\":\"value1\",\"key2\":\"value2\"}"}"#;

fn cases() -> Vec<Case> {
    use InvocationMode::*;
    use ResponseMode::*;
    vec![
        Case {
            name: "seed passthrough",
            status: 200,
            headers: &[
                ("x-amzn-requestid", "r-1"),
                ("x-amz-log-result", "c2VjcmV0"),
            ],
            body: SEED_BODY,
            mode: Passthrough,
            invocation: Sync,
            want_status: 200,
            want_body: Some(SEED_BODY),
            want_body_contains: "",
            want_headers: &[
                ("content-type", "application/json"),
                ("x-amzn-requestid", "r-1"),
            ],
            want_outcome: Outcome::Ok,
        },
        Case {
            name: "envoy unwraps statusCode/body",
            status: 200,
            headers: &[],
            body: r#"{"statusCode":201,"headers":{"x-a":"1"},"cookies":["c=1"],"body":"hi"}"#,
            mode: Envoy,
            invocation: Sync,
            want_status: 201,
            want_body: Some("hi"),
            want_body_contains: "",
            want_headers: &[
                ("x-a", "1"),
                ("set-cookie", "c=1"),
                ("content-type", "application/json"),
            ],
            want_outcome: Outcome::Ok,
        },
        Case {
            name: "envoy snake_case + base64",
            status: 200,
            headers: &[],
            body: r#"{"status_code":0,"body":"aGk=","is_base64_encoded":true}"#,
            mode: Envoy,
            invocation: Sync,
            want_status: 200,
            want_body: Some("hi"),
            want_body_contains: "",
            want_headers: &[],
            want_outcome: Outcome::Ok,
        },
        Case {
            name: "envoy invalid JSON",
            status: 200,
            headers: &[],
            body: "not json",
            mode: Envoy,
            invocation: Sync,
            want_status: 502,
            want_body: None,
            want_body_contains: "MalformedLambdaResponse",
            want_headers: &[],
            want_outcome: Outcome::MalformedResponse,
        },
        Case {
            name: "v1 merges multiValueHeaders",
            status: 200,
            headers: &[],
            body: r#"{"statusCode":200,"headers":{"X-A":"1","x-m":"single"},"multiValueHeaders":{"x-m":["a","b"]},"body":"ok"}"#,
            mode: ApiGatewayV1,
            invocation: Sync,
            want_status: 200,
            want_body: Some("ok"),
            want_body_contains: "",
            want_headers: &[("x-a", "1"), ("x-m", "a")],
            want_outcome: Outcome::Ok,
        },
        Case {
            name: "v1 requires statusCode",
            status: 200,
            headers: &[],
            body: r#"{"body":"x"}"#,
            mode: ApiGatewayV1,
            invocation: Sync,
            want_status: 502,
            want_body: None,
            want_body_contains: "requires statusCode",
            want_headers: &[],
            want_outcome: Outcome::MalformedResponse,
        },
        Case {
            name: "v2 infers from an object without statusCode",
            status: 200,
            headers: &[],
            body: r#"{"message":"hi"}"#,
            mode: ApiGatewayV2,
            invocation: Sync,
            want_status: 200,
            want_body: Some(r#"{"message":"hi"}"#),
            want_body_contains: "",
            want_headers: &[("content-type", "application/json")],
            want_outcome: Outcome::Ok,
        },
        Case {
            name: "v2 infers from a bare string",
            status: 200,
            headers: &[],
            body: r#""just a string""#,
            mode: ApiGatewayV2,
            invocation: Sync,
            want_status: 200,
            want_body: Some(r#""just a string""#),
            want_body_contains: "",
            want_headers: &[],
            want_outcome: Outcome::Ok,
        },
        Case {
            name: "v2 cookies and base64",
            status: 200,
            headers: &[],
            body: r#"{"statusCode":"418","cookies":["a=1","b=2"],"isBase64Encoded":true,"body":"AAEC"}"#,
            mode: ApiGatewayV2,
            invocation: Sync,
            want_status: 418,
            want_body: Some("\u{0}\u{1}\u{2}"),
            want_body_contains: "",
            want_headers: &[("set-cookie", "a=1")],
            want_outcome: Outcome::Ok,
        },
        Case {
            name: "v2 invalid JSON",
            status: 200,
            headers: &[],
            body: "{",
            mode: ApiGatewayV2,
            invocation: Sync,
            want_status: 502,
            want_body: None,
            want_body_contains: "not JSON",
            want_headers: &[],
            want_outcome: Outcome::MalformedResponse,
        },
        Case {
            name: "function error -> 502 without the stack trace",
            status: 200,
            headers: &[("x-amz-function-error", "Unhandled")],
            body: r#"{"errorMessage":"boom","errorType":"Error","trace":["at x"],"stackTrace":["at y"]}"#,
            mode: Passthrough,
            invocation: Sync,
            want_status: 502,
            want_body: Some(r#"{"errorMessage":"boom","errorType":"Error"}"#),
            want_body_contains: "",
            want_headers: &[("x-amz-function-error", "Unhandled")],
            want_outcome: Outcome::FunctionError,
        },
        Case {
            name: "function timeout -> 504",
            status: 200,
            headers: &[("x-amz-function-error", "Unhandled")],
            body: r#"{"errorMessage":"2026-11-25T13:00:00Z abc Task timed out after 3.00 seconds"}"#,
            mode: Envoy,
            invocation: Sync,
            want_status: 504,
            want_body: None,
            want_body_contains: "Task timed out",
            want_headers: &[],
            want_outcome: Outcome::FunctionTimeout,
        },
        Case {
            name: "async 202 with empty body",
            status: 202,
            headers: &[],
            body: "",
            mode: Passthrough,
            invocation: Async,
            want_status: 202,
            want_body: Some(""),
            want_body_contains: "",
            want_headers: &[],
            want_outcome: Outcome::Ok,
        },
        Case {
            name: "async answered 200 still 202",
            status: 200,
            headers: &[],
            body: "queued",
            mode: Passthrough,
            invocation: Async,
            want_status: 202,
            want_body: Some(""),
            want_body_contains: "",
            want_headers: &[],
            want_outcome: Outcome::Ok,
        },
        Case {
            name: "throttled with Retry-After",
            status: 429,
            headers: &[
                ("retry-after", "7"),
                ("x-amzn-errortype", "TooManyRequestsException"),
            ],
            body: r#"{"Reason":"ReservedFunctionConcurrentInvocationLimitExceeded","Type":"User","message":"Rate Exceeded."}"#,
            mode: Passthrough,
            invocation: Sync,
            want_status: 429,
            want_body: None,
            want_body_contains: "ReservedFunctionConcurrentInvocationLimitExceeded",
            want_headers: &[
                ("retry-after", "7"),
                (
                    "x-podcred-lambda-reason",
                    "ReservedFunctionConcurrentInvocationLimitExceeded",
                ),
            ],
            want_outcome: Outcome::Throttled,
        },
        Case {
            name: "throttled without Retry-After gets one",
            status: 429,
            headers: &[],
            body: "{}",
            mode: Envoy,
            invocation: Sync,
            want_status: 429,
            want_body: None,
            want_body_contains: "Throttled",
            want_headers: &[("retry-after", "1")],
            want_outcome: Outcome::Throttled,
        },
        Case {
            name: "missing function (serverless-offline shape)",
            status: 404,
            headers: &[("x-amzn-errortype", "ResourceNotFoundException")],
            body: r#"{"Message":"Function not found: nope","Type":"User"}"#,
            mode: Passthrough,
            invocation: Sync,
            want_status: 502,
            want_body: None,
            want_body_contains: "Function not found: nope",
            want_headers: &[],
            want_outcome: Outcome::FunctionNotFound,
        },
        Case {
            name: "missing function (moto shape)",
            status: 404,
            headers: &[],
            body: r#"{"__type": "ResourceNotFoundException", "message": "Function not found: arn:aws:lambda:us-east-1:123456789012:function:nosuchfn"}"#,
            mode: Passthrough,
            invocation: Sync,
            want_status: 502,
            want_body: None,
            want_body_contains: "FunctionNotFound",
            want_headers: &[],
            want_outcome: Outcome::FunctionNotFound,
        },
        Case {
            name: "denied",
            status: 403,
            headers: &[("x-amzn-errortype", "AccessDeniedException")],
            body: r#"{"message":"User: arn:aws:sts::123456789012:assumed-role/denied/s is not authorized to perform: lambda:InvokeFunction"}"#,
            mode: Passthrough,
            invocation: Sync,
            want_status: 502,
            want_body: None,
            want_body_contains: "not allowed to invoke the route's function",
            want_headers: &[],
            want_outcome: Outcome::AccessDenied,
        },
        Case {
            name: "bad signature",
            status: 403,
            headers: &[],
            body: r#"{"__type":"InvalidSignatureException","message":"The request signature we calculated does not match"}"#,
            mode: Passthrough,
            invocation: Sync,
            want_status: 502,
            want_body: None,
            want_body_contains: "CredentialsRejected",
            want_headers: &[],
            want_outcome: Outcome::CredentialsRejected,
        },
        Case {
            name: "updating function",
            status: 409,
            headers: &[("x-amzn-errortype", "ResourceConflictException")],
            body: r#"{"message":"pending"}"#,
            mode: Passthrough,
            invocation: Sync,
            want_status: 503,
            want_body: None,
            want_body_contains: "FunctionNotReady",
            want_headers: &[("retry-after", "1")],
            want_outcome: Outcome::NotReady,
        },
        Case {
            name: "too large",
            status: 413,
            headers: &[("x-amzn-errortype", "RequestTooLargeException")],
            body: r#"{"message":"Request must be smaller than 6291456 bytes"}"#,
            mode: Passthrough,
            invocation: Sync,
            want_status: 413,
            want_body: None,
            want_body_contains: "6291456",
            want_headers: &[],
            want_outcome: Outcome::TooLarge,
        },
        Case {
            name: "service error",
            status: 500,
            headers: &[("x-amzn-errortype", "ServiceException")],
            body: r#"{"message":"oops"}"#,
            mode: Passthrough,
            invocation: Sync,
            want_status: 502,
            want_body: None,
            want_body_contains: "HTTP 500 ServiceException",
            want_headers: &[],
            want_outcome: Outcome::LambdaError,
        },
    ]
}

#[test]
fn lambda_answers_map_to_client_responses_as_documented() {
    for case in cases() {
        let got = map_reply(
            &reply(case.status, case.headers, case.body),
            FUNCTION,
            case.mode,
            case.invocation,
        );
        assert_eq!(got.status, case.want_status, "{}: {:?}", case.name, got);
        assert_eq!(got.outcome, case.want_outcome, "{}", case.name);
        let body = String::from_utf8_lossy(&got.body);
        if let Some(exact) = case.want_body {
            assert_eq!(body, exact, "{}", case.name);
        }
        // What the client sees, or (for Lambda's own words) what the request's log line gets.
        let detail = got.detail().unwrap_or("");
        assert!(
            body.contains(case.want_body_contains) || detail.contains(case.want_body_contains),
            "{}: {body} / {detail}",
            case.name
        );
        for internal in ["arn:aws", "123456789012", "Lambda said"] {
            assert!(
                !body.contains(internal),
                "{}: the client must not see {internal:?}: {body}",
                case.name
            );
        }
        for (name, value) in case.want_headers {
            assert_eq!(
                got.header(name),
                Some(*value),
                "{}: header {name} in {:?}",
                case.name,
                got.headers
            );
        }
        assert!(
            got.header("x-amz-log-result").is_none(),
            "{}: X-Amz-Log-Result must never be forwarded",
            case.name
        );
        if got.outcome != Outcome::Ok {
            assert!(
                !body.contains("at y") && !body.contains("at x"),
                "{}: no stack traces",
                case.name
            );
        }
    }
}
