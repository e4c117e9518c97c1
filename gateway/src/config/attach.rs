//! Route attachment, as Gateway API specifies it: which listeners of a `parentRef`'s Gateway an HTTPRoute
//! attaches to, and the hostnames it is then served for. Pure.
//!
//! A `parentRef` narrows the Gateway's HTTP listeners by `sectionName` and `port` (none left:
//! `NoMatchingParent`), then by `allowedRoutes` — `kinds` must admit HTTPRoute and, in cluster mode,
//! `namespaces.from` (`Same` by default, `All`, `Selector` on the route Namespace's labels) must admit the
//! route's namespace (none left: `NotAllowedByListeners`) — then by hostname: a listener whose `hostname` does
//! not intersect any of the route's `hostnames` is skipped (none left: `NoMatchingListenerHostname`). The
//! route is served for the intersections (<https://gateway-api.sigs.k8s.io/reference/spec/#httproutespec>).

use std::collections::BTreeMap;

use super::gateway::{HttpListener, Listeners, RouteNamespacePolicy};
use super::httproute::ParentReference;
use super::report::Reason;

/// The hosts a route is served for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hostnames {
    Any,
    /// Lower case, `*.` wildcards allowed; never empty.
    Only(Vec<String>),
}

impl Hostnames {
    /// Both sets (`Any` absorbs the other).
    pub fn union(self, other: Hostnames) -> Hostnames {
        match (self, other) {
            (Hostnames::Only(mut a), Hostnames::Only(b)) => {
                for h in b {
                    if !a.contains(&h) {
                        a.push(h);
                    }
                }
                Hostnames::Only(a)
            }
            _ => Hostnames::Any,
        }
    }

    /// The routing table's form: empty = any host.
    pub fn into_list(self) -> Vec<String> {
        match self {
            Hostnames::Any => vec![],
            Hostnames::Only(list) => list,
        }
    }
}

/// Whether `pattern` (exact, or `*.suffix` matching one or more labels) covers `host` (itself possibly a
/// wildcard: `*.a.example.com` is covered by `*.example.com`).
fn covers(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        None => pattern == host,
    }
}

/// The hostnames a route with `route` hostnames is served for on a listener with `listener` hostname; None
/// when they do not intersect.
pub fn intersect(listener: Option<&str>, route: &[String]) -> Option<Hostnames> {
    match (listener, route.is_empty()) {
        (None, true) => Some(Hostnames::Any),
        (None, false) => Some(Hostnames::Only(route.to_vec())),
        (Some(l), true) => Some(Hostnames::Only(vec![l.to_string()])),
        (Some(l), false) => {
            let mut out = Vec::new();
            for h in route {
                let common = if covers(l, h) {
                    h.as_str()
                } else if covers(h, l) {
                    l
                } else {
                    continue;
                };
                if !out.iter().any(|o: &String| o == common) {
                    out.push(common.to_string());
                }
            }
            (!out.is_empty()).then_some(Hostnames::Only(out))
        }
    }
}

/// A `parentRef` the route attached through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// `namespace/name` of the Gateway.
    pub gateway: String,
    /// The listeners attached to.
    pub listeners: Vec<String>,
    pub hostnames: Hostnames,
}

/// Why a `parentRef` did not attach: the reason, the field, and the message.
pub type Refusal = (Reason, String, String);

/// What a route needs to know about the world to attach.
pub(super) struct AttachContext<'a> {
    pub listeners: &'a Listeners,
    /// Labels of each Namespace; `allowedRoutes.namespaces` is enforced only when this is Some (cluster
    /// mode: the files hold no Namespaces, and one operator writes them all).
    pub namespace_labels: Option<&'a BTreeMap<String, BTreeMap<String, String>>>,
}

/// Attaches a route in `route_namespace` with `hostnames` through `parent` (the `field` it is at). The caller
/// has checked that `parent` names an existing, valid Gateway: `gateway_id`.
pub(super) fn attach(
    route_namespace: &str,
    hostnames: &[String],
    parent: &ParentReference,
    gateway_id: &str,
    field: &str,
    context: &AttachContext<'_>,
) -> Result<Attachment, Refusal> {
    let all: &[HttpListener] = context
        .listeners
        .get(gateway_id)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let by_parent: Vec<&HttpListener> = all
        .iter()
        .filter(|l| parent.section_name.as_ref().is_none_or(|s| &l.name == s))
        .filter(|l| parent.port.is_none_or(|p| i64::from(l.port) == p))
        .collect();
    if by_parent.is_empty() {
        let (field, message) = match (&parent.section_name, parent.port) {
            (Some(section), _) => (
                format!("{field}.sectionName"),
                format!("Gateway {gateway_id} has no HTTP listener named {section:?}")
                    + &parent
                        .port
                        .map(|p| format!(" on port {p}"))
                        .unwrap_or_default(),
            ),
            (None, Some(port)) => (
                format!("{field}.port"),
                format!("Gateway {gateway_id} has no HTTP listener on port {port}"),
            ),
            (None, None) => (
                field.to_string(),
                format!("Gateway {gateway_id} has no HTTP listener"),
            ),
        };
        return Err((Reason::NoMatchingParent, field, message));
    }
    let allowed: Vec<&HttpListener> = by_parent
        .iter()
        .copied()
        .filter(|l| {
            l.admits_http_routes && admits_namespace(l, gateway_id, route_namespace, context)
        })
        .collect();
    if allowed.is_empty() {
        let names: Vec<&str> = by_parent.iter().map(|l| l.name.as_str()).collect();
        return Err((
            Reason::NotAllowedByListeners,
            field.to_string(),
            format!(
                "the allowedRoutes of Gateway {gateway_id}'s listeners {names:?} do not admit HTTPRoutes from namespace {route_namespace}"
            ),
        ));
    }
    let mut attached = Vec::new();
    let mut served: Option<Hostnames> = None;
    for listener in &allowed {
        if let Some(h) = intersect(listener.hostname.as_deref(), hostnames) {
            attached.push(listener.name.clone());
            served = Some(match served {
                None => h,
                Some(s) => s.union(h),
            });
        }
    }
    match served {
        Some(hostnames) => Ok(Attachment {
            gateway: gateway_id.to_string(),
            listeners: attached,
            hostnames,
        }),
        None => {
            let listener_hosts: Vec<&str> = allowed
                .iter()
                .filter_map(|l| l.hostname.as_deref())
                .collect();
            Err((
                Reason::NoMatchingListenerHostname,
                "spec.hostnames".to_string(),
                format!(
                    "none of {hostnames:?} intersects the hostnames of Gateway {gateway_id}'s listeners {listener_hosts:?}"
                ),
            ))
        }
    }
}

fn admits_namespace(
    listener: &HttpListener,
    gateway_id: &str,
    route_namespace: &str,
    context: &AttachContext<'_>,
) -> bool {
    let Some(labels) = context.namespace_labels else {
        return true;
    };
    match &listener.namespaces {
        RouteNamespacePolicy::All => true,
        RouteNamespacePolicy::Same => gateway_id
            .split_once('/')
            .is_some_and(|(ns, _)| ns == route_namespace),
        RouteNamespacePolicy::Selector(selector) => labels
            .get(route_namespace)
            .is_some_and(|l| selector.matches(l)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn hostnames_intersect_as_gateway_api_specifies() {
        let only = |list: &[&str]| Some(Hostnames::Only(hosts(list)));
        let cases: &[(Option<&str>, &[&str], Option<Hostnames>)] = &[
            (None, &[], Some(Hostnames::Any)),
            (None, &["a.example.com"], only(&["a.example.com"])),
            (Some("a.example.com"), &[], only(&["a.example.com"])),
            (
                Some("a.example.com"),
                &["a.example.com", "b.example.com"],
                only(&["a.example.com"]),
            ),
            (
                Some("*.example.com"),
                &["a.example.com", "x.y.example.com", "example.com"],
                only(&["a.example.com", "x.y.example.com"]),
            ),
            (
                Some("a.example.com"),
                &["*.example.com"],
                only(&["a.example.com"]),
            ),
            (
                Some("*.example.com"),
                &["*.example.com"],
                only(&["*.example.com"]),
            ),
            (
                Some("*.example.com"),
                &["*.a.example.com"],
                only(&["*.a.example.com"]),
            ),
            (
                Some("*.a.example.com"),
                &["*.example.com"],
                only(&["*.a.example.com"]),
            ),
            (Some("a.example.com"), &["b.example.com"], None),
            (Some("*.example.com"), &["example.com", "example.org"], None),
        ];
        for (listener, route, expected) in cases {
            assert_eq!(
                &intersect(*listener, &hosts(route)),
                expected,
                "{listener:?} ∩ {route:?}"
            );
        }
    }

    #[test]
    fn any_absorbs_in_a_union() {
        let a = Hostnames::Only(hosts(&["a"]));
        assert_eq!(a.clone().union(Hostnames::Any), Hostnames::Any);
        assert_eq!(
            a.union(Hostnames::Only(hosts(&["b", "a"]))),
            Hostnames::Only(hosts(&["a", "b"]))
        );
    }
}
