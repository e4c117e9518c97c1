use serde_json::{json, Value};

use super::*;
use crate::cluster::compile_snapshot;
use crate::config::LoadOptions;

fn class(name: &str, controller: &str) -> Value {
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
           "metadata": {"name": name}, "spec": {"controllerName": controller}})
}

fn gateway(ns: &str, name: &str, class: &str, port: u16) -> Value {
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
           "metadata": {"name": name, "namespace": ns, "resourceVersion": "7", "uid": "u1",
                        "managedFields": [{"manager": "kubectl"}]},
           "spec": {"gatewayClassName": class,
                    "listeners": [{"name": "http", "protocol": "HTTP", "port": port}]},
           "status": {"conditions": []}})
}

fn route(ns: &str, name: &str, created: &str, parents: Value, path: &str, backend: &str) -> Value {
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
           "metadata": {"name": name, "namespace": ns, "creationTimestamp": created},
           "spec": {"parentRefs": parents,
                    "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": path}}],
                               "backendRefs": [{"name": backend, "group": "gateway.kgateway.dev", "kind": "Backend"}]}]}})
}

fn backend(ns: &str, name: &str, secret: Option<&str>) -> Value {
    let mut aws = json!({"region": "us-east-1", "accountId": "123456789012",
                         "lambda": {"functionName": "echo"}});
    if let Some(secret) = secret {
        aws["auth"] = json!({"type": "Secret", "secretRef": {"name": secret}});
    }
    json!({"apiVersion": "gateway.kgateway.dev/v1alpha1", "kind": "Backend",
           "metadata": {"name": name, "namespace": ns}, "spec": {"type": "AWS", "aws": aws}})
}

fn secret(ns: &str, name: &str) -> Value {
    // What the API server sends for a `kubectl apply`d Secret: the values are also in the annotation.
    json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
           "metadata": {"name": name, "namespace": ns, "annotations": {
               "kubectl.kubernetes.io/last-applied-configuration": "{\"stringData\":{\"secretKey\":\"TOPSECRETVALUE\"}}",
               "team": "a"}},
           "data": {"accessKey": "QUtJQUVYQU1QTEU=", "secretKey": "VE9QU0VDUkVUVkFMVUU="}})
}

fn scope() -> Scope {
    Scope {
        controller_name: "podcred.dev/gateway".into(),
        gateway: None,
    }
}

/// Ours: class `podcred` → Gateway ns/http (8080), route `lambda` → Backend `lambda` (Secret `keys`).
/// Theirs: class `kgateway` (another controller) → Gateway ns/other, route `theirs` → Backend `theirs`
/// (whose Secret is missing: it would be an error if it were compiled).
fn cluster() -> Snapshot {
    Snapshot {
        gateway_classes: vec![
            class("podcred", "podcred.dev/gateway"),
            class("kgateway", "kgateway.dev/kgateway"),
        ],
        gateways: vec![
            gateway("ns", "http", "podcred", 8080),
            gateway("ns", "other", "kgateway", 8080),
        ],
        http_routes: vec![
            route(
                "ns",
                "lambda",
                "2026-01-02T00:00:00Z",
                json!([{"name": "http"}]),
                "/echo",
                "lambda",
            ),
            route(
                "ns",
                "theirs",
                "2026-01-01T00:00:00Z",
                json!([{"name": "other"}]),
                "/theirs",
                "theirs",
            ),
        ],
        backends: vec![
            backend("ns", "lambda", Some("keys")),
            backend("ns", "theirs", Some("gone")),
        ],
        secrets: vec![secret("ns", "keys"), secret("ns", "unrelated")],
        ..Snapshot::default()
    }
}

fn paths(config: &crate::config::Config) -> Vec<String> {
    config
        .routes
        .rules()
        .iter()
        .map(|r| format!("{}:{:?}", r.route, r.matches))
        .collect()
}

#[test]
fn only_gateways_of_our_class_their_routes_backends_and_secrets_are_selected() {
    let selection = select(&cluster(), &scope());
    assert!(selection.problems.is_empty(), "{:?}", selection.problems);
    assert_eq!(selection.gateways, ["ns/http"]);
    let objects = &selection.objects;
    let ids = |metas: Vec<&crate::config::ObjectMeta>| -> Vec<String> {
        metas.iter().map(|m| m.id()).collect()
    };
    assert_eq!(
        ids(objects.gateways.iter().map(|o| &o.metadata).collect()),
        ["ns/http"]
    );
    assert_eq!(
        ids(objects.http_routes.iter().map(|o| &o.metadata).collect()),
        ["ns/lambda"]
    );
    assert_eq!(
        ids(objects.backends.iter().map(|o| &o.metadata).collect()),
        ["ns/lambda"]
    );
    assert_eq!(
        ids(objects.secrets.iter().map(|o| &o.metadata).collect()),
        ["ns/keys"]
    );

    let (_, config) = compile_snapshot(&cluster(), &scope(), &LoadOptions::default());
    let config =
        config.expect("our objects compile; theirs (with a missing Secret) are not compiled");
    assert_eq!(config.listener_port, Some(8080));
    assert_eq!(config.routes.rules().len(), 1);
    assert_eq!(config.backends.len(), 1);
}

#[test]
fn a_route_attached_to_both_classes_keeps_only_our_parent() {
    let mut cluster = cluster();
    cluster.http_routes[0]["spec"]["parentRefs"] = json!([
        {"name": "other"},
        {"name": "http", "namespace": "ns", "group": "gateway.networking.k8s.io", "kind": "Gateway"},
        {"name": "missing"}
    ]);
    let (_, config) = compile_snapshot(&cluster, &scope(), &LoadOptions::default());
    let config = config.expect("compiles");
    assert!(
        config.findings.errors.is_empty(),
        "{:?}",
        config.findings.errors
    );
    let parents = &config.findings.parents["ns/lambda"];
    assert_eq!(
        parents.len(),
        1,
        "only our parent has an outcome: {parents:?}"
    );
    assert_eq!(parents[0].0.name.as_deref(), Some("http"));
    assert!(parents[0].1.is_ok());
    assert_eq!(config.routes.rules().len(), 1);
}

#[test]
fn another_controller_name_or_gateway_flag_changes_what_is_served() {
    let theirs = Scope {
        controller_name: "kgateway.dev/kgateway".into(),
        gateway: None,
    };
    let selection = select(&cluster(), &theirs);
    assert_eq!(selection.gateways, ["ns/other"]);
    let (_, config) = compile_snapshot(&cluster(), &theirs, &LoadOptions::default());
    let problems: Vec<String> = config
        .expect("cluster mode serves around problems")
        .findings
        .errors
        .iter()
        .map(|p| p.line())
        .collect();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("Backend ns/theirs") && p.contains("Secret ns/gone not found: not in the cluster (create it in the Backend's namespace")),
        "{problems:?}"
    );

    let mut cluster = cluster();
    cluster
        .gateways
        .push(gateway("ns", "second", "podcred", 9090));
    let only = Scope {
        gateway: Some("ns/second".into()),
        ..scope()
    };
    let selection = select(&cluster, &only);
    assert_eq!(selection.gateways, ["ns/second"]);
    assert!(
        selection.objects.http_routes.is_empty(),
        "ns/lambda attaches to ns/http only"
    );
    assert_eq!(
        select(&cluster, &scope()).gateways,
        ["ns/http", "ns/second"]
    );
}

#[test]
fn a_deleted_backend_leaves_the_route_served_answering_500_and_names_route_and_backend() {
    let mut cluster = cluster();
    cluster
        .backends
        .retain(|b| b["metadata"]["name"] != "lambda");
    let (_, config) = compile_snapshot(&cluster, &scope(), &LoadOptions::default());
    let config = config.expect("cluster mode serves around a missing Backend");
    let problems: Vec<String> = config.findings.errors.iter().map(|p| p.line()).collect();
    assert_eq!(
        problems,
        ["HTTPRoute ns/lambda: spec.rules[0].backendRefs[0].name: Backend ns/lambda not found in the cluster"]
    );
    assert_eq!(
        config.findings.errors[0].reason,
        crate::config::Reason::BackendNotFound
    );
    let rule = &config.routes.rules()[0];
    assert_eq!((rule.backends.len(), rule.unresolved_weight), (0, 1));
    assert!(rule.pick(0).is_none(), "the rule answers 500");
}

#[test]
fn routes_are_ordered_by_creation_time_then_name() {
    let mut cluster = cluster();
    cluster.http_routes = vec![
        route(
            "ns",
            "b-new",
            "2026-03-01T00:00:00Z",
            json!([{"name": "http"}]),
            "/x",
            "lambda",
        ),
        route(
            "ns",
            "z-old",
            "2026-01-01T00:00:00Z",
            json!([{"name": "http"}]),
            "/x",
            "lambda",
        ),
        route(
            "ns",
            "a-new",
            "2026-03-01T00:00:00Z",
            json!([{"name": "http"}]),
            "/x",
            "lambda",
        ),
    ];
    let selection = select(&cluster, &scope());
    let names: Vec<_> = selection
        .objects
        .http_routes
        .iter()
        .map(|r| r.metadata.id())
        .collect();
    assert_eq!(names, ["ns/z-old", "ns/a-new", "ns/b-new"]);
}

#[test]
fn status_and_bookkeeping_do_not_change_the_fingerprint_but_specs_do() {
    let before = select(&cluster(), &scope()).fingerprint;
    let mut cluster = cluster();
    cluster.gateways[0]["status"] = json!({"conditions": [{"type": "Accepted"}]});
    cluster.gateways[0]["metadata"]["resourceVersion"] = json!("8");
    cluster.gateways[1]["spec"]["listeners"][0]["port"] = json!(9999); // not ours
    cluster.secrets[1]["data"] = json!({"x": "eA=="}); // not referenced
    assert_eq!(select(&cluster, &scope()).fingerprint, before);
    cluster.http_routes[0]["spec"]["rules"][0]["matches"][0]["path"]["value"] = json!("/new");
    assert_ne!(select(&cluster, &scope()).fingerprint, before);
    let (_, config) = compile_snapshot(&cluster, &scope(), &LoadOptions::default());
    assert!(paths(&config.expect("compiles"))[0].contains("/new"));
}

#[test]
fn secret_values_never_show_in_debug_output_or_problems() {
    let selection = select(&cluster(), &scope());
    let debug = format!("{:?}", selection.objects);
    assert!(!debug.contains("TOPSECRETVALUE"), "{debug}");
    assert!(!debug.contains("VE9QU0VDUkVUVkFMVUU"), "{debug}");
    assert!(!debug.contains("last-applied-configuration"), "{debug}");
    assert!(debug.contains("team"), "other annotations stay: {debug}");

    let mut cluster = cluster();
    cluster.secrets[0]["data"] = json!({"secretKey": ["TOPSECRETVALUE"]});
    let selection = select(&cluster, &scope());
    assert_eq!(selection.problems.len(), 1, "{:?}", selection.problems);
    let line = selection.problems[0].line();
    assert!(line.starts_with("Secret ns/keys: cannot be read"), "{line}");
    assert!(!line.contains("TOPSECRETVALUE"));
}
