//! A Lambda Backend as the gateway serves it: where the function is, how it is invoked, how requests and
//! responses are translated, and where the signing credentials come from. Built by `config`, read by the
//! request pipeline. Imports nothing from the rest of the crate but [`super::endpoint`].

use super::endpoint::{Endpoint, Partition};

/// Lambda's synchronous (RequestResponse) request payload limit.
pub const SYNC_PAYLOAD_LIMIT: usize = 6 * 1024 * 1024;
/// Lambda's asynchronous (Event) request payload limit (1 MB since October 2025).
pub const ASYNC_PAYLOAD_LIMIT: usize = 1024 * 1024;
/// How the HTTP request becomes the Lambda event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestEvent {
    /// The request body is the event (kgateway `payloadTransformMode: None`).
    Raw,
    /// Envoy's `aws_lambda` JSON envelope (kgateway `payloadTransformMode: Envoy`).
    Envoy,
    /// API Gateway REST/HTTP API payload format 1.0.
    ApiGatewayV1,
    /// API Gateway HTTP API / function URL payload format 2.0.
    ApiGatewayV2,
}

/// How the function's output becomes the HTTP response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseMode {
    /// The function's output is the response body, status 200.
    Passthrough,
    /// Envoy's unwrapping (`status_code`/`statusCode`, `headers`, `cookies`, `body`, `is_base64_encoded`).
    Envoy,
    /// API Gateway payload 1.0 response rules (`statusCode` required, `multiValueHeaders` merged).
    ApiGatewayV1,
    /// API Gateway payload 2.0 response rules, including inference when `statusCode` is absent.
    ApiGatewayV2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvocationMode {
    Sync,
    Async,
}

impl InvocationMode {
    pub fn header_value(self) -> &'static str {
        match self {
            InvocationMode::Sync => "RequestResponse",
            InvocationMode::Async => "Event",
        }
    }

    pub fn payload_limit(self) -> usize {
        match self {
            InvocationMode::Sync => SYNC_PAYLOAD_LIMIT,
            InvocationMode::Async => ASYNC_PAYLOAD_LIMIT,
        }
    }
}

/// Static keys, from a Secret. `Debug` never prints the secret parts.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticKeys {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for StaticKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticKeys")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"** redacted **")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "** redacted **"),
            )
            .finish()
    }
}

/// Where a Backend's credentials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthSource {
    /// No `auth`: the standard AWS chain (container-credentials endpoint first, see `credentials`).
    DefaultChain,
    /// `auth.type: Secret`: keys from the named Secret (`ns/name`).
    Static { secret: String, keys: StaticKeys },
}

/// One kgateway `Backend` of type AWS (Lambda), validated.
#[derive(Debug, Clone)]
pub struct Backend {
    /// `namespace/name`.
    pub id: String,
    pub region: String,
    pub partition: Partition,
    pub account_id: Option<String>,
    pub function_name: String,
    pub qualifier: Option<String>,
    pub invocation: InvocationMode,
    pub endpoint: Endpoint,
    pub request_event: RequestEvent,
    pub response_mode: ResponseMode,
    pub auth: AuthSource,
    /// The function's ARN, for logs and metrics (`…:function:<name>[:<qualifier>]`).
    pub arn: String,
    /// The Invoke URL, built once (`…/2015-03-31/functions/<name>/invocations[?Qualifier=…]`).
    pub invoke_uri: String,
    pub invoke_uri_parsed: http::Uri,
}
