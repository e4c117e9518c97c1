//! Fuzz targets for the webhook, credproxy and gateway, as plain functions: `fuzz_targets/*.rs` hand them
//! libFuzzer's input (`make fuzz`, nightly), and `tests/replay.rs` runs every committed corpus and regression
//! input through them under `cargo test` (stable). Each function panics when an invariant breaks.
//!
//! | target | input | invariants beyond "no panic" |
//! | --- | --- | --- |
//! | [`webhook_admission`] | content-type selector byte + AdmissionReview bytes | a well-formed reply (200 + review with `allowed`/`uid`, or 415); `uid` echoed; a patch is base64 JSON Patch that applies to `request.object`; the patched pod sent again comes back unchanged |
//! | [`webhook_mutate`] | identity selector byte + pod JSON | the patch applies to its input; the mutated pod mutated again is unchanged |
//! | [`webhook_inject`] | multi-document YAML | output is YAML; injecting the output again changes nothing |
//! | [`go_parsers`] | text | `go_duration`/`go_int` round-trip through their canonical form; CSV records round-trip; `clean_path` is idempotent |
//! | [`credproxy_config`] | `--config` YAML | accepted, or refused with at least one non-empty problem line |
//! | [`credproxy_sts`] | status selector byte + STS response body | credentials render to the container-credentials JSON, or a classified failure whose message never carries the web-identity token |
//!
//! | [`gateway_config`] | YAML | a configuration, or one-line problems; the same text compiles the same way twice; every Backend has an ARN and an Invoke URI |
//! | [`gateway_event`] | request-mode byte + `path?query`, header lines, blank line, body | envelope events are JSON objects; a raw event is the body itself (or `{}`), refused only when the body is not JSON |
//! | [`gateway_response`] | mode/invocation/status byte + the function's output | a final status (200–599), valid header names and values, no hop-by-hop or framing header from the function, no body on 204/304, gateway errors as JSON |

#![forbid(unsafe_code)]

mod gateway;
pub use gateway::{gateway_config, gateway_event, gateway_response};

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use serde::Deserialize as _;
use serde_json::Value;
use webhook::admission::{Admission, Outcome};
use webhook::identity::{BoxFuture, CommonConfig, IdentitySource, StsIdentity, StsLookup};
use webhook::mutate::{Identity, MutateConfig};

// === webhook ===

/// The server's mutation settings, with the sidecar enabled (parsed from flags, as `main` does).
fn webhook_config() -> &'static webhook::config::Config {
    static CONFIG: OnceLock<webhook::config::Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        match webhook::config::parse([
            "webhook",
            "--in-cluster=false",
            "--aws-default-region=eu-west-1",
            "--sidecar-image=public.ecr.aws/podcred/credproxy:fuzz",
        ]) {
            Ok(webhook::config::Command::Serve(config)) => *config,
            other => panic!("fuzz flags rejected: {other:?}"),
        }
    })
}

fn mutate_config() -> MutateConfig {
    webhook_config().mutate_config()
}

/// ServiceAccounts by name: `cc*` are in the container-credentials file, `missing*` are unknown, `norole*`
/// have no role, `sidecar*` ask for the sidecar, anything else has a role.
struct FuzzIdentities;

fn sts_identity(service_account: &str) -> StsLookup {
    if service_account.starts_with("missing") {
        return StsLookup::NotFound;
    }
    StsLookup::Found(StsIdentity {
        role_arn: if service_account.starts_with("norole") {
            String::new()
        } else {
            "arn:aws:iam::111122223333:role/fuzz".into()
        },
        audience: if service_account.contains("noaud") {
            String::new()
        } else {
            "sts.amazonaws.com".into()
        },
        use_regional_sts: service_account.contains("regional"),
        token_expiration: 3600,
        inject_sidecar: service_account.starts_with("sidecar").then_some(true),
    })
}

impl IdentitySource for FuzzIdentities {
    fn container_credentials(&self, _namespace: &str, service_account: &str) -> bool {
        service_account.starts_with("cc")
    }

    fn common_config(&self, _namespace: &str, _service_account: &str) -> CommonConfig {
        CommonConfig::default()
    }

    fn sts_identity<'a>(
        &'a self,
        _namespace: &'a str,
        service_account: &'a str,
    ) -> BoxFuture<'a, StsLookup> {
        Box::pin(async move { sts_identity(service_account) })
    }
}

fn admission() -> &'static Admission {
    static ADMISSION: OnceLock<Admission> = OnceLock::new();
    ADMISSION.get_or_init(|| {
        Admission::with_jitter(
            mutate_config(),
            Arc::new(FuzzIdentities),
            Arc::new(|lo, _| lo),
        )
    })
}

const CONTENT_TYPES: [Option<&str>; 4] = [
    Some("application/json"),
    Some("application/json; charset=utf-8"),
    None,
    Some("text/plain"),
];

fn apply(pod: &Value, patch: &[u8]) -> Value {
    let patch: json_patch::Patch = serde_json::from_slice(patch).unwrap_or_else(|e| {
        panic!(
            "patch is not a JSON Patch ({e}): {}",
            String::from_utf8_lossy(patch)
        )
    });
    let mut patched = pod.clone();
    json_patch::patch(&mut patched, &patch)
        .unwrap_or_else(|e| panic!("patch does not apply to its input ({e}): {pod}"));
    patched
}

/// Checks one reply; returns the patched pod when the reply carried a patch.
fn check_reply(
    request: Option<&Value>,
    reply: &webhook::admission::AdmissionReply,
) -> Option<Value> {
    if reply.status == 415 {
        assert_eq!(reply.outcome, Outcome::UnsupportedMediaType);
        return None;
    }
    assert_eq!(reply.status, 200, "status");
    let review: Value = serde_json::from_slice(&reply.body).expect("the reply is JSON");
    let response = &review["response"];
    let allowed = response["allowed"]
        .as_bool()
        .expect("response.allowed is a bool");
    assert!(
        response["uid"].is_string(),
        "response.uid is a string: {review}"
    );
    if let Some(uid) = request.and_then(|r| r["request"]["uid"].as_str()) {
        assert_eq!(response["uid"], uid, "uid echoed");
    }
    if !allowed {
        assert_eq!(reply.outcome, Outcome::Denied);
        assert!(
            response["status"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "a denial says why: {review}"
        );
    }
    let patch = response["patch"].as_str()?;
    assert!(matches!(reply.outcome, Outcome::Mutated(_)));
    assert_eq!(response["patchType"], "JSONPatch");
    let patch = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .expect("patch is base64");
    let request = request.expect("a patch answers a parsed request");
    Some(apply(&request["request"]["object"], &patch))
}

/// AdmissionReview bytes → reply, end to end (first byte picks the Content-Type).
pub fn webhook_admission(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[usize::from(selector) % CONTENT_TYPES.len()];
    let admission = admission();
    let reply = futures::executor::block_on(admission.handle(content_type, body));
    let request: Option<Value> = serde_json::from_slice(body).ok();
    let Some(patched) = check_reply(request.as_ref(), &reply) else {
        return;
    };
    // The mutated pod, admitted again, comes back unchanged.
    let mut again = request.expect("patched from a request");
    again["request"]["object"] = patched.clone();
    let body = serde_json::to_vec(&again).expect("JSON");
    let reply = futures::executor::block_on(admission.handle(content_type, &body));
    if let Some(twice) = check_reply(Some(&again), &reply) {
        assert_eq!(twice, patched, "a mutated pod mutated again changed");
    }
}

/// An arbitrary pod (JSON) mutated for an identity chosen by the first byte.
pub fn webhook_mutate(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let Ok(pod) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let identity = match selector % 4 {
        0 => Identity::ContainerCredentials(CommonConfig::default()),
        1 => Identity::ContainerCredentials(CommonConfig {
            use_regional_sts: true,
            token_expiration: 7200,
        }),
        2 => match sts_identity("sidecar-regional") {
            StsLookup::Found(identity) => Identity::Sts(identity),
            StsLookup::NotFound => unreachable!(),
        },
        _ => match sts_identity("plain-noaud") {
            StsLookup::Found(identity) => Identity::Sts(identity),
            StsLookup::NotFound => unreachable!(),
        },
    };
    let config = mutate_config();
    let mut jitter = |lo: i64, _hi: i64| lo;
    let Ok(mutation) = webhook::mutate::mutate(&pod, &identity, &config, &mut jitter) else {
        return;
    };
    let mutated = apply(&pod, &mutation.patch_json());
    let again = webhook::mutate::mutate(&mutated, &identity, &config, &mut jitter)
        .unwrap_or_else(|e| panic!("the mutated pod is refused ({e}): {mutated}"));
    assert_eq!(
        apply(&mutated, &again.patch_json()),
        mutated,
        "a mutated pod mutated again changed"
    );
}

fn inject_config() -> &'static webhook::config::InjectConfig {
    static CONFIG: OnceLock<webhook::config::InjectConfig> = OnceLock::new();
    CONFIG.get_or_init(|| {
        match webhook::config::parse([
            "webhook",
            "inject",
            "--in-cluster=false",
            "--sidecar-image=public.ecr.aws/podcred/credproxy:fuzz",
            "-f",
            "-",
        ]) {
            Ok(webhook::config::Command::Inject(config)) => *config,
            other => panic!("fuzz flags rejected: {other:?}"),
        }
    })
}

/// `webhook inject` on arbitrary YAML.
pub fn webhook_inject(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = &inject_config().config;
    let run = |text: &str| {
        let inputs = [webhook::inject::Input {
            name: "fuzz".into(),
            text: text.to_owned(),
        }];
        webhook::inject::inject(config, &inputs, HashSet::new(), &mut |lo, _| lo)
    };
    let Ok((output, _)) = run(text) else {
        return;
    };
    for document in serde_yaml_ng::Deserializer::from_str(&output) {
        serde_yaml_ng::Value::deserialize(document)
            .unwrap_or_else(|e| panic!("output is not YAML ({e}):\n{output}"));
    }
    let (again, _) = run(&output).unwrap_or_else(|e| panic!("own output refused ({e}):\n{output}"));
    assert_eq!(again, output, "injecting the output again changed it");
}

// === Go-compatible parsers ===

fn csv_encode(fields: &[String]) -> String {
    fields
        .iter()
        .map(|f| format!("\"{}\"", f.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(",")
}

/// The webhook's Go-compatible parsers on arbitrary text.
pub fn go_parsers(data: &[u8]) {
    use webhook::go;
    let text = String::from_utf8_lossy(data);
    if let Ok(duration) = go::go_duration(&text) {
        let canonical = format!("{}ns", duration.0);
        assert_eq!(go::go_duration(&canonical), Ok(duration), "{text:?}");
    }
    if let Ok(value) = go::go_int(&text) {
        assert_eq!(go::go_int(&value.to_string()), Ok(value), "{text:?}");
        assert_eq!(
            go::go_int32(&text).ok().map(i64::from),
            i32::try_from(value).ok().map(i64::from)
        );
    }
    if let Some(value) = go::parse_go_int64_base10(&text) {
        assert_eq!(
            text.trim_start_matches('+').parse::<i64>().ok(),
            Some(value),
            "{text:?}"
        );
    }
    assert_eq!(go::parse_bool(&text).is_some(), go::go_bool(&text).is_ok());
    if let Some(fields) = go::csv_first_record(&text) {
        assert!(!fields.is_empty());
        let fields: Vec<String> = fields.into_iter().map(|f| f.replace('\r', "")).collect();
        if fields.iter().all(|f| !f.contains('\n')) {
            assert_eq!(
                go::csv_first_record(&csv_encode(&fields)),
                Some(fields),
                "{text:?}"
            );
        }
    }
    let cleaned = go::clean_path(&text);
    assert!(!cleaned.is_empty());
    assert_eq!(go::clean_path(&cleaned), cleaned, "{text:?}");
    assert!(!cleaned.contains("//"), "{cleaned:?}");
    assert_eq!(cleaned.starts_with('/'), text.starts_with('/'), "{text:?}");
}

// === credproxy ===

fn credproxy_options() -> &'static credproxy::config::Options {
    static OPTIONS: OnceLock<credproxy::config::Options> = OnceLock::new();
    OPTIONS.get_or_init(|| {
        use clap::Parser as _;
        credproxy::config::Cli::try_parse_from(["credproxy", "--config", "fuzz.yaml"])
            .expect("fuzz flags")
            .options
    })
}

/// credproxy's `--config` file.
pub fn credproxy_config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match credproxy::config::resolve_with_file(
        credproxy_options(),
        credproxy::config::Mode::Serve,
        Some(&text),
    ) {
        Ok(settings) => assert!(
            !settings.roles.is_empty(),
            "a config without roles was accepted"
        ),
        Err(problems) => {
            assert!(!problems.is_empty(), "refused without a reason");
            assert!(
                problems.iter().all(|p| !p.trim().is_empty()),
                "{problems:?}"
            );
        }
    }
}

/// An STS answer served in process: the fuzz input.
#[derive(Debug, Clone)]
struct Canned {
    status: u16,
    body: Vec<u8>,
}

impl aws_smithy_runtime_api::client::http::HttpConnector for Canned {
    fn call(
        &self,
        _request: aws_smithy_runtime_api::client::orchestrator::HttpRequest,
    ) -> aws_smithy_runtime_api::client::http::HttpConnectorFuture {
        let status =
            aws_smithy_runtime_api::http::StatusCode::try_from(self.status).expect("status");
        let response = aws_smithy_runtime_api::http::Response::new(
            status,
            aws_smithy_types::body::SdkBody::from(self.body.clone()),
        );
        aws_smithy_runtime_api::client::http::HttpConnectorFuture::ready(Ok(response))
    }
}

impl aws_smithy_runtime_api::client::http::HttpClient for Canned {
    fn http_connector(
        &self,
        _settings: &aws_smithy_runtime_api::client::http::HttpConnectorSettings,
        _components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
    ) -> aws_smithy_runtime_api::client::http::SharedHttpConnector {
        aws_smithy_runtime_api::client::http::SharedHttpConnector::new(self.clone())
    }
}

const STS_STATUSES: [u16; 6] = [200, 200, 400, 403, 500, 503];
const WEB_IDENTITY_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.fuzz-web-identity-token.sig";

/// STS `AssumeRoleWithWebIdentity` answers (first byte picks the HTTP status), parsed by aws-sdk-sts and
/// turned into served credentials by credproxy.
pub fn credproxy_sts(data: &[u8]) {
    use credproxy::exchange::Exchanger as _;
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    });
    let canned = Canned {
        status: STS_STATUSES[usize::from(selector) % STS_STATUSES.len()],
        body: body.to_vec(),
    };
    let endpoint = credproxy::exchange::StsEndpoint {
        region: "us-east-1".into(),
        url: Some("http://sts.fuzz.invalid".into()),
        attempt_timeout: std::time::Duration::from_secs(5),
        connect_timeout: std::time::Duration::from_secs(1),
    };
    let request = credproxy::exchange::AssumeRequest {
        role_arn: "arn:aws:iam::111122223333:role/fuzz".into(),
        session_name: "fuzz".into(),
        duration_seconds: None,
        policy: None,
        policy_arns: Vec::new(),
    };
    let result = runtime.block_on(async {
        let exchanger = credproxy::exchange::StsExchanger::with_http_client(
            &endpoint,
            request,
            aws_sdk_sts::config::SharedHttpClient::new(canned),
        );
        exchanger.exchange(WEB_IDENTITY_TOKEN).await
    });
    match result {
        Ok(credentials) => {
            let served = credproxy::credentials::Served::render(&credentials, None);
            let json: Value =
                serde_json::from_slice(&served.body).expect("served credentials are JSON");
            for field in ["AccessKeyId", "SecretAccessKey", "Token", "Expiration"] {
                assert!(json[field].is_string(), "{field} missing");
            }
            let expiration = json["Expiration"].as_str().unwrap_or_default();
            assert!(
                expiration.len() == 20 && expiration.ends_with('Z'),
                "Expiration not YYYY-MM-DDTHH:MM:SSZ: {expiration:?}"
            );
        }
        Err(failure) => {
            assert!(!failure.code.is_empty());
            assert!(
                !failure.message.contains(WEB_IDENTITY_TOKEN),
                "the web-identity token leaked into a failure: {}",
                failure.message
            );
            assert!(matches!(failure.kind.http_status(), 401..=599));
        }
    }
}
