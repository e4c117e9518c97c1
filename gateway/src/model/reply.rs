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
    LambdaError,
    MalformedResponse,
    NoRoute,
    NoBackend,
    NoCredentials,
    Timeout,
    Unreachable,
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
            Outcome::LambdaError => "lambda_error",
            Outcome::MalformedResponse => "malformed_response",
            Outcome::NoRoute => "no_route",
            Outcome::NoBackend => "no_backend",
            Outcome::NoCredentials => "no_credentials",
            Outcome::Timeout => "timeout",
            Outcome::Unreachable => "unreachable",
        }
    }
}

/// The client's response.
#[derive(Debug, Clone)]
pub struct ClientReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub outcome: Outcome,
}

impl ClientReply {
    /// A gateway-made JSON error.
    pub fn error(
        status: u16,
        outcome: Outcome,
        code: &str,
        message: impl Into<String>,
    ) -> ClientReply {
        let body = json!({"error": code, "message": message.into()});
        ClientReply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::from(serde_json::to_vec(&body).expect("JSON serializes")),
            outcome,
        }
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
