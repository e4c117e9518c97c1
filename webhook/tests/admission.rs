//! The HTTP handler cases of upstream's handler_test.go (reference §8.2) plus podcred's envelope cases, as
//! data under `tests/fixtures/admission/<case>/`: `case.yaml` (cache state, Content-Type, expected status),
//! `request.json` (the raw body; absent = no body), `expected_response.json` (compared semantically; a
//! returned patch is decoded, applied to `request.object` and compared with `expected_pod.yaml`) or
//! `expected_response.txt` (compared byte for byte).

#[path = "support/fixtures.rs"]
mod fixtures;

use std::sync::Arc;

use base64::Engine;
use fixtures::*;
use serde_json::Value;
use webhook::admission::{Admission, Mode, Outcome};

fn admission(case: &CaseFile) -> Admission {
    Admission::with_jitter(
        mutate_config(&case.config),
        Arc::new(FakeIdentities(case.cache.clone())),
        Arc::new(|lo, _| lo),
    )
}

fn run_case(name: &str) {
    let dir = fixtures_dir("admission").join(name);
    let case: CaseFile = read_yaml(&dir.join("case.yaml"));
    let body = std::fs::read(dir.join("request.json")).unwrap_or_default();
    let reply =
        futures::executor::block_on(admission(&case).handle(case.content_type.as_deref(), &body));
    assert_eq!(Some(reply.status), case.status, "{name}: status");

    if let Ok(text) = std::fs::read_to_string(dir.join("expected_response.txt")) {
        assert_eq!(String::from_utf8_lossy(&reply.body), text, "{name}: body");
        assert_eq!(reply.content_type, "text/plain; charset=utf-8");
        assert_eq!(reply.outcome, Outcome::UnsupportedMediaType);
        return;
    }
    assert_eq!(reply.content_type, "application/json", "{name}");
    let mut actual: Value = serde_json::from_slice(&reply.body).expect("response is JSON");
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected_response.json")).unwrap())
            .expect("expected_response.json");
    let patch = actual["response"]
        .as_object_mut()
        .and_then(|r| r.remove("patch"));
    match (
        patch,
        std::fs::read_to_string(dir.join("expected_pod.yaml")).ok(),
    ) {
        (Some(Value::String(b64)), Some(expected_pod)) => {
            let patch = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("base64 patch");
            let request: Value = serde_json::from_slice(&body).unwrap();
            let mutated = apply_patch(&request["request"]["object"], &patch);
            let expected_pod: Value = serde_yaml_ng::from_str(&expected_pod).unwrap();
            assert_same_pod(name, &mutated, &expected_pod);
            assert_eq!(
                reply.outcome,
                Outcome::Mutated(Mode::StsWebIdentity),
                "{name}"
            );
        }
        (None, None) => {
            let allowed = expected["response"]["allowed"].as_bool() == Some(true);
            let want = if allowed {
                Outcome::NotMutated
            } else {
                Outcome::Denied
            };
            assert_eq!(reply.outcome, want, "{name}");
        }
        (patch, pod) => panic!(
            "{name}: patch {patch:?} vs expected pod present: {}",
            pod.is_some()
        ),
    }
    assert_eq!(actual, expected, "{name}: response envelope");
}

macro_rules! fixture_tests {
    ($($test:ident => $dir:literal),* $(,)?) => {
        $( #[test] fn $test() { run_case($dir); } )*
        const LISTED: &[&str] = &[$($dir),*];
    };
}

fixture_tests! {
    nil_body => "nil-body",
    no_request => "no-request",
    bad_content_type => "bad-content-type",
    invalid_json => "invalid-json",
    invalid_pod_bytes => "invalid-pod-bytes",
    valid_request_success_without_volumes => "valid-request-success-without-volumes",
    valid_request_v1_typemeta_echoed => "valid-request-v1-typemeta-echoed",
    improvement_charset_content_type => "improvement-charset-content-type",
    charset_not_utf8 => "charset-not-utf8",
    missing_content_type => "missing-content-type",
    v1beta1_typemeta_echoed => "v1beta1-typemeta-echoed",
    request_namespace_overrides_pod => "request-namespace-overrides-pod",
    not_mutated_without_role => "not-mutated-without-role",
    not_mutated_sa_missing => "not-mutated-sa-missing",
    missing_object => "missing-object",
    review_is_an_array => "review-is-an-array",
    null_review => "null-review",
    containers_wrong_type => "containers-wrong-type",
}

#[test]
fn every_fixture_directory_is_listed() {
    let mut listed: Vec<String> = LISTED.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(case_dirs("admission"), listed);
}

#[test]
fn error_envelope_is_byte_identical_to_upstream() {
    // handler_test.go compares these bodies byte for byte.
    let case: CaseFile = read_yaml(&fixtures_dir("admission").join("nil-body/case.yaml"));
    let reply = futures::executor::block_on(admission(&case).handle(Some("application/json"), b""));
    assert_eq!(
        String::from_utf8(reply.body).unwrap(),
        r#"{"response":{"uid":"","allowed":false,"status":{"metadata":{},"message":"bad content"}}}"#
    );
}

#[test]
fn mutated_envelope_field_order_matches_upstream() {
    let dir = fixtures_dir("admission").join("valid-request-v1-typemeta-echoed");
    let case: CaseFile = read_yaml(&dir.join("case.yaml"));
    let body = std::fs::read(dir.join("request.json")).unwrap();
    let reply =
        futures::executor::block_on(admission(&case).handle(Some("application/json"), &body));
    let text = String::from_utf8(reply.body).unwrap();
    let prefix = r#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","response":{"uid":"918ef1dc-928f-4525-99ef-988389f263c3","allowed":true,"patch":""#;
    assert!(text.starts_with(prefix), "{text}");
    assert!(text.ends_with(r#"","patchType":"JSONPatch"}}"#), "{text}");
}

#[test]
fn content_type_rules() {
    use webhook::admission::is_json_content_type as ok;
    assert!(ok(Some("application/json")));
    assert!(ok(Some("application/json; charset=utf-8")));
    assert!(ok(Some("Application/JSON;charset=\"UTF-8\"")));
    assert!(!ok(Some("application/json; charset=iso-8859-1")));
    assert!(!ok(Some("application/jsonx")));
    assert!(!ok(Some("text/json")));
    assert!(!ok(Some("")));
    assert!(!ok(None));
}
