//! Gateway API `HTTPRouteFilter` (`rules[].filters`, `rules[].backendRefs[].filters`): the typed objects and
//! their compilation to [`Filters`], with the checks the Gateway API CRDs make (so file mode rejects what the
//! API server would) and the ones its documentation leaves to implementations.
//!
//! Contract:
//! - Supported: [`SUPPORTED_FILTERS`] — `RequestHeaderModifier` and `RequestRedirect` (core),
//!   `ResponseHeaderModifier` and `URLRewrite` (extended). Any other type (`RequestMirror`, `CORS`,
//!   `ExtensionRef`, a type Gateway API adds later) is an error on that filter's `type`, phrased
//!   `"<type>" is not a supported filter type (supported: …)`: silently skipping a filter would serve the route
//!   differently than written, and Gateway API asks for `Accepted=False/UnsupportedValue`.
//! - `RequestRedirect` is a rule filter only: in `backendRefs[].filters` it is an error (the gateway answers a
//!   redirect before any backend is picked). The other three work at both levels; a backendRef's filters apply
//!   after the rule's, when that backend is picked.
//! - Errors, each naming the field: a missing or mismatched filter configuration field, a type given twice,
//!   `RequestRedirect` with `URLRewrite`, `ReplacePrefixMatch` without exactly one `PathPrefix` match, invalid
//!   header names, empty or invalid header values, a header named twice in one modifier, a framing or
//!   hop-by-hop header in `ResponseHeaderModifier`, hostnames that are not lower-case RFC 1123 names, ports
//!   outside 1–65535, schemes other than http/https, status codes other than 301/302/303/307/308, and paths
//!   that do not start with `/` or carry a query or fragment. Header values never appear in a message (a
//!   filter may set a credential).

use std::collections::HashMap;

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::report::Report;
use crate::model::filters::is_hop_by_hop_or_framing;
use crate::model::{
    Filters, HeaderModifier, PathModifier, Redirect, RequestFilter, Scheme, UrlRewrite,
};

/// The `HTTPRouteFilter` types the gateway applies; every other type is a configuration error.
pub const SUPPORTED_FILTERS: &[&str] = &[
    "RequestHeaderModifier",
    "ResponseHeaderModifier",
    "RequestRedirect",
    "URLRewrite",
];

/// Gateway API's `HTTPHeaderName` length limit and `HTTPHeader.value` limit.
const MAX_HEADER_NAME: usize = 256;
const MAX_HEADER_VALUE: usize = 4096;
const MAX_PATH: usize = 1024;
const MAX_HOSTNAME: usize = 253;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename = "HTTPRouteFilter", rename_all = "camelCase")]
pub struct HttpRouteFilter {
    #[serde(rename = "type")]
    pub filter_type: Option<String>,
    pub request_header_modifier: Option<HttpHeaderFilter>,
    pub response_header_modifier: Option<HttpHeaderFilter>,
    pub request_redirect: Option<HttpRequestRedirectFilter>,
    pub url_rewrite: Option<HttpUrlRewriteFilter>,
    /// Configuration of types podcred does not implement: read only to report the type, never interpreted.
    pub request_mirror: Option<IgnoredAny>,
    pub cors: Option<IgnoredAny>,
    pub extension_ref: Option<IgnoredAny>,
    pub external_auth: Option<IgnoredAny>,
}

impl HttpRouteFilter {
    /// Each configuration field with the filter type it belongs to, and whether it is present.
    fn config_fields(&self) -> [(&'static str, &'static str, bool); 8] {
        [
            (
                "requestHeaderModifier",
                "RequestHeaderModifier",
                self.request_header_modifier.is_some(),
            ),
            (
                "responseHeaderModifier",
                "ResponseHeaderModifier",
                self.response_header_modifier.is_some(),
            ),
            (
                "requestRedirect",
                "RequestRedirect",
                self.request_redirect.is_some(),
            ),
            ("urlRewrite", "URLRewrite", self.url_rewrite.is_some()),
            (
                "requestMirror",
                "RequestMirror",
                self.request_mirror.is_some(),
            ),
            ("cors", "CORS", self.cors.is_some()),
            ("extensionRef", "ExtensionRef", self.extension_ref.is_some()),
            ("externalAuth", "ExternalAuth", self.external_auth.is_some()),
        ]
    }
}

/// `HTTPHeaderFilter` (`requestHeaderModifier`, `responseHeaderModifier`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename = "HTTPHeaderFilter", rename_all = "camelCase")]
pub struct HttpHeaderFilter {
    pub set: Option<Vec<HttpHeader>>,
    pub add: Option<Vec<HttpHeader>>,
    pub remove: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename = "HTTPHeader", rename_all = "camelCase")]
pub struct HttpHeader {
    pub name: Option<String>,
    pub value: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename = "HTTPRequestRedirectFilter", rename_all = "camelCase")]
pub struct HttpRequestRedirectFilter {
    pub scheme: Option<String>,
    pub hostname: Option<String>,
    pub path: Option<HttpPathModifier>,
    /// A wider type so an out-of-range number gets our message.
    pub port: Option<i64>,
    pub status_code: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename = "HTTPURLRewriteFilter", rename_all = "camelCase")]
pub struct HttpUrlRewriteFilter {
    pub hostname: Option<String>,
    pub path: Option<HttpPathModifier>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename = "HTTPPathModifier", rename_all = "camelCase")]
pub struct HttpPathModifier {
    #[serde(rename = "type")]
    pub modifier_type: Option<String>,
    pub replace_full_path: Option<String>,
    pub replace_prefix_match: Option<String>,
}

/// Where a filter list is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FilterLevel {
    Rule,
    BackendRef,
}

/// Names the object and the list in problem lines: `HTTPRoute ns/r: spec.rules[0].filters[1].type: …`.
struct At<'a> {
    what: &'a str,
    report: &'a mut Report,
}

impl At<'_> {
    fn error(&mut self, field: &str, problem: impl std::fmt::Display) {
        self.report
            .error(format!("{}: {field}: {problem}", self.what));
    }

    /// A value Gateway API lets an implementation refuse, with the route's `Accepted=False` reason
    /// `UnsupportedValue` (a filter type, scheme, status code or path modifier type podcred does not serve).
    /// An error like the others today; kept apart so route status can give that reason.
    fn unsupported(&mut self, field: &str, problem: impl std::fmt::Display) {
        self.error(field, problem);
    }
}

/// Compiles one filter list (`field` is its path, e.g. `spec.rules[0].filters`). `prefix_match` is the rule's
/// single PathPrefix match, when it has exactly one match and that match is a PathPrefix: the only case in
/// which `ReplacePrefixMatch` is allowed.
pub(super) fn compile(
    raw: &[HttpRouteFilter],
    level: FilterLevel,
    prefix_match: Option<&str>,
    what: &str,
    field: &str,
    report: &mut Report,
) -> Filters {
    let mut at = At { what, report };
    let mut filters = Filters::default();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (index, filter) in raw.iter().enumerate() {
        let field = format!("{field}[{index}]");
        let Some(filter_type) = filter.filter_type.as_deref() else {
            at.error(
                &format!("{field}.type"),
                format_args!("missing; one of {}", SUPPORTED_FILTERS.join(", ")),
            );
            continue;
        };
        for (name, owner, present) in filter.config_fields() {
            if present && owner != filter_type {
                at.error(
                    &format!("{field}.{name}"),
                    format_args!("must be omitted unless type is {owner}"),
                );
            }
        }
        if !SUPPORTED_FILTERS.contains(&filter_type) {
            at.unsupported(
                &format!("{field}.type"),
                format_args!(
                    "{filter_type:?} is not a supported filter type (supported: {})",
                    SUPPORTED_FILTERS.join(", ")
                ),
            );
            continue;
        }
        if let Some(first) = seen.insert(filter_type, index) {
            at.error(
                &format!("{field}.type"),
                format_args!("{filter_type} is already filters[{first}]; each filter type may appear once per list (Gateway API)"),
            );
            continue;
        }
        let (redirect_at, rewrite_at) = (seen.get("RequestRedirect"), seen.get("URLRewrite"));
        if let (Some(redirect), Some(rewrite)) = (redirect_at, rewrite_at) {
            let (first, second) = if redirect < rewrite {
                ("RequestRedirect", "URLRewrite")
            } else {
                ("URLRewrite", "RequestRedirect")
            };
            at.error(
                &format!("{field}.type"),
                format_args!("{second} cannot be combined with {first} in one list (Gateway API)"),
            );
            continue;
        }
        let missing = |at: &mut At<'_>, name: &str| {
            at.error(
                &format!("{field}.{name}"),
                format_args!("missing; required for type {filter_type}"),
            )
        };
        match filter_type {
            "RequestHeaderModifier" => match &filter.request_header_modifier {
                None => missing(&mut at, "requestHeaderModifier"),
                Some(raw) => {
                    let field = format!("{field}.requestHeaderModifier");
                    if let Some(m) = header_modifier(raw, false, &field, &mut at) {
                        filters.request.push(RequestFilter::Headers(m));
                    }
                }
            },
            "ResponseHeaderModifier" => match &filter.response_header_modifier {
                None => missing(&mut at, "responseHeaderModifier"),
                Some(raw) => {
                    let field = format!("{field}.responseHeaderModifier");
                    filters.response_headers = header_modifier(raw, true, &field, &mut at);
                }
            },
            "URLRewrite" => match &filter.url_rewrite {
                None => missing(&mut at, "urlRewrite"),
                Some(raw) => {
                    let field = format!("{field}.urlRewrite");
                    if let Some(rewrite) = url_rewrite(raw, prefix_match, &field, &mut at) {
                        filters.request.push(RequestFilter::Rewrite(rewrite));
                    }
                }
            },
            "RequestRedirect" if level == FilterLevel::BackendRef => at.unsupported(
                &format!("{field}.type"),
                "RequestRedirect is not supported in backendRefs[].filters (the gateway answers a redirect before it picks a backend); put it in the rule's filters, without backendRefs",
            ),
            "RequestRedirect" => match &filter.request_redirect {
                None => missing(&mut at, "requestRedirect"),
                Some(raw) => {
                    let field = format!("{field}.requestRedirect");
                    filters.redirect = redirect(raw, prefix_match, &field, &mut at);
                }
            },
            _ => unreachable!("SUPPORTED_FILTERS lists exactly the types handled above"),
        }
    }
    filters
}

/// `^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$` (RFC 7230 token), at most 256 characters.
fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_HEADER_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn header_modifier(
    raw: &HttpHeaderFilter,
    response: bool,
    field: &str,
    at: &mut At<'_>,
) -> Option<HeaderModifier> {
    let errors_before = at.report.error_count();
    // Lower-case name → where it was first given, so a second mention names the first.
    let mut named: HashMap<String, String> = HashMap::new();
    let mut check_name = |at: &mut At<'_>, name: &str, name_field: String| -> Option<String> {
        if !valid_header_name(name) {
            at.error(
                &name_field,
                format_args!(
                    "{name:?} is not a valid header name (letters, digits and !#$%&'*+-.^_`|~, at most {MAX_HEADER_NAME})"
                ),
            );
            return None;
        }
        let lower = name.to_ascii_lowercase();
        if response && is_hop_by_hop_or_framing(&lower) {
            at.error(
                &name_field,
                format_args!(
                    "{lower:?} is a framing or hop-by-hop header, which the gateway sets itself"
                ),
            );
            return None;
        }
        if let Some(first) = named.get(&lower) {
            at.error(
                &name_field,
                format_args!("header {lower:?} is already named at {first}; name each header once per filter"),
            );
            return None;
        }
        let relative = name_field
            .strip_prefix(field)
            .map_or(name_field.as_str(), |tail| tail.trim_start_matches('.'));
        named.insert(lower.clone(), relative.to_string());
        Some(lower)
    };
    let mut pairs = |at: &mut At<'_>, list: &Option<Vec<HttpHeader>>, key: &str| {
        let mut out = Vec::new();
        for (i, header) in list.iter().flatten().enumerate() {
            let entry = format!("{field}.{key}[{i}]");
            let (Some(name), Some(value)) = (&header.name, &header.value) else {
                at.error(&entry, "name and value are required");
                continue;
            };
            let Some(lower) = check_name(at, name, format!("{entry}.name")) else {
                continue;
            };
            // The value is not quoted: a filter may carry a credential (e.g. an Authorization header).
            if value.is_empty() || value.len() > MAX_HEADER_VALUE {
                at.error(
                    &format!("{entry}.value"),
                    format_args!("must be 1 to {MAX_HEADER_VALUE} characters"),
                );
            } else if http::HeaderValue::from_str(value).is_err() {
                at.error(
                    &format!("{entry}.value"),
                    "is not a valid header value (control characters such as CR or LF are not allowed)",
                );
            } else {
                out.push((lower, value.clone()));
            }
        }
        out
    };
    let set = pairs(at, &raw.set, "set");
    let add = pairs(at, &raw.add, "add");
    let mut remove = Vec::new();
    for (i, name) in raw.remove.iter().flatten().enumerate() {
        if let Some(lower) = check_name(at, name, format!("{field}.remove[{i}]")) {
            remove.push(lower);
        }
    }
    (at.report.error_count() == errors_before).then_some(HeaderModifier { set, add, remove })
}

/// Gateway API's `PreciseHostname`: a lower-case RFC 1123 DNS name, no wildcard, no port.
/// None when absent or invalid (then reported).
fn hostname(raw: &Option<String>, field: &str, at: &mut At<'_>) -> Option<String> {
    let name = raw.as_ref()?;
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if name.len() > MAX_HOSTNAME || !name.split('.').all(label_ok) {
        at.error(
            &format!("{field}.hostname"),
            format_args!(
                "{name:?} is not a hostname (lower-case RFC 1123 DNS name, without port or wildcard)"
            ),
        );
        return None;
    }
    Some(name.clone())
}

fn path_modifier(
    raw: &HttpPathModifier,
    prefix_match: Option<&str>,
    field: &str,
    at: &mut At<'_>,
) -> Option<PathModifier> {
    let field = format!("{field}.path");
    let Some(kind) = raw.modifier_type.as_deref() else {
        at.error(
            &format!("{field}.type"),
            "missing; ReplaceFullPath or ReplacePrefixMatch",
        );
        return None;
    };
    // (the field this type reads, its value; the other type's field, that type, its value)
    let ((key, value), (other_key, other_kind, other_value)) = match kind {
        "ReplaceFullPath" => (
            ("replaceFullPath", &raw.replace_full_path),
            (
                "replacePrefixMatch",
                "ReplacePrefixMatch",
                &raw.replace_prefix_match,
            ),
        ),
        "ReplacePrefixMatch" => (
            ("replacePrefixMatch", &raw.replace_prefix_match),
            ("replaceFullPath", "ReplaceFullPath", &raw.replace_full_path),
        ),
        other => {
            at.unsupported(
                &format!("{field}.type"),
                format_args!("{other:?} is not ReplaceFullPath or ReplacePrefixMatch"),
            );
            return None;
        }
    };
    let mut ok = true;
    if other_value.is_some() {
        at.error(
            &format!("{field}.{other_key}"),
            format_args!("must be omitted unless type is {other_kind}"),
        );
        ok = false;
    }
    let Some(value) = value else {
        at.error(
            &format!("{field}.{key}"),
            format_args!("missing; required for type {kind}"),
        );
        return None;
    };
    // ReplacePrefixMatch may be empty (the prefix is removed); a full path must be a path.
    let empty_allowed = kind == "ReplacePrefixMatch" && value.is_empty();
    let valid_path = value.starts_with('/')
        && value.len() <= MAX_PATH
        && !value.contains(['?', '#'])
        && value.parse::<http::uri::PathAndQuery>().is_ok();
    if !empty_allowed && !valid_path {
        at.error(
            &format!("{field}.{key}"),
            format_args!(
                "{value:?} is not a URL path (must start with '/', at most {MAX_PATH} characters, no spaces, query or fragment)",
            ),
        );
        ok = false;
    }
    if kind == "ReplaceFullPath" {
        return ok.then(|| PathModifier::ReplaceFullPath(value.clone()));
    }
    let Some(prefix) = prefix_match else {
        at.error(
            &format!("{field}.type"),
            "ReplacePrefixMatch needs the rule to have exactly one match, of type PathPrefix (Gateway API)",
        );
        return None;
    };
    ok.then(|| PathModifier::ReplacePrefixMatch {
        prefix: prefix.to_string(),
        replacement: value.clone(),
    })
}

fn url_rewrite(
    raw: &HttpUrlRewriteFilter,
    prefix_match: Option<&str>,
    field: &str,
    at: &mut At<'_>,
) -> Option<UrlRewrite> {
    let errors_before = at.report.error_count();
    let hostname = hostname(&raw.hostname, field, at);
    let path = raw
        .path
        .as_ref()
        .and_then(|p| path_modifier(p, prefix_match, field, at));
    (at.report.error_count() == errors_before).then_some(UrlRewrite { hostname, path })
}

fn redirect(
    raw: &HttpRequestRedirectFilter,
    prefix_match: Option<&str>,
    field: &str,
    at: &mut At<'_>,
) -> Option<Redirect> {
    let errors_before = at.report.error_count();
    let scheme = match raw.scheme.as_deref() {
        None => None,
        Some("http") => Some(Scheme::Http),
        Some("https") => Some(Scheme::Https),
        Some(other) => {
            at.unsupported(
                &format!("{field}.scheme"),
                format_args!("{other:?} is not http or https"),
            );
            None
        }
    };
    let hostname = hostname(&raw.hostname, field, at);
    let path = raw
        .path
        .as_ref()
        .and_then(|p| path_modifier(p, prefix_match, field, at));
    let port = match raw.port {
        None => None,
        Some(port) => match u16::try_from(port) {
            Ok(port) if port > 0 => Some(port),
            _ => {
                at.error(
                    &format!("{field}.port"),
                    format_args!("{port} is not a port from 1 to 65535"),
                );
                None
            }
        },
    };
    let status = match raw.status_code {
        None => 302,
        Some(code @ (301 | 302 | 303 | 307 | 308)) => code as u16,
        Some(other) => {
            at.unsupported(
                &format!("{field}.statusCode"),
                format_args!("{other} is not one of 301, 302, 303, 307, 308"),
            );
            302
        }
    };
    (at.report.error_count() == errors_before).then_some(Redirect {
        scheme,
        hostname,
        path,
        port,
        status,
    })
}
