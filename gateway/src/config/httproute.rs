//! Gateway API `HTTPRoute` (`gateway.networking.k8s.io/v1`, `v1beta1`): the typed object and its compilation
//! to [`RouteRule`]s — parent Gateways and listeners, hostnames, matches (path, method, headers, query
//! parameters), weighted kgateway `Backend` references, timeouts, and filters (`rules[].filters` and
//! `rules[].backendRefs[].filters`, compiled by [`filters`]).
//!
//! Not implemented (reported as unsupported fields): `retry`, `sessionPersistence`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;

use super::attach::{attach, AttachContext, Attachment, Hostnames, Refusal};
use super::duration::parse_duration;
use super::filters::{self, FilterLevel, HttpRouteFilter};
use super::gateway::Listeners;
use super::meta::ObjectMeta;
use super::objects::{GATEWAY_API_GROUP, KGATEWAY_GROUP};
use super::reference_grant::{permits, CrossReference, ReferenceGrantObject};
use super::report::{Problem, Reason, Report};
use crate::model::{Backend, Filters, RequestEvent};
use crate::routing::{
    HeaderMatch, PathMatch, QueryMatch, RequestMatch, RouteRule, StringMatch, WeightedBackend,
};

/// `timeouts.request: 0s` means "no timeout" in Gateway API; Lambda's own maximum bounds it.
const UNBOUNDED_TIMEOUT: Duration = Duration::from_secs(900 + 30);
/// Gateway API's maximum `backendRefs[].weight`.
const MAX_WEIGHT: i64 = 1_000_000;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteObject {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: Option<HttpRouteSpec>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename = "HTTPRouteSpec", rename_all = "camelCase")]
pub struct HttpRouteSpec {
    pub parent_refs: Option<Vec<ParentReference>>,
    pub hostnames: Option<Vec<String>>,
    pub rules: Option<Vec<HttpRouteRule>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename = "ParentReference", rename_all = "camelCase")]
pub struct ParentReference {
    pub group: Option<String>,
    pub kind: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub section_name: Option<String>,
    pub port: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename = "HTTPRouteRule", rename_all = "camelCase")]
pub struct HttpRouteRule {
    pub name: Option<String>,
    pub matches: Option<Vec<HttpRouteMatch>>,
    pub backend_refs: Option<Vec<HttpBackendRef>>,
    pub timeouts: Option<HttpRouteTimeouts>,
    pub filters: Option<Vec<HttpRouteFilter>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename = "HTTPRouteMatch", rename_all = "camelCase")]
pub struct HttpRouteMatch {
    pub path: Option<HttpPathMatch>,
    pub method: Option<String>,
    pub headers: Option<Vec<NamedValueMatch>>,
    pub query_params: Option<Vec<NamedValueMatch>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename = "HTTPPathMatch", rename_all = "camelCase")]
pub struct HttpPathMatch {
    /// `PathPrefix` (default), `Exact`, `RegularExpression`.
    #[serde(rename = "type")]
    pub match_type: Option<String>,
    pub value: Option<String>,
}

/// `HTTPHeaderMatch` and `HTTPQueryParamMatch` (the same shape).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename = "HTTPHeaderMatch", rename_all = "camelCase")]
pub struct NamedValueMatch {
    /// `Exact` (default) or `RegularExpression`.
    #[serde(rename = "type")]
    pub match_type: Option<String>,
    pub name: Option<String>,
    pub value: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename = "HTTPBackendRef", rename_all = "camelCase")]
pub struct HttpBackendRef {
    pub group: Option<String>,
    pub kind: Option<String>,
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub port: Option<i64>,
    /// 0–1,000,000, default 1; a wider type so an out-of-range number gets our message.
    pub weight: Option<i64>,
    pub filters: Option<Vec<HttpRouteFilter>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename = "HTTPRouteTimeouts", rename_all = "camelCase")]
pub struct HttpRouteTimeouts {
    pub request: Option<String>,
    pub backend_request: Option<String>,
}

/// What routes may refer to: the compiled Gateways and Backends, and the ids of every object of those kinds
/// the configuration holds (also the ones that failed), so "invalid" and "not found" are told apart.
pub(super) struct Referents<'a> {
    pub listeners: &'a Listeners,
    pub gateway_ids: &'a HashSet<String>,
    pub backends: &'a HashMap<String, Arc<Backend>>,
    pub backend_ids: &'a HashSet<String>,
    /// The problems of each Backend that did not compile (quoted in cluster mode's messages).
    pub backend_problems: &'a HashMap<String, Vec<String>>,
    pub default_timeout: Duration,
    /// Cluster mode: ReferenceGrants and `allowedRoutes.namespaces` are enforced, and the words say
    /// "cluster" instead of "config files".
    pub cluster: Option<ClusterReferents<'a>>,
}

/// What only cluster mode reads.
pub(super) struct ClusterReferents<'a> {
    pub reference_grants: &'a [ReferenceGrantObject],
    pub namespace_labels: &'a BTreeMap<String, BTreeMap<String, String>>,
}

impl Referents<'_> {
    fn source(&self) -> &'static str {
        if self.cluster.is_some() {
            "the cluster"
        } else {
            "the config files"
        }
    }
}

/// Where a route attached, per `parentRef` (in `spec.parentRefs` order).
#[derive(Debug, Clone)]
pub(super) struct RouteAttachments {
    pub parents: Vec<(ParentReference, Result<Attachment, Refusal>)>,
}

impl RouteAttachments {
    fn hostnames(&self) -> Option<Hostnames> {
        self.parents
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok())
            .map(|a| a.hostnames.clone())
            .reduce(Hostnames::union)
    }
}

/// Compiles one HTTPRoute's rules into `out`; `order` is its position in the configuration. Returns where
/// it attached (None when the configuration holds no Gateway, or the route has no spec).
///
/// File mode: a `parentRef` that does not attach is an error. Cluster mode: it is reported with its reason;
/// the route's rules go to `out` only if at least one `parentRef` attached.
pub(super) fn compile(
    route: &HttpRouteObject,
    order: usize,
    referents: &Referents<'_>,
    report: &mut Report,
    out: &mut Vec<RouteRule>,
) -> Option<RouteAttachments> {
    let id = route.metadata.id();
    let what = format!("HTTPRoute {id}");
    let namespace = route.metadata.namespace();
    let Some(spec) = &route.spec else {
        report.error(format!("{what}: spec: missing"));
        return None;
    };
    let route_hostnames: Vec<String> = spec
        .hostnames
        .iter()
        .flatten()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    let attachments = attach_parents(
        &what,
        &id,
        namespace,
        &route_hostnames,
        spec.parent_refs.as_deref().unwrap_or_default(),
        referents,
        report,
    );
    let hostnames = match &attachments {
        None => route_hostnames.clone(),
        Some(a) => match a.hostnames() {
            Some(h) => h.into_list(),
            // Attached nowhere: in cluster mode nothing is served. File mode has reported errors and goes on
            // to report the rules' problems too.
            None if referents.cluster.is_some() => return attachments,
            None => route_hostnames.clone(),
        },
    };
    let rules = spec.rules.as_deref().unwrap_or_default();
    if rules.is_empty() {
        report.warn(format!(
            "{what}: spec.rules: empty; the route matches nothing"
        ));
    }
    for (rule_index, rule) in rules.iter().enumerate() {
        let field = format!("spec.rules[{rule_index}]");
        let raw_matches = rule.matches.as_deref().unwrap_or_default();
        let mut matches: Vec<RequestMatch> = raw_matches
            .iter()
            .enumerate()
            .filter_map(|(mi, m)| {
                compile_match(m, &what, &format!("{field}.matches[{mi}]"), report)
            })
            .collect();
        if raw_matches.is_empty() {
            matches.push(RequestMatch::default_prefix());
        }

        // `ReplacePrefixMatch` replaces what the rule's one PathPrefix match matched (Gateway API allows it
        // only then); no `matches` means PathPrefix `/`.
        let prefix_match = match matches.as_slice() {
            [only] if raw_matches.len() <= 1 => match &only.path {
                PathMatch::Prefix(prefix) => Some(prefix.as_str()),
                _ => None,
            },
            _ => None,
        };
        let filter_field = format!("{field}.filters");
        let filters = filters::compile(
            rule.filters.as_deref().unwrap_or_default(),
            FilterLevel::Rule,
            prefix_match,
            &what,
            &filter_field,
            report,
        );

        let refs = rule.backend_refs.as_deref().unwrap_or_default();
        let mut backends = Vec::new();
        let mut unresolved_weight = 0;
        for (bi, r) in refs.iter().enumerate() {
            match compile_backend_ref(
                r,
                &what,
                namespace,
                &format!("{field}.backendRefs[{bi}]"),
                prefix_match,
                referents,
                report,
            ) {
                Resolved::Backend(b) => backends.push(*b),
                Resolved::Unresolved(weight) => unresolved_weight += weight,
                Resolved::Invalid => {}
            }
        }
        // Also when the redirect itself was rejected: the rule is meant to be answered by the gateway.
        let redirect_rule = rule
            .filters
            .iter()
            .flatten()
            .any(|f| f.filter_type.as_deref() == Some("RequestRedirect"));
        if redirect_rule {
            if !refs.is_empty() {
                report.error(format!(
                    "{what}: {field}.backendRefs: a rule with a RequestRedirect filter must not have backendRefs (Gateway API): the gateway answers it"
                ));
            }
        } else if refs.is_empty() {
            report.warn(format!(
                "{what}: {field}.backendRefs: empty; matching requests get 500 (Gateway API)"
            ));
        }
        if !filters.request.is_empty() {
            if let Some(raw) = backends
                .iter()
                .find(|b| b.backend.request_event == RequestEvent::Raw)
            {
                report.warn(format!(
                    "{what}: {filter_field}: Backend {} passes only the request body to its function (payloadTransformMode None), so the function does not see the headers or path these filters change",
                    raw.backend.id
                ));
            }
        }
        let timeout = rule
            .timeouts
            .as_ref()
            .map_or(referents.default_timeout, |t| {
                compile_timeouts(t, referents.default_timeout, &what, &field, report)
            });

        out.push(RouteRule {
            label: format!("{id}#{rule_index}"),
            route: id.clone(),
            rule_index,
            hostnames: hostnames.clone(),
            matches,
            backends,
            filters,
            unresolved_weight,
            timeout,
            order,
        });
    }
    attachments
}

/// Attaches the route through each `parentRef` (see [`super::attach`]). Without any Gateway in the
/// configuration, file mode serves routes on `--listen` (None).
fn attach_parents(
    what: &str,
    id: &str,
    namespace: &str,
    hostnames: &[String],
    parent_refs: &[ParentReference],
    referents: &Referents<'_>,
    report: &mut Report,
) -> Option<RouteAttachments> {
    if referents.gateway_ids.is_empty() && referents.cluster.is_none() {
        if !parent_refs.is_empty() {
            report.warn(format!("{what}: spec.parentRefs: no Gateway in the config files; the route is served on --listen"));
        }
        return None;
    }
    if parent_refs.is_empty() {
        report.error(format!(
            "{what}: spec.parentRefs: missing; the route must name the Gateway it attaches to"
        ));
    }
    let context = AttachContext {
        listeners: referents.listeners,
        namespace_labels: referents.cluster.as_ref().map(|c| c.namespace_labels),
    };
    let mut parents = Vec::new();
    for (i, parent) in parent_refs.iter().enumerate() {
        let field = format!("spec.parentRefs[{i}]");
        let kind = parent.kind.as_deref().unwrap_or("Gateway");
        if kind != "Gateway" {
            report.error(format!(
                "{what}: {field}.kind: {kind} is not supported (Gateway only)"
            ));
            continue;
        }
        let name = parent.name.as_deref().unwrap_or("");
        let ns = parent.namespace.as_deref().unwrap_or(namespace);
        let gateway_id = format!("{ns}/{name}");
        // Cluster mode is given only our Gateways (in scope): another one is not ours to report on.
        if referents.cluster.is_some() && !referents.gateway_ids.contains(&gateway_id) {
            continue;
        }
        let result = if referents.listeners.contains_key(&gateway_id) {
            attach(namespace, hostnames, parent, &gateway_id, &field, &context)
        } else if referents.gateway_ids.contains(&gateway_id) {
            Err((
                Reason::NoMatchingParent,
                format!("{field}.name"),
                format!("Gateway {gateway_id} is invalid (see its own errors)"),
            ))
        } else {
            Err((
                Reason::NoMatchingParent,
                format!("{field}.name"),
                format!("Gateway {gateway_id} not found in {}", referents.source()),
            ))
        };
        if let Err((reason, field, message)) = &result {
            report.problem(Problem::new(
                "HTTPRoute",
                id,
                field,
                *reason,
                message.clone(),
            ));
        }
        parents.push((parent.clone(), result));
    }
    Some(RouteAttachments { parents })
}

/// What a `backendRef` resolved to.
enum Resolved {
    Backend(Box<WeightedBackend>),
    /// Cannot be resolved (not found, not permitted, wrong kind): its weight answers 500.
    Unresolved(u32),
    /// The reference itself is malformed (a route error).
    Invalid,
}

fn compile_backend_ref(
    backend_ref: &HttpBackendRef,
    what: &str,
    namespace: &str,
    field: &str,
    prefix_match: Option<&str>,
    referents: &Referents<'_>,
    report: &mut Report,
) -> Resolved {
    let id = what.trim_start_matches("HTTPRoute ");
    let weight = match backend_ref.weight {
        None => 1,
        Some(w) if (0..=MAX_WEIGHT).contains(&w) => w as u32,
        Some(_) => {
            report.error(format!(
                "{what}: {field}.weight: must be an integer from 0 to 1000000"
            ));
            return Resolved::Invalid;
        }
    };
    let group = backend_ref.group.as_deref().unwrap_or("");
    let kind = backend_ref.kind.as_deref().unwrap_or("Service");
    if group != KGATEWAY_GROUP || kind != "Backend" {
        report.problem(Problem::new(
            "HTTPRoute",
            id,
            field,
            Reason::InvalidKind,
            format!("{kind} (group {group:?}) is not supported; reference a kgateway Backend (group: gateway.kgateway.dev, kind: Backend)"),
        ));
        return Resolved::Unresolved(weight);
    }
    let name = backend_ref.name.as_deref().unwrap_or("");
    let ns = backend_ref.namespace.as_deref().unwrap_or(namespace);
    let backend_id = format!("{ns}/{name}");
    if let Some(cluster) = &referents.cluster {
        let reference = CrossReference {
            from_group: GATEWAY_API_GROUP,
            from_kind: "HTTPRoute",
            from_namespace: namespace,
            to_group: KGATEWAY_GROUP,
            to_kind: "Backend",
            to_namespace: ns,
            to_name: name,
        };
        if !permits(cluster.reference_grants, &reference) {
            report.problem(Problem::new(
                "HTTPRoute",
                id,
                &format!("{field}.namespace"),
                Reason::RefNotPermitted,
                format!("Backend {backend_id} is in another namespace and no ReferenceGrant in {ns} permits HTTPRoutes from {namespace} to refer to it"),
            ));
            return Resolved::Unresolved(weight);
        }
    }
    let filters = match &backend_ref.filters {
        None => Filters::default(),
        Some(raw) => {
            let filter_field = format!("{field}.filters");
            let filters = filters::compile(
                raw,
                FilterLevel::BackendRef,
                prefix_match,
                what,
                &filter_field,
                report,
            );
            let raw_event = referents
                .backends
                .get(&backend_id)
                .is_some_and(|b| b.request_event == RequestEvent::Raw);
            if raw_event && !filters.request.is_empty() {
                report.warn(format!(
                    "{what}: {filter_field}: Backend {backend_id} passes only the request body to its function (payloadTransformMode None), so the function does not see the headers or path these filters change"
                ));
            }
            filters
        }
    };
    let field = format!("{field}.name");
    match referents.backends.get(&backend_id) {
        Some(backend) => Resolved::Backend(Box::new(WeightedBackend {
            backend: backend.clone(),
            weight,
            metrics: Default::default(),
            filters,
        })),
        None if referents.backend_ids.contains(&backend_id) => {
            let message = match (
                &referents.cluster,
                referents.backend_problems.get(&backend_id),
            ) {
                (Some(_), Some(problems)) => {
                    format!("Backend {backend_id} is invalid: {}", problems.join("; "))
                }
                _ => format!("Backend {backend_id} is invalid (see its own errors)"),
            };
            report.problem(Problem::new(
                "HTTPRoute",
                id,
                &field,
                Reason::BackendNotFound,
                message,
            ));
            Resolved::Unresolved(weight)
        }
        None => {
            report.problem(Problem::new(
                "HTTPRoute",
                id,
                &field,
                Reason::BackendNotFound,
                format!("Backend {backend_id} not found in {}", referents.source()),
            ));
            Resolved::Unresolved(weight)
        }
    }
}

/// The Lambda call is the whole request, so the shorter of `request` and `backendRequest` applies.
fn compile_timeouts(
    timeouts: &HttpRouteTimeouts,
    default_timeout: Duration,
    what: &str,
    field: &str,
    report: &mut Report,
) -> Duration {
    let mut timeout = default_timeout;
    for (key, text) in [
        ("request", &timeouts.request),
        ("backendRequest", &timeouts.backend_request),
    ] {
        let Some(text) = text else { continue };
        match parse_duration(text) {
            Some(Duration::ZERO) => timeout = timeout.max(UNBOUNDED_TIMEOUT),
            Some(d) => timeout = if key == "request" { d } else { timeout.min(d) },
            None => report.error(format!(
                "{what}: {field}.timeouts.{key}: {text:?} is not a Gateway API duration (e.g. 10s, 500ms, 1m30s)"
            )),
        }
    }
    timeout
}

fn compile_match(
    raw: &HttpRouteMatch,
    what: &str,
    field: &str,
    report: &mut Report,
) -> Option<RequestMatch> {
    let mut errors = false;
    let path = match &raw.path {
        None => PathMatch::Prefix("/".to_string()),
        Some(path) => {
            let kind = path.match_type.as_deref().unwrap_or("PathPrefix");
            let value = path.value.as_deref().unwrap_or("/");
            match kind {
                "PathPrefix" | "Exact" if !value.starts_with('/') => {
                    report.error(format!(
                        "{what}: {field}.path.value: {value:?} must start with '/'"
                    ));
                    errors = true;
                    PathMatch::Prefix("/".into())
                }
                "PathPrefix" => {
                    let trimmed = value.trim_end_matches('/');
                    PathMatch::Prefix(if trimmed.is_empty() {
                        "/".into()
                    } else {
                        trimmed.to_string()
                    })
                }
                "Exact" => PathMatch::Exact(value.to_string()),
                "RegularExpression" => match Regex::new(&format!("^(?:{value})$")) {
                    Ok(re) => PathMatch::Regex(re),
                    Err(e) => {
                        report.error(format!(
                            "{what}: {field}.path.value: invalid regular expression: {e}"
                        ));
                        errors = true;
                        PathMatch::Prefix("/".into())
                    }
                },
                other => {
                    report.error(format!("{what}: {field}.path.type: {other:?} is not PathPrefix, Exact or RegularExpression"));
                    errors = true;
                    PathMatch::Prefix("/".into())
                }
            }
        }
    };
    let method = raw.method.as_ref().map(|m| m.to_ascii_uppercase());
    let mut headers = Vec::new();
    for (i, h) in raw.headers.iter().flatten().enumerate() {
        match compile_string_match(h, what, &format!("{field}.headers[{i}]"), report) {
            Some((name, value)) => headers.push(HeaderMatch {
                name: name.to_ascii_lowercase(),
                value,
            }),
            None => errors = true,
        }
    }
    let mut query = Vec::new();
    for (i, q) in raw.query_params.iter().flatten().enumerate() {
        match compile_string_match(q, what, &format!("{field}.queryParams[{i}]"), report) {
            Some((name, value)) => query.push(QueryMatch { name, value }),
            None => errors = true,
        }
    }
    (!errors).then_some(RequestMatch {
        path,
        method,
        headers,
        query,
    })
}

fn compile_string_match(
    raw: &NamedValueMatch,
    what: &str,
    field: &str,
    report: &mut Report,
) -> Option<(String, StringMatch)> {
    let (Some(name), Some(value)) = (&raw.name, &raw.value) else {
        report.error(format!("{what}: {field}: name and value are required"));
        return None;
    };
    match raw.match_type.as_deref().unwrap_or("Exact") {
        "Exact" => Some((name.clone(), StringMatch::Exact(value.clone()))),
        "RegularExpression" => match Regex::new(&format!("^(?:{value})$")) {
            Ok(re) => Some((name.clone(), StringMatch::Regex(re))),
            Err(e) => {
                report.error(format!(
                    "{what}: {field}.value: invalid regular expression: {e}"
                ));
                None
            }
        },
        other => {
            report.error(format!(
                "{what}: {field}.type: {other:?} is not Exact or RegularExpression"
            ));
            None
        }
    }
}
