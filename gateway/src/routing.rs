//! Route resolution: which HTTPRoute rule (and which weighted Backend) serves a request. Pure.
//!
//! Precedence follows Gateway API: among matching rules, an Exact path beats a PathPrefix, which beats a
//! RegularExpression (implementation-specific in the spec); then the longer path value; then a method match;
//! then more header matches; then more query-parameter matches; then the route that comes first in the files.
//!
//! A [`RouteRule`] (and each of its [`WeightedBackend`]s) carries its compiled HTTPRoute filters
//! ([`crate::model::filters`]); routing itself never looks at them.

use std::sync::Arc;
use std::time::Duration;

use regex::Regex;

use crate::model::{Backend, Filters};

#[derive(Debug, Clone)]
pub enum PathMatch {
    Exact(String),
    /// Stored without a trailing slash (except the root `/`); matches whole path segments.
    Prefix(String),
    Regex(Regex),
}

#[derive(Debug, Clone)]
pub enum StringMatch {
    Exact(String),
    Regex(Regex),
}

impl StringMatch {
    fn matches(&self, value: &str) -> bool {
        match self {
            StringMatch::Exact(v) => v == value,
            StringMatch::Regex(re) => re.is_match(value),
        }
    }
}

#[derive(Debug, Clone)]
pub struct HeaderMatch {
    /// Lower case.
    pub name: String,
    pub value: StringMatch,
}

#[derive(Debug, Clone)]
pub struct QueryMatch {
    pub name: String,
    pub value: StringMatch,
}

#[derive(Debug, Clone)]
pub struct RequestMatch {
    pub path: PathMatch,
    pub method: Option<String>,
    pub headers: Vec<HeaderMatch>,
    pub query: Vec<QueryMatch>,
}

impl RequestMatch {
    /// What a rule without `matches` gets: PathPrefix `/`.
    pub fn default_prefix() -> Self {
        RequestMatch {
            path: PathMatch::Prefix("/".into()),
            method: None,
            headers: vec![],
            query: vec![],
        }
    }

    fn matches(&self, request: &RequestView<'_>) -> bool {
        let path_ok = match &self.path {
            PathMatch::Exact(p) => request.path == p,
            PathMatch::Prefix(p) => prefix_matches(p, request.path),
            PathMatch::Regex(re) => re.is_match(request.path),
        };
        path_ok
            && self.method.as_deref().is_none_or(|m| m == request.method)
            && self.headers.iter().all(|h| {
                request.headers.iter().any(|(name, value)| {
                    name.eq_ignore_ascii_case(&h.name) && h.value.matches(value)
                })
            })
            && self.query.iter().all(|q| {
                // Gateway API: with repeated parameters, the first value is the one matched.
                request
                    .query
                    .iter()
                    .find(|(name, _)| name == &q.name)
                    .is_some_and(|(_, value)| q.value.matches(value))
            })
    }

    /// Higher sorts first.
    fn precedence(&self) -> (u8, usize, bool, usize, usize) {
        let (kind, len) = match &self.path {
            PathMatch::Exact(p) => (3, p.len()),
            PathMatch::Prefix(p) => (2, p.len()),
            PathMatch::Regex(re) => (1, re.as_str().len()),
        };
        (
            kind,
            len,
            self.method.is_some(),
            self.headers.len(),
            self.query.len(),
        )
    }
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[derive(Debug, Clone)]
pub struct WeightedBackend {
    pub backend: Arc<Backend>,
    pub weight: u32,
    /// This rule's metric series for this backend, resolved on first use.
    pub metrics: crate::metrics::RouteHandles,
    /// `backendRefs[].filters`: applied after the rule's filters when this backend is picked.
    pub filters: Filters,
}

/// One HTTPRoute rule, compiled.
#[derive(Debug, Clone)]
pub struct RouteRule {
    /// `namespace/name` of the HTTPRoute.
    pub route: String,
    pub rule_index: usize,
    /// Lower-case `spec.hostnames` (`*.example.com` wildcards allowed); empty = any host.
    pub hostnames: Vec<String>,
    pub matches: Vec<RequestMatch>,
    pub backends: Vec<WeightedBackend>,
    /// `rules[].filters`. A rule with a redirect has no backends: the gateway answers it.
    pub filters: Filters,
    /// The summed weight of `backendRefs` that could not be resolved (cluster mode: a missing Backend, a
    /// reference no ReferenceGrant permits, a kind podcred does not serve). Gateway API: that share of the
    /// requests gets 500.
    pub unresolved_weight: u32,
    pub timeout: Duration,
    /// Position of the HTTPRoute in the files (the final tie-breaker).
    pub order: usize,
    /// Metric/log label: `namespace/name#rule`.
    pub label: String,
}

impl RouteRule {
    /// Picks a backend by weight; `roll` is a uniformly random u32 (injected for tests).
    /// None when the rule has no backend with a positive weight, or the roll falls on the share of
    /// unresolved references (Gateway API: answer 500).
    pub fn pick_backend(&self, roll: u32) -> Option<&Arc<Backend>> {
        self.pick(roll).map(|b| &b.backend)
    }

    /// [`RouteRule::pick_backend`], returning the weighted entry (with its metric handles).
    pub fn pick(&self, roll: u32) -> Option<&WeightedBackend> {
        let resolved: u64 = self.backends.iter().map(|b| u64::from(b.weight)).sum();
        let total = resolved + u64::from(self.unresolved_weight);
        if total == 0 {
            return None;
        }
        let mut point = u64::from(roll) % total;
        for b in &self.backends {
            let w = u64::from(b.weight);
            if point < w {
                return Some(b);
            }
            point -= w;
        }
        None
    }

    /// Metric/log label: `namespace/name#rule`.
    pub fn label(&self) -> &str {
        &self.label
    }
}

/// The request attributes routing looks at.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// Host without port, lower case.
    pub host: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    /// Decoded query parameters in order.
    pub query: &'a [(String, String)],
}

fn host_matches(patterns: &[String], host: &str) -> bool {
    patterns.is_empty()
        || patterns.iter().any(|p| match p.strip_prefix("*.") {
            Some(suffix) => {
                host.len() > suffix.len() + 1
                    && host.ends_with(suffix)
                    && host[..host.len() - suffix.len()].ends_with('.')
            }
            None => p == host,
        })
}

/// All rules, with their matches flattened and sorted by precedence.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    rules: Vec<RouteRule>,
    /// (rule index, match index), best first.
    order: Vec<(usize, usize)>,
}

impl RouteTable {
    pub fn new(rules: Vec<RouteRule>) -> Self {
        let mut order: Vec<(usize, usize)> = Vec::new();
        for (ri, rule) in rules.iter().enumerate() {
            for mi in 0..rule.matches.len() {
                order.push((ri, mi));
            }
        }
        order.sort_by(|&(ra, ma), &(rb, mb)| {
            let (a, b) = (&rules[ra], &rules[rb]);
            b.matches[mb]
                .precedence()
                .cmp(&a.matches[ma].precedence())
                .then(a.order.cmp(&b.order))
                .then(a.rule_index.cmp(&b.rule_index))
        });
        RouteTable { rules, order }
    }

    pub fn rules(&self) -> &[RouteRule] {
        &self.rules
    }

    pub fn resolve(&self, request: &RequestView<'_>) -> Option<&RouteRule> {
        self.order
            .iter()
            .map(|&(ri, mi)| (&self.rules[ri], mi))
            .find_map(|(rule, mi)| {
                (host_matches(&rule.hostnames, request.host) && rule.matches[mi].matches(request))
                    .then_some(rule)
            })
    }
}

/// Parses a raw query string into decoded (name, value) pairs.
pub fn parse_query(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|q| {
        form_urlencoded::parse(q.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{compile, LoadOptions};

    /// Fixture: several routes exercising every match kind; each case is (method, path, headers, query,
    /// host, expected "route#rule" or None).
    const ROUTES: &str = r#"
apiVersion: gateway.kgateway.dev/v1alpha1
kind: Backend
metadata: {name: a, namespace: ns}
spec: {type: AWS, aws: {lambda: {functionName: a}}}
---
apiVersion: gateway.kgateway.dev/v1alpha1
kind: Backend
metadata: {name: b, namespace: ns}
spec: {type: AWS, aws: {lambda: {functionName: b}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r1, namespace: ns}
spec:
  rules:
  - matches: [{path: {type: PathPrefix, value: /echo}}]
    backendRefs: [{group: gateway.kgateway.dev, kind: Backend, name: a}]
  - matches: [{path: {type: Exact, value: /echo/exact}}]
    backendRefs: [{group: gateway.kgateway.dev, kind: Backend, name: b}]
  - matches: [{path: {type: PathPrefix, value: /echo}, method: PUT}]
    backendRefs: [{group: gateway.kgateway.dev, kind: Backend, name: b}]
  - matches:
    - path: {type: PathPrefix, value: /echo}
      headers: [{name: X-Canary, value: "yes"}]
    backendRefs: [{group: gateway.kgateway.dev, kind: Backend, name: b}]
  - matches:
    - path: {type: RegularExpression, value: "/items/[0-9]+"}
    backendRefs: [{group: gateway.kgateway.dev, kind: Backend, name: a}]
  - matches:
    - path: {type: PathPrefix, value: /q}
      queryParams: [{name: v, type: RegularExpression, value: "2|3"}]
    backendRefs: [{group: gateway.kgateway.dev, kind: Backend, name: b}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r2, namespace: ns}
spec:
  hostnames: ["*.example.com"]
  rules:
  - matches: [{path: {type: PathPrefix, value: /host}}]
    backendRefs: [{group: gateway.kgateway.dev, kind: Backend, name: b}]
"#;

    #[allow(clippy::type_complexity)]
    const CASES: &[(&str, &str, &[(&str, &str)], &str, &str, Option<&str>)] = &[
        ("POST", "/echo", &[], "", "localhost", Some("ns/r1#0")),
        ("POST", "/echo/", &[], "", "localhost", Some("ns/r1#0")),
        (
            "GET",
            "/echo/deeper/path",
            &[],
            "",
            "localhost",
            Some("ns/r1#0"),
        ),
        ("POST", "/echoes", &[], "", "localhost", None),
        ("POST", "/echo/exact", &[], "", "localhost", Some("ns/r1#1")),
        ("PUT", "/echo", &[], "", "localhost", Some("ns/r1#2")),
        (
            "POST",
            "/echo",
            &[("x-canary", "yes")],
            "",
            "localhost",
            Some("ns/r1#3"),
        ),
        (
            "POST",
            "/echo",
            &[("X-CANARY", "no")],
            "",
            "localhost",
            Some("ns/r1#0"),
        ),
        ("GET", "/items/42", &[], "", "localhost", Some("ns/r1#4")),
        ("GET", "/items/abc", &[], "", "localhost", None),
        ("GET", "/q", &[], "v=3&v=1", "localhost", Some("ns/r1#5")),
        ("GET", "/q", &[], "v=1&v=3", "localhost", None),
        ("GET", "/host", &[], "", "api.example.com", Some("ns/r2#0")),
        ("GET", "/host", &[], "", "example.com", None),
    ];

    #[test]
    fn routes_resolve_by_gateway_api_precedence() {
        let config =
            compile(&[("routes.yaml", ROUTES)], &LoadOptions::default()).expect("fixture compiles");
        for (method, path, headers, query, host, expected) in CASES {
            let query = parse_query(Some(query));
            let view = RequestView {
                method,
                path,
                host,
                headers,
                query: &query,
            };
            let got = config.routes.resolve(&view).map(RouteRule::label);
            assert_eq!(
                got, *expected,
                "{method} {path} {headers:?} {query:?} host={host}"
            );
        }
    }

    #[test]
    fn weighted_backends_split_by_weight_and_zero_weight_never_wins() {
        let config = compile(
            &[(
                "w.yaml",
                &format!(
                    "{ROUTES}---\n{}",
                    r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: w, namespace: ns}
spec:
  rules:
  - matches: [{path: {type: Exact, value: /split}}]
    backendRefs:
    - {group: gateway.kgateway.dev, kind: Backend, name: a, weight: 90}
    - {group: gateway.kgateway.dev, kind: Backend, name: b, weight: 10}
    - {group: gateway.kgateway.dev, kind: Backend, name: b, weight: 0}
"#
                ),
            )],
            &LoadOptions::default(),
        )
        .expect("compiles");
        let rule = config
            .routes
            .rules()
            .iter()
            .find(|r| r.route == "ns/w")
            .expect("rule");
        let mut counts = std::collections::HashMap::new();
        for roll in 0..100u32 {
            *counts
                .entry(rule.pick_backend(roll).expect("backend").id.clone())
                .or_insert(0) += 1;
        }
        assert_eq!(counts.get("ns/a"), Some(&90));
        assert_eq!(counts.get("ns/b"), Some(&10));
    }

    #[test]
    fn the_share_of_unresolved_backend_refs_answers_500() {
        let config = compile(&[("r.yaml", ROUTES)], &LoadOptions::default()).expect("compiles");
        let mut rule = config.routes.rules()[0].clone();
        rule.unresolved_weight = 3;
        let picked: Vec<bool> = (0..4u32).map(|roll| rule.pick(roll).is_some()).collect();
        assert_eq!(
            picked,
            [true, false, false, false],
            "1 resolved : 3 unresolved"
        );
        rule.backends.clear();
        assert!((0..4u32).all(|roll| rule.pick(roll).is_none()));
    }
}
