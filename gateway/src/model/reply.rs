//! What the client gets back, and what Lambda answered: the values the request pipeline passes between its
//! steps. Imports nothing from the rest of the crate.

use bytes::Bytes;
use serde_json::json;

/// What Lambda answered, reduced to what the mapping needs.
#[derive(Debug, Clone, Default)]
pub struct LambdaReply {
    pub status: u16,
    pub function_error: Option<String>,
    /// `x-amzn-errortype` (may carry `:<url>` after the code).
    pub error_type: Option<String>,
    pub retry_after: Option<String>,
    pub request_id: Option<String>,
    pub executed_version: Option<String>,
    pub body: Bytes,
}

/// What happened, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    FunctionError,
    FunctionTimeout,
    Throttled,
    FunctionNotFound,
    AccessDenied,
    CredentialsRejected,
    NotReady,
    TooLarge,
    BadRequest,
    /// The client did not send its request body in time.
    RequestTimeout,
    LambdaError,
    MalformedResponse,
    NoRoute,
    NoBackend,
    NoCredentials,
    Timeout,
    Unreachable,
    /// A bug: the request could not be signed, or the handler panicked.
    Internal,
    /// A `RequestRedirect` filter answered; no function was called.
    Redirect,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::FunctionError => "function_error",
            Outcome::FunctionTimeout => "function_timeout",
            Outcome::Throttled => "throttled",
            Outcome::FunctionNotFound => "function_not_found",
            Outcome::AccessDenied => "access_denied",
            Outcome::CredentialsRejected => "credentials_rejected",
            Outcome::NotReady => "not_ready",
            Outcome::TooLarge => "too_large",
            Outcome::BadRequest => "bad_request",
            Outcome::RequestTimeout => "request_timeout",
            Outcome::LambdaError => "lambda_error",
            Outcome::MalformedResponse => "malformed_response",
            Outcome::NoRoute => "no_route",
            Outcome::NoBackend => "no_backend",
            Outcome::NoCredentials => "no_credentials",
            Outcome::Timeout => "timeout",
            Outcome::Unreachable => "unreachable",
            Outcome::Internal => "internal",
            Outcome::Redirect => "redirect",
        }
    }
}

/// A gateway-made error: what the client is told, and what only the log gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayError {
    /// Stable machine-readable code (`NoRoute`, `AccessDenied`, …).
    pub code: &'static str,
    /// What happened and what to check, without internal details (no endpoint URLs, credential sources,
    /// SDK error chains or Lambda's own messages, which can name roles and accounts).
    pub message: String,
    /// The internal details, for the request's log line only.
    pub detail: Option<String>,
}

/// The client's response.
#[derive(Debug, Clone)]
pub struct ClientReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub outcome: Outcome,
    /// Set for gateway-made errors; the body is then `{"error","message"[,"requestId"]}`.
    pub error: Option<Box<GatewayError>>,
}

impl ClientReply {
    /// A gateway-made JSON error: `{"error": code, "message": message}`.
    pub fn error(
        status: u16,
        outcome: Outcome,
        code: &'static str,
        message: impl Into<String>,
    ) -> ClientReply {
        let error = GatewayError {
            code,
            message: message.into(),
            detail: None,
        };
        ClientReply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: error_body(&error, None),
            outcome,
            error: Some(Box::new(error)),
        }
    }

    /// A redirect the gateway answers itself: `status` (3xx), `location`, no body.
    pub fn redirect(status: u16, location: String) -> ClientReply {
        ClientReply {
            status,
            headers: vec![("location".into(), location)],
            body: Bytes::new(),
            outcome: Outcome::Redirect,
            error: None,
        }
    }

    /// Adds internal details for the log line (never sent to the client).
    pub fn with_detail(mut self, detail: impl Into<String>) -> ClientReply {
        if let Some(error) = &mut self.error {
            error.detail = Some(detail.into());
        }
        self
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> ClientReply {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Puts the request id into a gateway-made error body, so a client's report can be matched to the log.
    pub fn with_request_id(mut self, request_id: &str) -> ClientReply {
        if let Some(error) = &self.error {
            self.body = error_body(error, Some(request_id));
        }
        self
    }

    /// Internal details of a gateway-made error, if any.
    pub fn detail(&self) -> Option<&str> {
        self.error.as_ref().and_then(|e| e.detail.as_deref())
    }
}

fn error_body(error: &GatewayError, request_id: Option<&str>) -> Bytes {
    let body = match request_id {
        Some(id) => json!({"error": error.code, "message": error.message, "requestId": id}),
        None => json!({"error": error.code, "message": error.message}),
    };
    Bytes::from(serde_json::to_vec(&body).expect("JSON serializes"))
}

/// Identifies the function in messages.
#[derive(Debug, Clone, Copy)]
pub struct FunctionRef<'a> {
    pub name: &'a str,
    pub qualifier: Option<&'a str>,
    pub region: &'a str,
}

impl std::fmt::Display for FunctionRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.qualifier {
            Some(q) => write!(f, "{}:{q} in {}", self.name, self.region),
            None => write!(f, "{} in {}", self.name, self.region),
        }
    }
}
