//! Gateway API `HTTPRoute` (`gateway.networking.k8s.io/v1`, `v1beta1`): the typed object and its compilation
//! to [`RouteRule`]s — parent Gateways and listeners, hostnames, matches (path, method, headers, query
//! parameters), weighted kgateway `Backend` references, timeouts, and filters (`rules[].filters` and
//! `rules[].backendRefs[].filters`, compiled by [`filters`]).
//!
//! Not implemented (reported as unsupported fields): `retry`, `sessionPersistence`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;

use super::duration::parse_duration;
use super::filters::{self, FilterLevel, HttpRouteFilter};
use super::gateway::Listeners;
use super::meta::ObjectMeta;
use super::report::Report;
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

#[derive(Debug, Clone, Default, Deserialize)]
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
    pub default_timeout: Duration,
}

/// Compiles one HTTPRoute's rules into `out`; `order` is its position in the configuration.
pub(super) fn compile(
    route: &HttpRouteObject,
    order: usize,
    referents: &Referents<'_>,
    report: &mut Report,
    out: &mut Vec<RouteRule>,
) {
    let id = route.metadata.id();
    let what = format!("HTTPRoute {id}");
    let namespace = route.metadata.namespace();
    let Some(spec) = &route.spec else {
        report.error(format!("{what}: spec: missing"));
        return;
    };
    check_parents(
        &what,
        namespace,
        spec.parent_refs.as_deref().unwrap_or_default(),
        referents,
        report,
    );

    let hostnames: Vec<String> = spec
        .hostnames
        .iter()
        .flatten()
        .map(|h| h.to_ascii_lowercase())
        .collect();
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
        let backends: Vec<WeightedBackend> = refs
            .iter()
            .enumerate()
            .filter_map(|(bi, r)| {
                compile_backend_ref(
                    r,
                    &what,
                    namespace,
                    &format!("{field}.backendRefs[{bi}]"),
                    prefix_match,
                    referents,
                    report,
                )
            })
            .collect();
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
            timeout,
            order,
        });
    }
}

/// Every referenced Gateway (and listener) must exist when the configuration holds Gateways; without any,
/// routes are served on `--listen`.
fn check_parents(
    what: &str,
    namespace: &str,
    parent_refs: &[ParentReference],
    referents: &Referents<'_>,
    report: &mut Report,
) {
    if referents.gateway_ids.is_empty() {
        if !parent_refs.is_empty() {
            report.warn(format!("{what}: spec.parentRefs: no Gateway in the config files; the route is served on --listen"));
        }
        return;
    }
    if parent_refs.is_empty() {
        report.error(format!(
            "{what}: spec.parentRefs: missing; the route must name the Gateway it attaches to"
        ));
    }
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
        match referents.listeners.get(&gateway_id) {
            None if referents.gateway_ids.contains(&gateway_id) => report.error(format!(
                "{what}: {field}.name: Gateway {gateway_id} is invalid (see its own errors)"
            )),
            None => report.error(format!(
                "{what}: {field}.name: Gateway {gateway_id} not found in the config files"
            )),
            Some(listeners) => {
                if let Some(section) = &parent.section_name {
                    if !listeners.iter().any(|l| &l.name == section) {
                        report.error(format!("{what}: {field}.sectionName: Gateway {gateway_id} has no HTTP listener named {section:?}"));
                    }
                }
            }
        }
    }
}

fn compile_backend_ref(
    backend_ref: &HttpBackendRef,
    what: &str,
    namespace: &str,
    field: &str,
    prefix_match: Option<&str>,
    referents: &Referents<'_>,
    report: &mut Report,
) -> Option<WeightedBackend> {
    let group = backend_ref.group.as_deref().unwrap_or("");
    let kind = backend_ref.kind.as_deref().unwrap_or("Service");
    if group != "gateway.kgateway.dev" || kind != "Backend" {
        report.error(format!(
            "{what}: {field}: {kind} (group {group:?}) is not supported; reference a kgateway Backend (group: gateway.kgateway.dev, kind: Backend)"
        ));
        return None;
    }
    let name = backend_ref.name.as_deref().unwrap_or("");
    let ns = backend_ref.namespace.as_deref().unwrap_or(namespace);
    let backend_id = format!("{ns}/{name}");
    let weight = match backend_ref.weight {
        None => 1,
        Some(w) if (0..=MAX_WEIGHT).contains(&w) => w as u32,
        Some(_) => {
            report.error(format!(
                "{what}: {field}.weight: must be an integer from 0 to 1000000"
            ));
            return None;
        }
    };
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
    match referents.backends.get(&backend_id) {
        Some(backend) => Some(WeightedBackend {
            backend: backend.clone(),
            weight,
            metrics: Default::default(),
            filters,
        }),
        None if referents.backend_ids.contains(&backend_id) => {
            report.error(format!(
                "{what}: {field}.name: Backend {backend_id} is invalid (see its own errors)"
            ));
            None
        }
        None => {
            report.error(format!(
                "{what}: {field}.name: Backend {backend_id} not found in the config files"
            ));
            None
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
