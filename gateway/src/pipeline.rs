//! The request pipeline: one client request in, one [`ClientReply`] out. No sockets here: the HTTP layer
//! (`server`) hands it a parsed request and writes back what it returns, and tests call [`serve`] directly.
//!
//! [`serve`] runs named steps; each returns `Result<_, ClientReply>`, the error being the client's answer:
//!
//! 1. [`route`] — host, path, method, headers, query → an HTTPRoute rule (404); a rule with a `RequestRedirect`
//!    filter is answered here ([`redirect`]); else [`pick`] a weighted Backend (500). The rule's and the
//!    backend's request filters then give the headers and path the function sees (`model::filters`).
//! 2. [`read_body`] — the body, within the Backend's payload limit and the body read timeout (413, 408, 400)
//! 3. [`build_event`] — the Lambda event for the Backend's request mode (400, 413)
//! 4. [`usable_credentials`] — credentials valid now, or 503 without calling Lambda
//! 5. [`sign`] — the signed Invoke request (500 if the credentials cannot be sent)
//! 6. [`invoke`] — Lambda's answer within the route's timeout (504, 502), mapped by [`response::map_reply`]
//!
//! The rule's and the backend's `ResponseHeaderModifier` filters edit every reply of a matched rule (after the
//! function's headers were sanitised). A rule without filters costs two emptiness checks and copies nothing.
//!
//! Then every request is counted in the metrics and, with `--access-log`, logged once with its request id;
//! details kept out of client-visible errors (endpoints, SDK errors, Lambda's messages) go to that log line.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body;

use crate::credentials::{CredentialCell, CredentialState, Held};
use crate::event::{self, EventInput};
use crate::invoke;
use crate::metrics::RouteHandles;
use crate::model::filters::{self, RedirectFrom, RewrittenRequest};
use crate::model::{
    Backend, ClientReply, FunctionRef, InvocationMode, LambdaReply, Outcome, Redirect,
    RequestEvent, Scheme,
};
use crate::response;
use crate::routing::{parse_query, PathMatch, RequestView, RouteRule, WeightedBackend};
use crate::state::{Gateway, Runtime};
use crate::upstream::UpstreamError;

/// A request id: 24 hex digits, unique enough to find one request in the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestId([u8; 24]);

impl RequestId {
    pub fn random() -> RequestId {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let bits: u128 = rand::random();
        let mut out = [0u8; 24];
        for (i, digit) in out.iter_mut().enumerate() {
            *digit = HEX[((bits >> (4 * i)) & 0xf) as usize];
        }
        RequestId(out)
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits are ASCII")
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one request came to, for the HTTP layer.
#[derive(Debug)]
pub struct Served {
    pub reply: ClientReply,
    /// The client's body was refused unread (413, 408): the connection must not be reused, and its remaining
    /// bytes are read and discarded before closing so the client can read the reply.
    pub close_connection: bool,
}

/// The matched rule and backend.
struct Matched<'a> {
    rule: &'a RouteRule,
    picked: &'a WeightedBackend,
}

impl Matched<'_> {
    fn backend(&self) -> &Backend {
        &self.picked.backend
    }
}

/// Runs the pipeline for one request and records it (metrics, access log).
pub async fn serve<B>(gw: &Gateway, request: http::Request<B>, peer: SocketAddr) -> Served
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let started = Instant::now();
    let runtime = gw.runtime();
    let request_id = RequestId::random();
    let (parts, body) = request.into_parts();
    let headers: Vec<(&str, &str)> = parts
        .headers
        .iter()
        .filter_map(|(n, v)| v.to_str().ok().map(|v| (n.as_str(), v)))
        .collect();
    let query = parse_query(parts.uri.query());
    let host = request_host(&parts);
    let view = RequestView {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        host: &host,
        headers: &headers,
        query: &query,
    };

    let (mut reply, rule, picked, close_connection) = match route(&runtime, &view) {
        Err(reply) => (reply, None, None, false),
        Ok(rule) => match &rule.filters.redirect {
            Some(to) => {
                let listener_port = runtime.config.listener_port.or_else(|| host_port(&parts));
                let reply = redirect(to, &view, &parts, listener_port);
                (reply, Some(rule), None, false)
            }
            None => match pick(rule) {
                Err(reply) => (reply, Some(rule), None, false),
                Ok(picked) => {
                    let matched = Matched { rule, picked };
                    let rewritten = rewrite_request(&matched, &view);
                    let (path, event_headers) = match &rewritten {
                        Some(r) => (&*r.path, r.headers.as_slice()),
                        None => (view.path, view.headers),
                    };
                    let steps = Steps {
                        gw,
                        runtime: &runtime,
                        matched: &matched,
                        view: &view,
                        path,
                        event_headers,
                        parts: &parts,
                        peer,
                        request_id,
                    };
                    let (reply, close) = match steps.run(body).await {
                        Ok(reply) => (reply, false),
                        Err(Refusal { reply, close }) => (reply, close),
                    };
                    (reply, Some(rule), Some(picked), close)
                }
            },
        },
    };
    if let Some(rule) = rule {
        let backend_filters = picked.map(|p| &p.filters);
        let modifiers = [Some(&rule.filters), backend_filters]
            .into_iter()
            .flatten()
            .filter_map(|f| f.response_headers.as_ref());
        for modifier in modifiers {
            modifier.apply_to_response(&mut reply.headers);
        }
    }
    let reply = reply.with_request_id(request_id.as_str());
    record(gw, &view, rule, picked, &reply, request_id, peer, started);
    Served {
        reply,
        close_connection,
    }
}

/// A step's refusal: the client's reply, and whether the connection must close (body left unread).
struct Refusal {
    reply: ClientReply,
    close: bool,
}

impl From<ClientReply> for Refusal {
    fn from(reply: ClientReply) -> Refusal {
        Refusal {
            reply,
            close: false,
        }
    }
}

struct Steps<'a> {
    gw: &'a Gateway,
    runtime: &'a Runtime,
    matched: &'a Matched<'a>,
    view: &'a RequestView<'a>,
    /// The path and headers the function sees: the request's, or what the request filters made of them.
    path: &'a str,
    event_headers: &'a [(&'a str, &'a str)],
    parts: &'a http::request::Parts,
    peer: SocketAddr,
    request_id: RequestId,
}

impl Steps<'_> {
    async fn run<B>(&self, body: B) -> Result<ClientReply, Refusal>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let backend = self.matched.backend();
        let limit = backend.invocation.payload_limit();
        let body = read_body(
            body,
            &self.parts.headers,
            limit,
            backend.invocation,
            self.gw.settings.limits.body_read_timeout,
        )
        .await?;
        let event = build_event(self, &body)?;
        let cell = self.runtime.cells.get(&backend.id);
        let credentials = usable_credentials(cell, self.gw)?;
        let request = sign(backend, event, &credentials, self.gw)?;
        let lambda = invoke(self.gw, backend, request, self.matched.rule.timeout).await?;
        let mapped = response::map_reply(
            &lambda,
            function_ref(backend),
            backend.response_mode,
            backend.invocation,
        );
        if mapped.outcome == Outcome::CredentialsRejected {
            if let Some(cell) = cell {
                cell.refresh_now();
            }
        }
        Ok(mapped)
    }
}

fn function_ref(backend: &Backend) -> FunctionRef<'_> {
    FunctionRef {
        name: &backend.function_name,
        qualifier: backend.qualifier.as_deref(),
        region: &backend.region,
    }
}

/// `Host` as the client sent it, else the request target's authority.
fn raw_host(parts: &http::request::Parts) -> Option<&str> {
    parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
}

/// The host the client asked for, lower case, without port.
fn request_host(parts: &http::request::Parts) -> String {
    host_without_port(raw_host(parts).unwrap_or("")).to_ascii_lowercase()
}

/// `example.com:8080` → `example.com`, `[::1]:8080` → `[::1]`. Never panics, whatever the client sent.
pub fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Step 1: the rule that serves this request.
fn route<'a>(runtime: &'a Runtime, view: &RequestView<'_>) -> Result<&'a RouteRule, ClientReply> {
    runtime.config.routes.resolve(view).ok_or_else(|| {
        ClientReply::error(
            404,
            Outcome::NoRoute,
            "NoRoute",
            "no route matches this request",
        )
        .with_detail(format!(
            "no HTTPRoute matches {} {} (host {:?})",
            view.method, view.path, view.host
        ))
    })
}

/// Step 1, rules with a `RequestRedirect` filter: the gateway's own answer. The gateway serves plain HTTP, so
/// that is the request's scheme.
fn redirect(
    to: &Redirect,
    view: &RequestView<'_>,
    parts: &http::request::Parts,
    listener_port: Option<u16>,
) -> ClientReply {
    let from = RedirectFrom {
        scheme: Scheme::Http,
        host: view.host,
        path: view.path,
        query: parts.uri.query(),
        listener_port,
    };
    ClientReply::redirect(to.status, to.location(&from))
}

/// The port the client put in `Host` (or the request target): the listener port when no Gateway names one.
fn host_port(parts: &http::request::Parts) -> Option<u16> {
    let raw = raw_host(parts)?;
    let port = match raw.strip_prefix('[') {
        Some(v6) => v6.split_once("]:")?.1,
        None => raw.rsplit_once(':')?.1,
    };
    port.parse().ok()
}

/// Step 1, the other rules: a backend by weight; the share of unresolvable backendRefs gets 500 (Gateway API).
fn pick(rule: &RouteRule) -> Result<&WeightedBackend, ClientReply> {
    rule.pick(rand::random()).ok_or_else(|| {
        if rule.unresolved_weight > 0 {
            ClientReply::error(
                500,
                Outcome::NoBackend,
                "BackendNotResolved",
                "the backend this request was routed to cannot be resolved",
            )
            .with_detail(format!(
                "{}: a backendRef of this rule cannot be resolved (see the HTTPRoute's status)",
                rule.label()
            ))
        } else {
            ClientReply::error(
                500,
                Outcome::NoBackend,
                "NoBackend",
                "the matching route rule has no backend with a positive weight",
            )
        }
    })
}

/// The rule's, then the backend's request filters; None (nothing copied) when neither has any.
fn rewrite_request<'a>(
    matched: &Matched<'a>,
    view: &RequestView<'a>,
) -> Option<RewrittenRequest<'a>> {
    let (rule, backend) = (&matched.rule.filters, &matched.picked.filters);
    if rule.request.is_empty() && backend.request.is_empty() {
        return None;
    }
    Some(filters::rewrite_request(
        rule.request.iter().chain(&backend.request),
        view.path,
        view.headers,
    ))
}

fn too_large(limit: usize, invocation: InvocationMode) -> ClientReply {
    let kind = match invocation {
        InvocationMode::Sync => "synchronous",
        InvocationMode::Async => "asynchronous",
    };
    ClientReply::error(
        413,
        Outcome::TooLarge,
        "PayloadTooLarge",
        format!("the request exceeds Lambda's {kind} payload limit of {limit} bytes"),
    )
}

/// Step 2: the whole body, or a refusal. A declared `Content-Length` over the limit is refused before reading;
/// a chunked body is refused as soon as it passes the limit. Either way the connection then closes (after a
/// lingering read, so the client sees the 413).
async fn read_body<B>(
    body: B,
    headers: &http::HeaderMap,
    limit: usize,
    invocation: InvocationMode,
    timeout: Duration,
) -> Result<Bytes, Refusal>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Refusal {
            reply: too_large(limit, invocation),
            close: true,
        });
    }
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => Err(Refusal {
            reply: too_large(limit, invocation),
            close: true,
        }),
        Ok(Err(error)) => Err(Refusal {
            reply: ClientReply::error(
                400,
                Outcome::BadRequest,
                "BadRequest",
                "the request body could not be read",
            )
            .with_detail(format!("reading the request body: {error}")),
            close: true,
        }),
        Err(_) => Err(Refusal {
            reply: ClientReply::error(
                408,
                Outcome::RequestTimeout,
                "RequestTimeout",
                format!("the request body did not arrive within {timeout:?}"),
            ),
            close: true,
        }),
    }
}

/// Step 3: the Lambda event. Request context (source IP, protocol, route path, request id, time) only goes
/// into API Gateway events.
fn build_event(steps: &Steps<'_>, body: &[u8]) -> Result<Bytes, ClientReply> {
    let Steps {
        gw,
        matched,
        view,
        path,
        event_headers,
        parts,
        peer,
        request_id,
        ..
    } = steps;
    let backend = matched.backend();
    let api_gateway = matches!(
        backend.request_event,
        RequestEvent::ApiGatewayV1 | RequestEvent::ApiGatewayV2
    );
    let (source_ip, route_path, protocol) = if api_gateway {
        let route_path = matched
            .rule
            .matches
            .first()
            .map(|m| match &m.path {
                PathMatch::Exact(p) | PathMatch::Prefix(p) => p.clone(),
                PathMatch::Regex(re) => re.as_str().to_string(),
            })
            .unwrap_or_else(|| "/".into());
        (
            peer.ip().to_string(),
            route_path,
            format!("{:?}", parts.version),
        )
    } else {
        Default::default()
    };
    let input = EventInput {
        method: view.method,
        path,
        raw_query: parts.uri.query(),
        headers: event_headers,
        body,
        source_ip: &source_ip,
        request_id: request_id.as_str(),
        now: time::OffsetDateTime::from(gw.now()),
        route_path: &route_path,
        protocol: &protocol,
        account_id: backend.account_id.as_deref(),
    };
    let event = event::build(backend.request_event, &input).map_err(|error| {
        ClientReply::error(
            400,
            Outcome::BadRequest,
            "InvalidRequestContent",
            error.to_string(),
        )
    })?;
    let limit = backend.invocation.payload_limit();
    if event.len() > limit {
        return Err(too_large(limit, backend.invocation));
    }
    Ok(event)
}

/// Step 4: credentials valid now. Without them nothing is sent (never an unsigned request): 503, and the
/// refresher is asked for an early fetch (which respects its backoff).
fn usable_credentials(
    cell: Option<&Arc<CredentialCell>>,
    gw: &Gateway,
) -> Result<Arc<Held>, ClientReply> {
    let no_credentials = |detail: String| {
        ClientReply::error(
            503,
            Outcome::NoCredentials,
            "NoCredentials",
            "the gateway has no valid AWS credentials right now; the request was not sent to Lambda",
        )
        .with_header("retry-after", "1")
        .with_detail(detail)
    };
    let Some(cell) = cell else {
        return Err(no_credentials(
            "no credential source for this Backend".into(),
        ));
    };
    let now = gw.now();
    cell.get(now).ok_or_else(|| {
        let why = match cell.state(now) {
            CredentialState::Expired => "the cached credentials expired and could not be refreshed",
            _ => "no credentials could be fetched yet",
        };
        let last = cell
            .last_error()
            .map(|e| format!(" (last error: {e})"))
            .unwrap_or_default();
        cell.refresh_now();
        no_credentials(format!("{why} from the {}{last}", cell.source))
    })
}

/// Step 5: the signed Invoke request.
fn sign(
    backend: &Backend,
    event: Bytes,
    credentials: &Held,
    gw: &Gateway,
) -> Result<http::Request<Full<Bytes>>, ClientReply> {
    invoke::signed_request(backend, event, credentials, gw.now()).map_err(|error| {
        ClientReply::error(
            500,
            Outcome::Internal,
            "SigningFailed",
            "the gateway could not sign the request to Lambda",
        )
        .with_detail(error.to_string())
    })
}

/// Step 6: Lambda's answer, within the route's timeout.
async fn invoke(
    gw: &Gateway,
    backend: &Backend,
    request: http::Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<LambdaReply, ClientReply> {
    gw.deps
        .upstream
        .call(request, timeout)
        .await
        .map_err(|error| match error {
            UpstreamError::Timeout(limit) => ClientReply::error(
                504,
                Outcome::Timeout,
                "Timeout",
                format!("Lambda did not answer within the route's timeout of {limit:?}"),
            )
            .with_detail(format!("invoking {}", function_ref(backend))),
            other => ClientReply::error(
                502,
                Outcome::Unreachable,
                "LambdaUnreachable",
                "the gateway could not reach Lambda",
            )
            .with_detail(format!(
                "invoking {} at {}: {other}",
                function_ref(backend),
                backend.endpoint.authority
            )),
        })
}

/// Metrics and the access log line.
#[allow(clippy::too_many_arguments)]
fn record(
    gw: &Gateway,
    view: &RequestView<'_>,
    rule: Option<&RouteRule>,
    picked: Option<&WeightedBackend>,
    reply: &ClientReply,
    request_id: RequestId,
    peer: SocketAddr,
    started: Instant,
) {
    let route = rule.map_or("-", RouteRule::label);
    let (function, handles): (&str, Option<&RouteHandles>) = match picked {
        Some(p) => (&p.backend.arn, Some(&p.metrics)),
        None => ("-", None),
    };
    let elapsed = started.elapsed();
    gw.metrics.record_request(
        route,
        function,
        handles,
        reply.status,
        reply.outcome,
        elapsed.as_secs_f64(),
    );
    if gw.settings.access_log {
        tracing::info!(
            target: "access",
            %peer, method = view.method, path = view.path, status = reply.status, route, function,
            outcome = reply.outcome.as_str(), latency_us = elapsed.as_micros() as u64,
            request_id = request_id.as_str(),
            lambda_request_id = reply.header("x-amzn-requestid").unwrap_or("-"),
            detail = reply.detail().unwrap_or(""),
        );
    } else if let Some(detail) = reply.detail() {
        // Without the access log, gateway-made errors still leave their details somewhere.
        tracing::debug!(
            request_id = request_id.as_str(),
            route,
            status = reply.status,
            detail,
            "request refused"
        );
    }
}

#[cfg(test)]
mod tests;
