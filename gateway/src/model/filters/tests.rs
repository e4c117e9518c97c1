//! The filters' effects on their own: header edits, Gateway API's ReplacePrefixMatch table, `Location`
//! building (the conformance suite's port and scheme cases), and that a response modifier never touches
//! framing headers.

use super::*;

fn modifier(set: &[(&str, &str)], add: &[(&str, &str)], remove: &[&str]) -> HeaderModifier {
    let pairs = |list: &[(&str, &str)]| {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    };
    HeaderModifier {
        set: pairs(set),
        add: pairs(add),
        remove: remove.iter().map(|n| n.to_string()).collect(),
    }
}

#[test]
fn request_header_modifier_sets_adds_and_removes_case_insensitively() {
    // The conformance suite's request-header-modifier cases, on one request.
    let m = modifier(
        &[("x-header-set", "set-overwrites-values")],
        &[("x-header-add", "add-appends-values")],
        &["x-header-remove", "x-absent"],
    );
    let mut headers = vec![
        ("host", "example.com"),
        ("X-Header-Set", "some-other-value"),
        ("x-header-set", "second"),
        ("x-header-add", "some-value"),
        ("X-HEADER-REMOVE", "gone"),
        ("keep", "kept"),
    ];
    m.apply_to_request(&mut headers);
    assert_eq!(
        headers,
        [
            ("host", "example.com"),
            ("x-header-set", "set-overwrites-values"),
            ("x-header-add", "some-value"),
            ("keep", "kept"),
            ("x-header-add", "add-appends-values"),
        ]
    );

    let mut absent = vec![("host", "example.com")];
    m.apply_to_request(&mut absent);
    assert_eq!(
        absent,
        [
            ("host", "example.com"),
            ("x-header-set", "set-overwrites-values"),
            ("x-header-add", "add-appends-values"),
        ]
    );
}

#[test]
fn response_header_modifier_never_touches_framing_headers() {
    // The compiler rejects these names; the modifier refuses them again so a response stays framed by us.
    let m = modifier(
        &[("content-length", "1"), ("x-set", "v")],
        &[("transfer-encoding", "chunked"), ("proxy-x", "p")],
        &["connection", "content-type"],
    );
    let mut headers = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("connection".to_string(), "keep-alive".to_string()),
    ];
    m.apply_to_response(&mut headers);
    assert_eq!(
        headers,
        [
            ("connection".to_string(), "keep-alive".to_string()),
            ("x-set".to_string(), "v".to_string()),
        ]
    );
}

#[test]
fn replace_prefix_match_follows_the_gateway_api_table() {
    // (request path, prefix as compiled, replacement, modified path) — the rows of Gateway API's
    // HTTPPathModifier.ReplacePrefixMatch table (a prefix `/foo/` compiles to `/foo`), plus the root prefix.
    let rows = [
        ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
        ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
        ("/foo", "/foo", "/xyz", "/xyz"),
        ("/foo/", "/foo", "/xyz", "/xyz/"),
        ("/foo/bar", "/foo", "", "/bar"),
        ("/foo/", "/foo", "", "/"),
        ("/foo", "/foo", "", "/"),
        ("/foo/", "/foo", "/", "/"),
        ("/foo", "/foo", "/", "/"),
        ("/abc", "/", "/xyz", "/xyz/abc"),
        ("/abc", "/", "/", "/abc"),
    ];
    for (path, prefix, replacement, expected) in rows {
        let m = PathModifier::ReplacePrefixMatch {
            prefix: prefix.into(),
            replacement: replacement.into(),
        };
        assert_eq!(
            m.apply(path).as_deref(),
            Some(expected),
            "{path} prefix {prefix} → {replacement:?}"
        );
    }
    let m = PathModifier::ReplacePrefixMatch {
        prefix: "/foo".into(),
        replacement: "/xyz".into(),
    };
    assert_eq!(m.apply("/foobar"), None, "whole segments only");
    let full = PathModifier::ReplaceFullPath("/one".into());
    assert_eq!(full.apply("/anything/else").as_deref(), Some("/one"));
}

#[test]
fn url_rewrite_replaces_host_and_path_after_header_modifiers_in_order() {
    let filters = [
        RequestFilter::Headers(modifier(&[("host", "first.example")], &[], &[])),
        RequestFilter::Rewrite(UrlRewrite {
            hostname: Some("rewritten.example".into()),
            path: Some(PathModifier::ReplacePrefixMatch {
                prefix: "/api".into(),
                replacement: "/v2".into(),
            }),
        }),
    ];
    let headers = [("host", "client.example:8080"), ("accept", "*/*")];
    let out = rewrite_request(&filters, "/api/items/1", &headers);
    assert_eq!(out.path, "/v2/items/1");
    assert_eq!(
        out.headers,
        [("host", "rewritten.example"), ("accept", "*/*")]
    );

    // Without a Host header, the rewrite adds one.
    let out = rewrite_request(&filters[1..], "/api", &[]);
    assert_eq!(out.path, "/v2");
    assert_eq!(out.headers, [("host", "rewritten.example")]);
}

#[test]
fn redirect_location_follows_the_conformance_port_and_scheme_cases() {
    let redirect = |scheme: Option<Scheme>, port: Option<u16>| Redirect {
        scheme,
        hostname: None,
        path: None,
        port,
        status: 302,
    };
    let from = |listener_port| RedirectFrom {
        scheme: Scheme::Http,
        host: "example.org",
        path: "/p",
        query: None,
        listener_port,
    };
    // (scheme, port, listener port, Location)
    let cases = [
        (None, None, Some(80), "http://example.org/p"),
        (None, Some(80), Some(80), "http://example.org/p"),
        (None, Some(8080), Some(80), "http://example.org:8080/p"),
        (Some(Scheme::Https), None, Some(80), "https://example.org/p"),
        (
            Some(Scheme::Https),
            Some(443),
            Some(80),
            "https://example.org/p",
        ),
        (
            Some(Scheme::Https),
            Some(8443),
            Some(80),
            "https://example.org:8443/p",
        ),
        (None, None, Some(8080), "http://example.org:8080/p"),
        (None, Some(80), Some(8080), "http://example.org/p"),
        (
            Some(Scheme::Https),
            None,
            Some(8080),
            "https://example.org/p",
        ),
        (Some(Scheme::Http), None, Some(8080), "http://example.org/p"),
        (None, None, None, "http://example.org/p"),
    ];
    for (scheme, port, listener, expected) in cases {
        assert_eq!(
            redirect(scheme, port).location(&from(listener)),
            expected,
            "scheme {scheme:?} port {port:?} listener {listener:?}"
        );
    }
}

#[test]
fn redirect_location_takes_hostname_and_path_from_the_filter_and_keeps_the_query() {
    let r = Redirect {
        scheme: None,
        hostname: Some("new.example".into()),
        path: Some(PathModifier::ReplacePrefixMatch {
            prefix: "/old".into(),
            replacement: "/new".into(),
        }),
        port: None,
        status: 301,
    };
    let from = RedirectFrom {
        scheme: Scheme::Http,
        host: "old.example",
        path: "/old/a%20b",
        query: Some("x=1&y=2"),
        listener_port: Some(8080),
    };
    assert_eq!(
        r.location(&from),
        "http://new.example:8080/new/a%20b?x=1&y=2"
    );

    // IPv6 literal hosts keep their brackets; no host at all gives a path-only Location.
    let plain = Redirect {
        hostname: None,
        path: Some(PathModifier::ReplaceFullPath("/elsewhere".into())),
        ..r
    };
    let v6 = RedirectFrom {
        host: "[::1]",
        query: None,
        ..from
    };
    assert_eq!(plain.location(&v6), "http://[::1]:8080/elsewhere");
    let hostless = RedirectFrom { host: "", ..v6 };
    assert_eq!(plain.location(&hostless), "/elsewhere");
}
