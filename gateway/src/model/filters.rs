//! HTTPRoute filters as the request pipeline applies them (Gateway API `HTTPRouteFilter`,
//! <https://gateway-api.sigs.k8s.io/reference/spec/#httproutefilter>): what a rule, or one of its `backendRefs`,
//! does to a request besides routing it. Pure; imports nothing from the rest of the crate.
//!
//! Contract:
//! - Request filters ([`RequestFilter`]: `RequestHeaderModifier`, `URLRewrite`) change the request its function
//!   sees — headers, `Host`, path — in the order they were written, after routing and before the event is
//!   built ([`rewrite_request`]). Routing itself always looks at the request as the client sent it.
//! - [`Redirect`] (`RequestRedirect`) answers the request itself, with a `Location` built per Gateway API; no
//!   function is called.
//! - The response [`HeaderModifier`] (`ResponseHeaderModifier`) edits the headers of every reply sent for the
//!   rule, after the function's own headers were sanitised. It never sets or removes a framing or hop-by-hop
//!   header ([`is_hop_by_hop_or_framing`]): the compiler rejects such names, and [`HeaderModifier::apply_to_response`]
//!   skips them again so no configuration can re-frame a response.
//! - Header names are compared case-insensitively; the compiled names are lower case (as HTTP/1 requests
//!   reach the pipeline). The compiler (`config::httproute`) validates names, values and combinations; these
//!   types trust it for everything but the framing headers.

use std::borrow::Cow;

/// Hop-by-hop and message-framing headers: the gateway frames every client response itself, so neither a
/// function nor a filter may set them.
pub fn is_hop_by_hop_or_framing(lower_name: &str) -> bool {
    matches!(
        lower_name,
        "content-length"
            | "transfer-encoding"
            | "connection"
            | "keep-alive"
            | "upgrade"
            | "te"
            | "trailer"
    ) || lower_name.starts_with("proxy-")
}

/// The filters of one rule, or of one `backendRef`. Empty (no allocation) for the common rule without filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    /// `RequestHeaderModifier` and `URLRewrite`, in the order written.
    pub request: Vec<RequestFilter>,
    /// `ResponseHeaderModifier`.
    pub response_headers: Option<HeaderModifier>,
    /// `RequestRedirect` (rule level only).
    pub redirect: Option<Redirect>,
}

impl Filters {
    pub fn is_empty(&self) -> bool {
        self.request.is_empty() && self.response_headers.is_none() && self.redirect.is_none()
    }
}

/// A filter that changes the request the function sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestFilter {
    Headers(HeaderModifier),
    Rewrite(UrlRewrite),
}

/// `HTTPHeaderFilter`: `set` replaces every value of a header, `add` appends one more value, `remove` drops the
/// header. Each name appears at most once across the three lists (the compiler checks), so their order does
/// not matter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderModifier {
    /// (lower-case name, value)
    pub set: Vec<(String, String)>,
    /// (lower-case name, value)
    pub add: Vec<(String, String)>,
    /// Lower-case names.
    pub remove: Vec<String>,
}

impl HeaderModifier {
    /// Applies to a request's headers, borrowing the new names and values from `self`.
    pub fn apply_to_request<'a>(&'a self, headers: &mut Vec<(&'a str, &'a str)>) {
        for (name, value) in &self.set {
            set_header(headers, name, value, |h| h.0, |n, v| (n, v));
        }
        for (name, value) in &self.add {
            headers.push((name, value));
        }
        for name in &self.remove {
            headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        }
    }

    /// Applies to a reply's headers; framing and hop-by-hop names are left alone whatever the configuration.
    pub fn apply_to_response(&self, headers: &mut Vec<(String, String)>) {
        let allowed = |name: &str| !is_hop_by_hop_or_framing(name);
        for (name, value) in self.set.iter().filter(|(n, _)| allowed(n)) {
            set_header(
                headers,
                name,
                value,
                |h| h.0.as_str(),
                |n, v| (n.to_string(), v.to_string()),
            );
        }
        for (name, value) in self.add.iter().filter(|(n, _)| allowed(n)) {
            headers.push((name.clone(), value.clone()));
        }
        for name in self.remove.iter().filter(|n| allowed(n)) {
            headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        }
    }
}

/// Replaces the first header named `name` (keeping its position) and drops the others; appends if absent.
fn set_header<'a, H>(
    headers: &mut Vec<H>,
    name: &'a str,
    value: &'a str,
    name_of: impl Fn(&H) -> &str,
    make: impl Fn(&'a str, &'a str) -> H,
) {
    match headers
        .iter()
        .position(|h| name_of(h).eq_ignore_ascii_case(name))
    {
        Some(first) => {
            headers[first] = make(name, value);
            let mut index = 0;
            headers.retain(|h| {
                let keep = index <= first || !name_of(h).eq_ignore_ascii_case(name);
                index += 1;
                keep
            });
        }
        None => headers.push(make(name, value)),
    }
}

/// `HTTPPathModifier`, shared by `URLRewrite` and `RequestRedirect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathModifier {
    /// The whole path becomes this value.
    ReplaceFullPath(String),
    /// The part of the path that the rule's `PathPrefix` match matched becomes `replacement`; the rest is kept.
    ReplacePrefixMatch {
        /// The rule's PathPrefix value, without a trailing slash (`/` for the root).
        prefix: String,
        replacement: String,
    },
}

impl PathModifier {
    /// The new path, or None when the path does not start with the prefix by whole segments (it cannot have
    /// matched the rule) and stays as it is. Follows the table of Gateway API's `ReplacePrefixMatch`:
    /// `/foo/bar` with prefix `/foo` and replacement `/xyz` or `/xyz/` → `/xyz/bar`; replacement `` or `/` →
    /// `/bar`; `/foo` → `/xyz` (or `/`).
    pub fn apply(&self, path: &str) -> Option<Cow<'_, str>> {
        match self {
            PathModifier::ReplaceFullPath(full) => Some(Cow::Borrowed(full)),
            PathModifier::ReplacePrefixMatch {
                prefix,
                replacement,
            } => {
                let rest = if prefix == "/" {
                    path
                } else {
                    path.strip_prefix(prefix.as_str())
                        .filter(|rest| rest.is_empty() || rest.starts_with('/'))?
                };
                let replacement = replacement.trim_end_matches('/');
                let joined = format!("{replacement}{rest}");
                Some(Cow::Owned(if joined.is_empty() {
                    "/".to_string()
                } else {
                    joined
                }))
            }
        }
    }
}

/// `HTTPURLRewriteFilter`: the `Host` and path the function sees.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UrlRewrite {
    pub hostname: Option<String>,
    pub path: Option<PathModifier>,
}

/// The request as its function sees it, after the request filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewrittenRequest<'a> {
    pub path: Cow<'a, str>,
    pub headers: Vec<(&'a str, &'a str)>,
}

/// Applies request filters in order: header modifiers edit the headers, a URL rewrite replaces the `Host`
/// header and/or the path. The caller only calls this when there is a filter, so requests without filters
/// copy nothing.
pub fn rewrite_request<'a>(
    filters: impl IntoIterator<Item = &'a RequestFilter>,
    path: &'a str,
    headers: &[(&'a str, &'a str)],
) -> RewrittenRequest<'a> {
    let mut out = RewrittenRequest {
        path: Cow::Borrowed(path),
        headers: headers.to_vec(),
    };
    for filter in filters {
        match filter {
            RequestFilter::Headers(modifier) => modifier.apply_to_request(&mut out.headers),
            RequestFilter::Rewrite(rewrite) => {
                if let Some(host) = &rewrite.hostname {
                    set_header(&mut out.headers, "host", host, |h| h.0, |n, v| (n, v));
                }
                if let Some(new_path) = rewrite.path.as_ref().and_then(|m| m.apply(&out.path)) {
                    out.path = new_path;
                }
            }
        }
    }
    out
}

/// `http` or `https`: the schemes `RequestRedirect` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// `HTTPRequestRedirectFilter`: the gateway answers with `status` and a `Location`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub scheme: Option<Scheme>,
    pub hostname: Option<String>,
    pub path: Option<PathModifier>,
    pub port: Option<u16>,
    /// 301, 302 (the default), 303, 307 or 308.
    pub status: u16,
}

/// What a redirect's `Location` is built from.
#[derive(Debug, Clone, Copy)]
pub struct RedirectFrom<'a> {
    /// The request's scheme.
    pub scheme: Scheme,
    /// The request's host without port, lower case; empty when the request named none.
    pub host: &'a str,
    /// The request's path, as sent (percent-encoding kept).
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// The port of the Gateway listener the request came in on, when known.
    pub listener_port: Option<u16>,
}

impl Redirect {
    /// The `Location`, per Gateway API: scheme and hostname from the filter, else the request's; the port
    /// from the filter, else the scheme's well-known port when the filter sets a scheme, else the listener's;
    /// the port is left out when it is the scheme's default (80 for http, 443 for https) or unknown. The path
    /// is modified as the filter says; the query string is kept. Without any host to name (a request without
    /// `Host` and a filter without `hostname`), the `Location` is the path alone, which clients resolve
    /// against the URL they asked for.
    pub fn location(&self, from: &RedirectFrom<'_>) -> String {
        let scheme = self.scheme.unwrap_or(from.scheme);
        let port = match (self.port, self.scheme) {
            (Some(port), _) => Some(port),
            (None, Some(scheme)) => Some(scheme.default_port()),
            (None, None) => from.listener_port,
        };
        let host = self.hostname.as_deref().unwrap_or(from.host);
        let path = self
            .path
            .as_ref()
            .and_then(|m| m.apply(from.path))
            .unwrap_or(Cow::Borrowed(from.path));
        let mut location = String::with_capacity(host.len() + path.len() + 32);
        if !host.is_empty() {
            location.push_str(scheme.as_str());
            location.push_str("://");
            location.push_str(host);
            if let Some(port) = port.filter(|p| *p != scheme.default_port()) {
                location.push(':');
                location.push_str(&port.to_string());
            }
        }
        location.push_str(&path);
        if let Some(query) = from.query {
            location.push('?');
            location.push_str(query);
        }
        location
    }
}

#[cfg(test)]
mod tests;
