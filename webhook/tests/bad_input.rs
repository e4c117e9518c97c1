//! Bad input never panics and always gets a well-formed answer: random bytes, every truncation of a valid
//! review, random wrong-typed subtrees, deep nesting and huge strings (seeded, so failures reproduce).

#[path = "support/fixtures.rs"]
mod fixtures;

use std::sync::Arc;

use base64::Engine;
use fixtures::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use webhook::admission::{Admission, AdmissionReply, Outcome};

fn admission() -> Admission {
    let cache = CacheState {
        sts: Some(StsEntry {
            role_arn: "arn:aws:iam::111122223333:role/s3-reader".into(),
            audience: "sts.amazonaws.com".into(),
            use_regional_sts: true,
            token_expiration: 3600,
            inject_sidecar: None,
        }),
        ..Default::default()
    };
    let overrides = ConfigOverrides {
        region: Some("eu-west-1".into()),
        ..Default::default()
    };
    Admission::with_jitter(
        mutate_config(&overrides),
        Arc::new(FakeIdentities(cache)),
        Arc::new(|lo, _| lo),
    )
}

fn valid_review() -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u-1",
            "namespace": "default",
            "operation": "CREATE",
            "object": {
                "metadata": {"name": "p", "annotations": {"eks.amazonaws.com/skip-containers": "b"}},
                "spec": {
                    "serviceAccountName": "default",
                    "volumes": [{"name": "v", "emptyDir": {}}],
                    "initContainers": [{"name": "i", "image": "x"}],
                    "containers": [
                        {"name": "a", "image": "x", "env": [{"name": "X", "value": "1"}], "volumeMounts": [{"name": "v", "mountPath": "/v"}]},
                        {"name": "b", "image": "x"}
                    ]
                }
            }
        }
    })
}

/// A reply is well-formed: 200 with an AdmissionReview whose `response.allowed` is a bool (and a patch that
/// applies to the request's object, when there is one), or upstream's 415.
fn assert_well_formed(reply: &AdmissionReply, request_body: &[u8]) {
    if reply.status == 415 {
        assert_eq!(reply.outcome, Outcome::UnsupportedMediaType);
        return;
    }
    assert_eq!(reply.status, 200);
    let review: Value = serde_json::from_slice(&reply.body).expect("reply is JSON");
    let response = &review["response"];
    let allowed = response["allowed"].as_bool().expect("allowed is a bool");
    assert!(response["uid"].is_string());
    if !allowed {
        assert!(response["status"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        assert_eq!(reply.outcome, Outcome::Denied);
    }
    if let Some(patch) = response["patch"].as_str() {
        assert!(matches!(reply.outcome, Outcome::Mutated(_)));
        assert_eq!(response["patchType"], "JSONPatch");
        let patch = base64::engine::general_purpose::STANDARD
            .decode(patch)
            .unwrap();
        let request: Value = serde_json::from_slice(request_body).unwrap();
        apply_patch(&request["request"]["object"], &patch);
    }
}

fn handle(admission: &Admission, body: &[u8]) -> AdmissionReply {
    futures::executor::block_on(admission.handle(Some("application/json"), body))
}

#[test]
fn random_bytes() {
    let admission = admission();
    let mut rng = StdRng::seed_from_u64(0x5eed_0001);
    for _ in 0..2000 {
        let len = rng.random_range(0..512);
        let body: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        let reply = handle(&admission, &body);
        assert_eq!(reply.status, 200);
        let review: Value = serde_json::from_slice(&reply.body).expect("JSON reply");
        assert!(review["response"]["allowed"].is_boolean());
    }
}

#[test]
fn every_truncation_of_a_valid_review() {
    let admission = admission();
    let body = serde_json::to_vec(&valid_review()).unwrap();
    for cut in 0..body.len() {
        let reply = handle(&admission, &body[..cut]);
        assert_eq!(reply.status, 200, "cut at {cut}");
        let review: Value = serde_json::from_slice(&reply.body).unwrap();
        let allowed = review["response"]["allowed"].as_bool().unwrap();
        // Only the empty body and whitespace decode (to an empty review → "bad content").
        assert!(!allowed, "cut at {cut} was allowed");
    }
    let full = handle(&admission, &body);
    assert_well_formed(&full, &body);
    assert!(matches!(full.outcome, Outcome::Mutated(_)));
}

fn random_value(rng: &mut StdRng, depth: u32) -> Value {
    match rng.random_range(0..if depth > 2 { 4 } else { 6 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.random()),
        2 => Value::from(rng.random_range(-5i64..5)),
        3 => {
            Value::from(["", "a", "default", "0", "windows", "\u{0}", "é"][rng.random_range(0..7)])
        }
        4 => Value::Array(
            (0..rng.random_range(0..3))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        _ => {
            let keys = [
                "name",
                "env",
                "value",
                "volumeMounts",
                "containers",
                "labels",
                "x",
            ];
            Value::Object(
                (0..rng.random_range(0..3))
                    .map(|_| {
                        (
                            keys[rng.random_range(0..keys.len())].to_string(),
                            random_value(rng, depth + 1),
                        )
                    })
                    .collect(),
            )
        }
    }
}

/// Replace a random node of `doc` with `replacement`.
fn replace_random_node(doc: &mut Value, rng: &mut StdRng, replacement: Value) {
    let mut node = doc;
    loop {
        let children = match node {
            Value::Object(o) if !o.is_empty() => o.len(),
            Value::Array(a) if !a.is_empty() => a.len(),
            _ => break,
        };
        if rng.random_bool(0.25) {
            break;
        }
        let i = rng.random_range(0..children);
        node = match node {
            Value::Object(o) => o.values_mut().nth(i).unwrap(),
            Value::Array(a) => &mut a[i],
            _ => unreachable!(),
        };
    }
    *node = replacement;
}

#[test]
fn wrong_types_anywhere() {
    let admission = admission();
    let mut rng = StdRng::seed_from_u64(0x5eed_0002);
    let mut outcomes = std::collections::HashMap::new();
    for _ in 0..3000 {
        let mut review = valid_review();
        for _ in 0..rng.random_range(1..4) {
            let replacement = random_value(&mut rng, 0);
            replace_random_node(&mut review, &mut rng, replacement);
        }
        let body = serde_json::to_vec(&review).unwrap();
        let reply = handle(&admission, &body);
        assert_well_formed(&reply, &body);
        *outcomes.entry(format!("{:?}", reply.outcome)).or_insert(0) += 1;
    }
    // The generator reaches both the mutation and the denial paths (otherwise this test proves little).
    assert!(
        outcomes.contains_key("Denied") && outcomes.contains_key("Mutated(StsWebIdentity)"),
        "{outcomes:?}"
    );
}

#[test]
fn deeply_nested_json() {
    let admission = admission();
    for body in [
        "[".repeat(100_000).into_bytes(),
        "{\"a\":".repeat(100_000).into_bytes(),
        format!(
            r#"{{"request":{{"uid":"u","namespace":"default","object":{{"spec":{{"serviceAccountName":"default","containers":[{{"name":"c","x":{}}}]}}}}}}}}"#,
            "[".repeat(100_000)
        )
        .into_bytes(),
    ] {
        let reply = handle(&admission, &body);
        assert_eq!(reply.status, 200);
        assert_eq!(reply.outcome, Outcome::Denied);
        let review: Value = serde_json::from_slice(&reply.body).unwrap();
        assert!(review["response"]["status"]["message"].as_str().unwrap().contains("json parse error"));
    }
    // Moderately deep unknown fields (well under the parser's limit) are kept through the mutation.
    let mut review = valid_review();
    let mut deep = json!("leaf");
    for _ in 0..100 {
        deep = json!([deep]);
    }
    review["request"]["object"]["spec"]["containers"][0]["futureField"] = deep.clone();
    let body = serde_json::to_vec(&review).unwrap();
    let reply = handle(&admission, &body);
    assert_well_formed(&reply, &body);
    assert!(matches!(reply.outcome, Outcome::Mutated(_)));
}

#[test]
fn huge_strings() {
    let admission = admission();
    let mut review = valid_review();
    let huge = "x".repeat(4 * 1024 * 1024);
    review["request"]["object"]["metadata"]["annotations"]["big"] = Value::from(huge.clone());
    review["request"]["object"]["spec"]["containers"][0]["env"][0]["value"] = Value::from(huge);
    let body = serde_json::to_vec(&review).unwrap();
    let reply = handle(&admission, &body);
    assert_well_formed(&reply, &body);
    assert!(matches!(reply.outcome, Outcome::Mutated(_)));
    // A huge service-account name or uid is just a string.
    let mut review = valid_review();
    review["request"]["uid"] = Value::from("u".repeat(1 << 20));
    review["request"]["object"]["spec"]["serviceAccountName"] = Value::from("s".repeat(1 << 20));
    let body = serde_json::to_vec(&review).unwrap();
    assert_well_formed(&handle(&admission, &body), &body);
}

#[test]
fn invalid_utf8_and_odd_encodings() {
    let admission = admission();
    for body in [
        b"{\"request\":{\"uid\":\"\xff\xfe\"}}".to_vec(),
        b"\xef\xbb\xbf{}".to_vec(),                      // BOM
        b"{\"request\":{\"uid\":\"\\ud800\"}}".to_vec(), // lone surrogate escape
        b"{\"request\":1e999}".to_vec(),
        b"\x00".to_vec(),
    ] {
        let reply = handle(&admission, &body);
        assert_eq!(reply.status, 200);
        let review: Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(
            review["response"]["allowed"],
            false,
            "{:?}",
            String::from_utf8_lossy(&body)
        );
    }
}

#[test]
fn odd_content_types_never_panic() {
    let admission = admission();
    let body = serde_json::to_vec(&valid_review()).unwrap();
    let mut rng = StdRng::seed_from_u64(0x5eed_0003);
    for _ in 0..500 {
        let len = rng.random_range(0..40);
        let ct: String = (0..len)
            .map(|_| char::from(rng.random_range(0x20u8..0x7f)))
            .collect();
        let reply = futures::executor::block_on(admission.handle(Some(&ct), &body));
        assert!(reply.status == 200 || reply.status == 415);
        assert_well_formed(&reply, &body);
    }
}
