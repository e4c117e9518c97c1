//! The pure status computation, case by case: each `gateway/tests/fixtures/status/*.yaml` holds the cluster's
//! objects (as the API server returns them, status included) and, in a last document `expect:`, every status
//! update that must come out — kind, object and the status keys written — in order. Conditions' times are
//! compared too: `now` is [`NOW`].

use std::path::PathBuf;

use serde_json::{json, Value};

use super::*;

const NOW: &str = "2026-11-27T12:00:00Z";

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/status")
}

/// The snapshot and the expected updates of a fixture file.
fn load(text: &str) -> (Snapshot, Value) {
    let mut snapshot = Snapshot::default();
    let mut expect = None;
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        let value: Value = serde::Deserialize::deserialize(document).expect("YAML");
        if let Some(e) = value.get("expect") {
            expect = Some(e.clone());
            continue;
        }
        let list = match value["kind"].as_str() {
            Some("GatewayClass") => &mut snapshot.gateway_classes,
            Some("Gateway") => &mut snapshot.gateways,
            Some("HTTPRoute") => &mut snapshot.http_routes,
            Some("Backend") => &mut snapshot.backends,
            Some("Secret") => &mut snapshot.secrets,
            Some("ReferenceGrant") => &mut snapshot.reference_grants,
            Some("Namespace") => &mut snapshot.namespaces,
            other => panic!("unexpected kind {other:?}"),
        };
        list.push(value);
    }
    (snapshot, expect.expect("an `expect:` document"))
}

fn scope() -> Scope {
    Scope {
        controller_name: "podcred.dev/gateway".into(),
        gateway: None,
    }
}

fn updates(snapshot: &Snapshot, scope: &Scope) -> Vec<StatusUpdate> {
    let (_, config) = super::super::compile_snapshot(snapshot, scope, &LoadOptions::default());
    let findings = config.expect("cluster mode compiles").findings;
    desired(snapshot, scope, &findings, NOW)
}

fn as_data(updates: &[StatusUpdate]) -> Value {
    Value::Array(
        updates
            .iter()
            .map(|u| {
                let object = match &u.namespace {
                    Some(ns) => format!("{ns}/{}", u.name),
                    None => u.name.clone(),
                };
                json!({"kind": u.kind, "object": object, "status": u.status})
            })
            .collect(),
    )
}

/// Applies `updates` to the snapshot, as the API server would (each status key replaced).
fn applied(mut snapshot: Snapshot, updates: &[StatusUpdate]) -> Snapshot {
    for update in updates {
        let list = match update.kind {
            "GatewayClass" => &mut snapshot.gateway_classes,
            "Gateway" => &mut snapshot.gateways,
            _ => &mut snapshot.http_routes,
        };
        let object = list
            .iter_mut()
            .find(|o| {
                o["metadata"]["name"] == update.name.as_str()
                    && o["metadata"]["namespace"].as_str() == update.namespace.as_deref()
            })
            .expect("the updated object");
        if !object["status"].is_object() {
            object["status"] = json!({});
        }
        for (key, value) in &update.status {
            object["status"][key] = value.clone();
        }
    }
    snapshot
}

#[test]
fn fixtures_produce_exactly_the_expected_status_updates_and_applying_them_converges() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    let mut failures = Vec::new();
    for file in files {
        let name = file
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let (snapshot, expect) = load(&std::fs::read_to_string(&file).expect("fixture"));
        let got = updates(&snapshot, &scope());
        let data = as_data(&got);
        if data != expect {
            failures.push(format!(
                "{name}: got\n{}",
                serde_yaml_ng::to_string(&json!({"expect": data})).unwrap_or_default()
            ));
            continue;
        }
        // Written once, nothing more to write: the computation is idempotent.
        let again = updates(&applied(snapshot, &got), &scope());
        if !again.is_empty() {
            failures.push(format!(
                "{name}: a second round would write again: {:#}",
                as_data(&again)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_transition_time_is_kept_while_the_status_stays_and_renewed_when_it_flips() {
    let (snapshot, _) =
        load(&std::fs::read_to_string(fixtures_dir().join("seed.yaml")).expect("seed fixture"));
    let first = updates(&snapshot, &scope());
    let mut settled = applied(snapshot, &first);
    // Everything was written at NOW; pretend that was long ago.
    let old = "2020-01-01T00:00:00Z";
    let text = serde_json::to_string(&settled.http_routes).expect("json");
    settled.http_routes = serde_json::from_str(&text.replace(NOW, old)).expect("json");

    // The Backend goes: ResolvedRefs flips (new time), Accepted stays True (old time kept).
    settled.backends.clear();
    let flipped = updates(&settled, &scope());
    let route = flipped
        .iter()
        .find(|u| u.kind == "HTTPRoute")
        .expect("the route's status changes");
    let conditions = &route.status["parents"][0]["conditions"];
    assert_eq!(conditions[0]["type"], "Accepted");
    assert_eq!(conditions[0]["lastTransitionTime"], old);
    assert_eq!(conditions[1]["type"], "ResolvedRefs");
    assert_eq!(conditions[1]["status"], "False");
    assert_eq!(conditions[1]["reason"], "BackendNotFound");
    assert_eq!(conditions[1]["lastTransitionTime"], NOW);
}

#[test]
fn a_replica_scoped_to_one_gateway_leaves_the_other_gateways_and_their_entries_alone() {
    let (mut snapshot, _) =
        load(&std::fs::read_to_string(fixtures_dir().join("seed.yaml")).expect("seed fixture"));
    let mut second = snapshot.gateways[0].clone();
    second["metadata"]["name"] = json!("second");
    snapshot.gateways.push(second);
    snapshot.http_routes[0]["spec"]["parentRefs"]
        .as_array_mut()
        .expect("parentRefs")
        .push(json!({"name": "second", "namespace": "kgateway-system"}));
    let only_second = Scope {
        gateway: Some("kgateway-system/second".into()),
        ..scope()
    };
    let written = updates(&snapshot, &only_second);
    let objects: Vec<String> = written
        .iter()
        .map(|u| format!("{} {}", u.kind, u.name))
        .collect();
    assert_eq!(
        objects,
        [
            "GatewayClass kgateway",
            "Gateway second",
            "HTTPRoute lambda"
        ]
    );
    let parents = written[2].status["parents"].as_array().expect("parents");
    assert_eq!(parents.len(), 1, "{parents:?}");
    assert_eq!(parents[0]["parentRef"]["name"], "second");

    // The unscoped writer adds the entry for `http` and keeps the one for `second`.
    let settled = applied(snapshot, &written);
    let all = updates(&settled, &scope());
    let route = all.iter().find(|u| u.kind == "HTTPRoute").expect("route");
    let names: Vec<&Value> = route.status["parents"]
        .as_array()
        .expect("parents")
        .iter()
        .map(|p| &p["parentRef"]["name"])
        .collect();
    assert_eq!(names, [&json!("http"), &json!("second")]);
}
