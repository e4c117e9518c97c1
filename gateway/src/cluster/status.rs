//! Status, as Gateway API implementations write it: the desired `status` of our GatewayClasses, Gateways and
//! the HTTPRoutes attached to them, computed from a [`Snapshot`], a [`Scope`] and what the compiler found
//! ([`Findings`]) — pure — and a thin writer that patches the `status` subresource only where the desired
//! status differs from the current one.
//!
//! Contract (<https://gateway-api.sigs.k8s.io/reference/spec/>):
//! - GatewayClass (`spec.controllerName` ours): `Accepted=True`.
//! - Gateway (of our classes, in scope): `Accepted` (`True/Accepted`; `False/ListenersNotValid` when it has
//!   errors), `Programmed` (`True/Programmed`, `False/Invalid`), and per listener `supportedKinds`,
//!   `attachedRoutes` and the conditions `Accepted` (`False/UnsupportedProtocol` or `PortUnavailable`),
//!   `Programmed`, `ResolvedRefs` (`False/InvalidRouteKinds`) and `Conflicted` (`True/HostnameConflict`).
//!   `addresses` are not written (the proxy's Service address is the provisioner's to report).
//! - HTTPRoute: one `status.parents[]` entry per `parentRef` to one of our Gateways in scope, with our
//!   `controllerName`, `Accepted` (`Accepted`, `NoMatchingParent`, `NotAllowedByListeners`,
//!   `NoMatchingListenerHostname`, `UnsupportedValue`) and `ResolvedRefs` (`ResolvedRefs`, `BackendNotFound`,
//!   `RefNotPermitted`, `InvalidKind`). Other controllers' entries are kept as they are; ours for parentRefs
//!   that are gone are removed.
//! - Every condition carries the object's `metadata.generation` as `observedGeneration`; a condition whose
//!   `status` did not change keeps its `lastTransitionTime`. Messages are the compiler's problem lines
//!   (field and message) about the object.
//! - Objects of other classes get nothing (not even an empty patch).

use std::collections::BTreeSet;

use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{json, Map, Value};

use super::select::{id, parent_gateway, Scope, Snapshot, GATEWAY_API_GROUP};
use crate::config::{Findings, GatewayFinding, LoadOptions, ParentReference, Problem, Reason};

/// Kubernetes' limit on a condition message.
const MAX_MESSAGE: usize = 32_768;

/// One object whose status must be written.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusUpdate {
    /// `GatewayClass`, `Gateway` or `HTTPRoute`.
    pub kind: &'static str,
    /// None for the cluster-scoped GatewayClass.
    pub namespace: Option<String>,
    pub name: String,
    /// The `resourceVersion` the status was computed from (a precondition of the write).
    pub resource_version: Option<String>,
    /// The `status` keys to set (each replaced whole).
    pub status: Map<String, Value>,
}

/// The statuses that differ from what the API server holds. `now` is the RFC 3339 time for conditions whose
/// status changed.
pub fn desired(
    snapshot: &Snapshot,
    scope: &Scope,
    findings: &Findings,
    now: &str,
) -> Vec<StatusUpdate> {
    let mut updates = Vec::new();
    let ours = |c: &&Value| str_at(c, "/spec/controllerName") == Some(&scope.controller_name);
    let classes: BTreeSet<&str> = snapshot
        .gateway_classes
        .iter()
        .filter(ours)
        .filter_map(|c| str_at(c, "/metadata/name"))
        .collect();

    for class in snapshot.gateway_classes.iter().filter(ours) {
        let generation = generation(class);
        let conditions = vec![condition(
            "Accepted",
            true,
            "Accepted",
            &format!("accepted by {}", scope.controller_name),
            generation,
        )];
        let mut status = Map::new();
        status.insert(
            "conditions".into(),
            keep_times(conditions, class.pointer("/status/conditions"), now),
        );
        push_if_changed(&mut updates, "GatewayClass", class, status);
    }

    let gateways: Vec<&Value> = snapshot
        .gateways
        .iter()
        .filter(|g| str_at(g, "/spec/gatewayClassName").is_some_and(|c| classes.contains(c)))
        .filter(|g| scope.gateway.as_deref().is_none_or(|only| id(g) == only))
        .collect();
    let gateway_ids: BTreeSet<String> = gateways.iter().map(|g| id(g)).collect();
    for gateway in &gateways {
        let status = gateway_status(gateway, findings, now);
        push_if_changed(&mut updates, "Gateway", gateway, status);
    }

    for route in &snapshot.http_routes {
        if let Some(status) = route_status(route, &gateway_ids, scope, findings, now) {
            push_if_changed(&mut updates, "HTTPRoute", route, status);
        }
    }
    updates
}

fn gateway_status(gateway: &Value, findings: &Findings, now: &str) -> Map<String, Value> {
    let gateway_id = id(gateway);
    let generation = generation(gateway);
    let empty = GatewayFinding::default();
    let finding = findings.gateways.get(&gateway_id).unwrap_or(&empty);
    let valid = findings.valid_gateways.contains(&gateway_id);
    let errors = messages(findings.errors_about("Gateway", &gateway_id));
    let mut listeners = Vec::new();
    let mut any_listener_invalid = false;
    for listener in &finding.listeners {
        let not_accepted = listener.not_accepted.clone();
        let attached = attached_routes(findings, &gateway_id, &listener.name);
        let mut conditions = Vec::new();
        let accepted = not_accepted.is_none() && valid;
        any_listener_invalid |= not_accepted.is_some();
        conditions.push(match &not_accepted {
            Some((reason, message)) => condition("Accepted", false, reason, message, generation),
            None => condition(
                "Accepted",
                true,
                "Accepted",
                "listener accepted",
                generation,
            ),
        });
        conditions.push(if accepted {
            condition(
                "Programmed",
                true,
                "Programmed",
                "listener programmed",
                generation,
            )
        } else {
            condition(
                "Programmed",
                false,
                "Invalid",
                "listener not served",
                generation,
            )
        });
        conditions.push(if listener.invalid_kinds.is_empty() {
            condition(
                "ResolvedRefs",
                true,
                "ResolvedRefs",
                "references resolved",
                generation,
            )
        } else {
            condition(
                "ResolvedRefs",
                false,
                "InvalidRouteKinds",
                &format!(
                    "allowedRoutes.kinds: {} not supported (only {GATEWAY_API_GROUP}/HTTPRoute)",
                    listener.invalid_kinds.join(", ")
                ),
                generation,
            )
        });
        conditions.push(match &listener.conflicted_with {
            Some(other) => condition(
                "Conflicted",
                true,
                "HostnameConflict",
                &format!("listener {other} has the same port and hostname"),
                generation,
            ),
            None => condition(
                "Conflicted",
                false,
                "NoConflicts",
                "no conflicts",
                generation,
            ),
        });
        let previous = gateway
            .pointer("/status/listeners")
            .and_then(Value::as_array)
            .and_then(|ls| ls.iter().find(|l| l["name"] == listener.name.as_str()))
            .and_then(|l| l.get("conditions"));
        let supported_kinds = if listener.admits_http_routes && listener.protocol == "HTTP" {
            json!([{"group": GATEWAY_API_GROUP, "kind": "HTTPRoute"}])
        } else {
            json!([])
        };
        listeners.push(json!({
            "name": listener.name,
            "supportedKinds": supported_kinds,
            "attachedRoutes": attached,
            "conditions": keep_times(conditions, previous, now),
        }));
    }
    let conditions = if valid {
        let (reason, message) = if any_listener_invalid {
            (
                "ListenersNotValid",
                "some listeners are not served (see their conditions)",
            )
        } else {
            ("Accepted", "accepted")
        };
        vec![
            condition("Accepted", true, reason, message, generation),
            condition("Programmed", true, "Programmed", "programmed", generation),
        ]
    } else {
        let message = if errors.is_empty() {
            "the Gateway cannot be read".to_string()
        } else {
            errors
        };
        vec![
            condition("Accepted", false, "ListenersNotValid", &message, generation),
            condition("Programmed", false, "Invalid", &message, generation),
        ]
    };
    let mut status = Map::new();
    status.insert(
        "conditions".into(),
        keep_times(conditions, gateway.pointer("/status/conditions"), now),
    );
    status.insert("listeners".into(), Value::Array(listeners));
    status
}

/// How many routes are attached (and accepted) through `listener` of `gateway`.
fn attached_routes(findings: &Findings, gateway: &str, listener: &str) -> i64 {
    findings
        .parents
        .iter()
        .filter(|(route, _)| findings.served_routes.contains(*route))
        .filter(|(_, parents)| {
            parents.iter().any(|(_, r)| {
                r.as_ref().is_ok_and(|a| {
                    a.gateway == gateway && a.listeners.iter().any(|l| l == listener)
                })
            })
        })
        .count() as i64
}

/// The route's `status.parents`, when any entry is ours to write (None: the route is none of our business).
fn route_status(
    route: &Value,
    gateways: &BTreeSet<String>,
    scope: &Scope,
    findings: &Findings,
    now: &str,
) -> Option<Map<String, Value>> {
    let route_id = id(route);
    let route_ns = str_at(route, "/metadata/namespace").unwrap_or("default");
    let generation = generation(route);
    let existing: Vec<Value> = route
        .pointer("/status/parents")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let gateway_of = |parent: &Value| parent_gateway(parent, route_ns);
    // Entries we manage: ours, for a Gateway in scope (another replica may serve another Gateway).
    let managed = |entry: &Value| {
        entry.get("controllerName").and_then(Value::as_str) == Some(&scope.controller_name)
            && entry
                .get("parentRef")
                .and_then(gateway_of)
                .is_some_and(|g| scope.gateway.as_deref().is_none_or(|only| only == g))
    };
    let refs: Vec<&Value> = route
        .pointer("/spec/parentRefs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|r| gateway_of(r).is_some_and(|g| gateways.contains(&g)))
        .collect();
    if refs.is_empty() && !existing.iter().any(managed) {
        return None;
    }
    let own_errors: Vec<&Problem> = findings
        .errors_about("HTTPRoute", &route_id)
        .filter(|p| !p.reason.is_attachment() && !p.reason.is_unresolved_ref())
        .collect();
    let unresolved: Vec<&Problem> = findings
        .errors_about("HTTPRoute", &route_id)
        .filter(|p| p.reason.is_unresolved_ref())
        .collect();
    let warnings = messages(findings.warnings_about("HTTPRoute", &route_id));
    let outcomes = findings.parents.get(&route_id);

    let mut parents: Vec<Value> = existing.iter().filter(|e| !managed(e)).cloned().collect();
    for raw in refs {
        let typed: Option<ParentReference> = serde_json::from_value(raw.clone()).ok();
        let outcome = outcomes.and_then(|o| {
            o.iter()
                .find(|(p, _)| Some(p) == typed.as_ref())
                .map(|(_, r)| r)
        });
        let accepted = match outcome {
            Some(Err(problem)) => condition(
                "Accepted",
                false,
                problem.reason.as_str(),
                &problem.field_message(),
                generation,
            ),
            _ if !own_errors.is_empty() => condition(
                "Accepted",
                false,
                Reason::UnsupportedValue.as_str(),
                &messages(own_errors.iter().copied()),
                generation,
            ),
            Some(Ok(_)) => {
                let message = if warnings.is_empty() {
                    "accepted".to_string()
                } else {
                    format!("accepted; not applied: {warnings}")
                };
                condition("Accepted", true, "Accepted", &message, generation)
            }
            // The compiler has nothing on this route: it could not be read.
            None => {
                let problems = messages(findings.errors_about("HTTPRoute", &route_id));
                let message = if problems.is_empty() {
                    "the route cannot be read".to_string()
                } else {
                    problems
                };
                condition(
                    "Accepted",
                    false,
                    Reason::UnsupportedValue.as_str(),
                    &message,
                    generation,
                )
            }
        };
        let resolved = match unresolved.first() {
            None => condition(
                "ResolvedRefs",
                true,
                "ResolvedRefs",
                "references resolved",
                generation,
            ),
            Some(first) => condition(
                "ResolvedRefs",
                false,
                first.reason.as_str(),
                &messages(unresolved.iter().copied()),
                generation,
            ),
        };
        let previous = existing
            .iter()
            .find(|e| managed(e) && e.get("parentRef") == Some(raw))
            .and_then(|e| e.get("conditions"));
        parents.push(json!({
            "parentRef": raw,
            "controllerName": scope.controller_name,
            "conditions": keep_times(vec![accepted, resolved], previous, now),
        }));
    }
    let mut status = Map::new();
    status.insert("parents".into(), Value::Array(parents));
    Some(status)
}

/// A condition without its `lastTransitionTime` (set by [`keep_times`]).
fn condition(
    kind: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) -> Value {
    let mut message = message.to_string();
    if message.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE - 3;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push_str("...");
    }
    let mut value = json!({
        "type": kind,
        "status": if status { "True" } else { "False" },
        "reason": reason,
        "message": message,
    });
    if let Some(generation) = generation {
        value["observedGeneration"] = json!(generation);
    }
    value
}

/// Sets each condition's `lastTransitionTime`: the previous one when a condition of that type had the same
/// status, else `now`.
fn keep_times(conditions: Vec<Value>, previous: Option<&Value>, now: &str) -> Value {
    let previous = previous.and_then(Value::as_array);
    Value::Array(
        conditions
            .into_iter()
            .map(|mut c| {
                let time = previous
                    .into_iter()
                    .flatten()
                    .find(|p| p["type"] == c["type"] && p["status"] == c["status"])
                    .and_then(|p| p.get("lastTransitionTime").cloned())
                    .unwrap_or_else(|| json!(now));
                c["lastTransitionTime"] = time;
                c
            })
            .collect(),
    )
}

fn push_if_changed(
    updates: &mut Vec<StatusUpdate>,
    kind: &'static str,
    object: &Value,
    status: Map<String, Value>,
) {
    let current = object.get("status");
    let unchanged = status
        .iter()
        .all(|(k, v)| current.and_then(|c| c.get(k)) == Some(v));
    if unchanged {
        return;
    }
    updates.push(StatusUpdate {
        kind,
        namespace: str_at(object, "/metadata/namespace").map(str::to_string),
        name: str_at(object, "/metadata/name")
            .unwrap_or_default()
            .to_string(),
        resource_version: str_at(object, "/metadata/resourceVersion").map(str::to_string),
        status,
    });
}

fn messages<'a>(problems: impl Iterator<Item = &'a Problem>) -> String {
    problems
        .map(Problem::field_message)
        .collect::<Vec<_>>()
        .join("; ")
}

fn generation(object: &Value) -> Option<i64> {
    object
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

/// RFC 3339 in whole seconds, as Kubernetes writes `metav1.Time`.
pub fn rfc3339(time: std::time::SystemTime) -> String {
    let time = time::OffsetDateTime::from(time);
    let time = time.replace_nanosecond(0).unwrap_or(time);
    time.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// How many status writes a reconcile made.
pub type WriteCount = usize;

/// Why a status write failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the status of {kind} {object}: {source}")]
pub struct StatusError {
    pub kind: &'static str,
    pub object: String,
    #[source]
    pub source: kube::Error,
}

/// Compiles `snapshot` and writes the statuses that differ from the API server's (see [`desired`]). Writes are
/// merge patches of the `status` subresource with the `resourceVersion` the status was computed from, so a
/// concurrent change fails the write (409) instead of being overwritten; the next change reconciles again.
/// Returns how many objects were written.
pub async fn reconcile(
    client: &Client,
    snapshot: &Snapshot,
    scope: &Scope,
    options: &LoadOptions,
    now: &str,
) -> Result<WriteCount, StatusError> {
    let (_, result) = super::compile_snapshot(snapshot, scope, options);
    let findings = result.map(|c| c.findings).unwrap_or_default();
    write(client, &desired(snapshot, scope, &findings, now)).await
}

/// Writes `updates` (from [`desired`]); stops at the first failure.
pub async fn write(client: &Client, updates: &[StatusUpdate]) -> Result<WriteCount, StatusError> {
    let params = PatchParams::default();
    for update in updates {
        let resource =
            ApiResource::from_gvk(&GroupVersionKind::gvk(GATEWAY_API_GROUP, "v1", update.kind));
        let api: Api<DynamicObject> = match &update.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        let mut patch = json!({"status": update.status});
        if let Some(version) = &update.resource_version {
            patch["metadata"] = json!({"resourceVersion": version});
        }
        api.patch_status(&update.name, &params, &Patch::Merge(&patch))
            .await
            .map_err(|source| StatusError {
                kind: update.kind,
                object: update
                    .namespace
                    .as_ref()
                    .map_or(update.name.clone(), |ns| format!("{ns}/{}", update.name)),
                source,
            })?;
    }
    Ok(updates.len())
}

#[cfg(test)]
mod tests;
