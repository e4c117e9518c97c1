//! Which cluster objects the gateway serves: a snapshot of the watched objects (JSON as the API server sends
//! it) → the [`ObjectSet`] the config compiler takes. Pure: no client, no clock.
//!
//! - GatewayClasses whose `spec.controllerName` is ours; Gateways of those classes (only `--gateway NS/NAME`
//!   when given).
//! - HTTPRoutes with at least one `parentRef` to one of those Gateways. Their other `parentRefs` (Gateways of
//!   other classes, missing Gateways) stay in the object, so problems name the fields by their real index;
//!   the compiler in cluster mode skips `parentRefs` to Gateways it was not given, and status gives them no
//!   entry from us.
//! - Backends (`gateway.kgateway.dev`) that a kept route's `backendRefs` name, and the Secrets those Backends'
//!   `spec.aws.auth.secretRef` name. A missing one is left for the compiler to report ("not found").
//! - ReferenceGrants in the namespaces of those Backends, and the labels of the kept routes' Namespaces
//!   (for `allowedRoutes.namespaces.from: Selector`).
//! - `status`, `managedFields` and `kubectl.kubernetes.io/last-applied-configuration` (which holds a Secret's
//!   values when it was `kubectl apply`d) are stripped before anything else sees the objects.

use std::collections::{BTreeSet, HashSet};

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::{
    BackendObject, GatewayObject, HttpRouteObject, ObjectSet, Problem, Reason,
    ReferenceGrantObject, SecretObject,
};
pub use crate::config::{GATEWAY_API_GROUP, KGATEWAY_GROUP};
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Everything the reflectors hold, one list per kind, as JSON objects.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub gateway_classes: Vec<Value>,
    pub gateways: Vec<Value>,
    pub http_routes: Vec<Value>,
    pub backends: Vec<Value>,
    pub secrets: Vec<Value>,
    pub reference_grants: Vec<Value>,
    pub namespaces: Vec<Value>,
}

/// Which Gateways are ours.
#[derive(Debug, Clone)]
pub struct Scope {
    /// GatewayClasses with this `spec.controllerName` are ours.
    pub controller_name: String,
    /// Only this Gateway (`namespace/name`), when set.
    pub gateway: Option<String>,
}

/// What [`select`] chose.
#[derive(Debug, Default)]
pub struct Selection {
    pub objects: ObjectSet,
    /// Objects that could not be decoded (one each; they are left out and references to them fail).
    pub problems: Vec<Problem>,
    /// The selected objects without status and bookkeeping: equal fingerprints compile to equal configs, so a
    /// status-only or resourceVersion-only change recompiles nothing. Holds Secret values: never log it.
    pub fingerprint: String,
    /// `namespace/name` of the Gateways served, for logs.
    pub gateways: Vec<String>,
}

/// Chooses the objects to serve from `snapshot`.
pub fn select(snapshot: &Snapshot, scope: &Scope) -> Selection {
    let classes: HashSet<&str> = snapshot
        .gateway_classes
        .iter()
        .filter(|c| str_at(c, &["spec", "controllerName"]) == Some(&scope.controller_name))
        .filter_map(|c| str_at(c, &["metadata", "name"]))
        .collect();

    let mut gateways: Vec<Value> = snapshot
        .gateways
        .iter()
        .filter(|g| {
            str_at(g, &["spec", "gatewayClassName"]).is_some_and(|class| classes.contains(class))
        })
        .filter(|g| scope.gateway.as_deref().is_none_or(|only| id(g) == only))
        .map(clean)
        .collect();
    gateways.sort_by_key(id);
    let gateway_ids: HashSet<String> = gateways.iter().map(id).collect();

    // Gateway API's tie-break between routes: oldest creationTimestamp, then namespace/name.
    let mut routes: Vec<(String, String, Value)> = snapshot
        .http_routes
        .iter()
        .filter_map(|route| {
            if our_parent_refs(route, &gateway_ids).is_empty() {
                return None;
            }
            let created = str_at(route, &["metadata", "creationTimestamp"])
                .unwrap_or_default()
                .to_string();
            let route = clean(route);
            Some((created, id(&route), route))
        })
        .collect();
    routes.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let routes: Vec<Value> = routes.into_iter().map(|(_, _, r)| r).collect();

    let backend_ids: BTreeSet<String> = routes.iter().flat_map(backend_refs).collect();
    let mut backends: Vec<Value> = snapshot
        .backends
        .iter()
        .filter(|b| backend_ids.contains(&id(b)))
        .map(clean)
        .collect();
    backends.sort_by_key(id);

    let secret_ids: BTreeSet<String> = backends
        .iter()
        .filter_map(|b| {
            let name = str_at(b, &["spec", "aws", "auth", "secretRef", "name"])?;
            Some(format!("{}/{name}", namespace(b)))
        })
        .collect();
    let mut secrets: Vec<Value> = snapshot
        .secrets
        .iter()
        .filter(|s| secret_ids.contains(&id(s)))
        .map(clean)
        .collect();
    secrets.sort_by_key(id);

    let backend_namespaces: BTreeSet<&str> = backends.iter().map(namespace).collect();
    let mut grants: Vec<Value> = snapshot
        .reference_grants
        .iter()
        .filter(|g| backend_namespaces.contains(namespace(g)))
        .map(clean)
        .collect();
    grants.sort_by_key(id);
    let route_namespaces: BTreeSet<&str> = routes.iter().map(namespace).collect();
    let namespace_labels: std::collections::BTreeMap<
        String,
        std::collections::BTreeMap<String, String>,
    > = snapshot
        .namespaces
        .iter()
        .filter_map(|n| {
            let name = str_at(n, &["metadata", "name"])?;
            route_namespaces.contains(name).then(|| {
                let labels = n
                    .pointer("/metadata/labels")
                    .and_then(|l| serde_json::from_value(l.clone()).ok())
                    .unwrap_or_default();
                (name.to_string(), labels)
            })
        })
        .collect();

    let fingerprint = serde_json::to_string(&(
        [&gateways, &routes, &backends, &secrets, &grants],
        &namespace_labels,
    ))
    .unwrap_or_default();
    let mut selection = Selection {
        fingerprint,
        gateways: gateways.iter().map(id).collect(),
        ..Selection::default()
    };
    let problems = &mut selection.problems;
    let objects = &mut selection.objects;
    objects.gateways = decode_all::<GatewayObject>("Gateway", gateways, problems, true);
    objects.http_routes = decode_all::<HttpRouteObject>("HTTPRoute", routes, problems, true);
    objects.backends = decode_all::<BackendObject>("Backend", backends, problems, true);
    objects.secrets = decode_all::<SecretObject>("Secret", secrets, problems, false);
    objects.reference_grants =
        decode_all::<ReferenceGrantObject>("ReferenceGrant", grants, problems, true);
    objects.namespace_labels = namespace_labels;
    selection
}

/// The `parentRefs` of `route` that name one of `gateways`.
fn our_parent_refs(route: &Value, gateways: &HashSet<String>) -> Vec<Value> {
    let route_ns = namespace(route);
    let Some(refs) = route.pointer("/spec/parentRefs").and_then(Value::as_array) else {
        return vec![];
    };
    refs.iter()
        .filter(|r| parent_gateway(r, route_ns).is_some_and(|g| gateways.contains(&g)))
        .cloned()
        .collect()
}

/// `namespace/name` of the Gateway a `parentRef` (JSON, of a route in `route_ns`) names; None when it names
/// another kind. Group and kind default to Gateway API's Gateway, the namespace to the route's.
pub fn parent_gateway(parent: &Value, route_ns: &str) -> Option<String> {
    let group = str_at(parent, &["group"]).unwrap_or(GATEWAY_API_GROUP);
    let kind = str_at(parent, &["kind"]).unwrap_or("Gateway");
    if group != GATEWAY_API_GROUP || kind != "Gateway" {
        return None;
    }
    let ns = str_at(parent, &["namespace"]).unwrap_or(route_ns);
    let name = str_at(parent, &["name"]).unwrap_or_default();
    Some(format!("{ns}/{name}"))
}

/// `namespace/name` of every kgateway Backend a route's rules refer to.
fn backend_refs(route: &Value) -> Vec<String> {
    let route_ns = namespace(route);
    let rules = route.pointer("/spec/rules").and_then(Value::as_array);
    rules
        .into_iter()
        .flatten()
        .filter_map(|rule| rule.get("backendRefs").and_then(Value::as_array))
        .flatten()
        .filter(|r| {
            str_at(r, &["group"]) == Some(KGATEWAY_GROUP) && str_at(r, &["kind"]) == Some("Backend")
        })
        .map(|r| {
            let ns = str_at(r, &["namespace"]).unwrap_or(route_ns);
            format!("{ns}/{}", str_at(r, &["name"]).unwrap_or_default())
        })
        .collect()
}

/// The object without `status` and without metadata the compiler must not see or that changes on every write.
fn clean(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.retain(|key, _| {
                matches!(
                    key.as_str(),
                    "name" | "namespace" | "labels" | "annotations"
                )
            });
            if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
                annotations.remove(LAST_APPLIED);
            }
        }
    }
    object
}

fn decode_all<T: DeserializeOwned>(
    kind: &str,
    values: Vec<Value>,
    problems: &mut Vec<Problem>,
    show_error: bool,
) -> Vec<T> {
    let mut decoded = Vec::with_capacity(values.len());
    for value in values {
        let object = id(&value);
        let problem = |message: String| Problem::new(kind, &object, "", Reason::Invalid, message);
        match serde_json::from_value::<T>(value) {
            Ok(object) => decoded.push(object),
            // serde's message may quote a value: not for Secrets.
            Err(e) if show_error => problems.push(problem(format!("cannot be read: {e}"))),
            Err(_) => problems.push(problem(
                "cannot be read (data and stringData must map keys to strings)".into(),
            )),
        }
    }
    decoded
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(value, |v, key| v.get(key))
        .and_then(Value::as_str)
}

fn namespace(object: &Value) -> &str {
    str_at(object, &["metadata", "namespace"]).unwrap_or("default")
}

/// `namespace/name`, as the compiler names objects.
pub fn id(object: &Value) -> String {
    format!(
        "{}/{}",
        namespace(object),
        str_at(object, &["metadata", "name"]).unwrap_or_default()
    )
}

#[cfg(test)]
mod tests;
