//! The web-identity exchange: read the token file, call STS `AssumeRoleWithWebIdentity`.
//!
//! Contract:
//! - [`Exchanger`] is the seam between the refresher and STS (tests use a fake).
//! - Every failure is a [`Failure`] classified by what the refresher should do next
//!   ([`FailureKind`]) and carrying the HTTP status/code a client sees if nothing valid is cached.
//! - Failure messages never contain the web-identity token or any credential: STS messages are
//!   passed through [`Failure::scrub`] with the token that was sent.

use std::path::Path;
use std::time::Duration;

use aws_sdk_sts::config::{BehaviorVersion, Region};
use aws_sdk_sts::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sts::types::PolicyDescriptorType;

use crate::credentials::{account_from_arn, Credentials};

/// What to do after a failed exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The token file is missing, empty or unreadable: local setup; retry slowly, serve 503.
    TokenFile,
    /// Network error, throttling, 5xx, IdP unreachable: retry with backoff.
    Transient,
    /// STS did not answer in time: retry with backoff, serve 504.
    Timeout,
    /// STS says the token is expired/invalid: re-read the token once, then back off.
    TokenRejected,
    /// Access denied, validation, malformed policy, region disabled: a configuration problem.
    /// Logged once, retried at the slowest pace (the trust policy may be fixed meanwhile).
    Permanent,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TokenFile => "token_file",
            Self::Transient => "transient",
            Self::Timeout => "timeout",
            Self::TokenRejected => "token_rejected",
            Self::Permanent => "permanent",
        }
    }

    /// Status served when this failure is all we have.
    pub fn http_status(self) -> u16 {
        match self {
            Self::TokenFile => 503,
            Self::Timeout => 504,
            Self::Transient | Self::TokenRejected | Self::Permanent => 502,
        }
    }
}

/// A classified, secret-free exchange failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    /// Error code (the STS code when STS answered), used in metrics and the JSON error body.
    pub code: String,
    pub message: String,
}

impl Failure {
    pub fn new(kind: FailureKind, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind,
            code: code.into(),
            message: message.into(),
        }
    }

    /// Removes `secret` (if non-trivial) from the message.
    pub fn scrub(mut self, secret: &str) -> Self {
        if secret.len() >= 4 && self.message.contains(secret) {
            self.message = self.message.replace(secret, "[redacted]");
        }
        self
    }
}

/// Classifies an STS error code (see credential-endpoint.md §4.3).
pub fn classify_sts_code(code: &str, http_status: u16) -> FailureKind {
    match code {
        "ExpiredTokenException" | "ExpiredToken" | "InvalidIdentityToken" => {
            FailureKind::TokenRejected
        }
        "IDPCommunicationError"
        | "Throttling"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "TooManyRequestsException"
        | "ServiceUnavailable"
        | "InternalFailure"
        | "InternalError"
        | "RequestTimeout" => FailureKind::Transient,
        _ if http_status >= 500 || http_status == 429 => FailureKind::Transient,
        _ => FailureKind::Permanent,
    }
}

/// Reads the web-identity token. Surrounding whitespace (a trailing newline) is trimmed.
pub fn read_token(path: &Path) -> Result<String, Failure> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let token = text.trim();
            if token.is_empty() {
                Err(Failure::new(
                    FailureKind::TokenFile,
                    "WebIdentityTokenEmpty",
                    format!("web identity token file {} is empty", path.display()),
                ))
            } else {
                Ok(token.to_string())
            }
        }
        Err(e) => Err(Failure::new(
            FailureKind::TokenFile,
            "WebIdentityTokenUnreadable",
            format!(
                "cannot read web identity token file {}: {}",
                path.display(),
                e.kind()
            ),
        )),
    }
}

/// Exchanges a web-identity token for credentials.
pub trait Exchanger: Send + Sync + 'static {
    fn exchange(
        &self,
        token: &str,
    ) -> impl std::future::Future<Output = Result<Credentials, Failure>> + Send;
}

/// What to ask STS for.
#[derive(Debug, Clone, PartialEq)]
pub struct AssumeRequest {
    pub role_arn: String,
    pub session_name: String,
    pub duration_seconds: Option<i32>,
    pub policy: Option<String>,
    pub policy_arns: Vec<String>,
}

/// Where and how to reach STS.
#[derive(Debug, Clone, PartialEq)]
pub struct StsEndpoint {
    pub region: String,
    /// Explicit endpoint (`AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL`, `--sts-endpoint`, or the
    /// global endpoint chosen by `AWS_STS_REGIONAL_ENDPOINTS=legacy`).
    pub url: Option<String>,
    pub attempt_timeout: Duration,
    pub connect_timeout: Duration,
}

/// The real exchanger: aws-sdk-sts, unsigned, one attempt per call (the refresher owns retries).
#[derive(Debug, Clone)]
pub struct StsExchanger {
    client: aws_sdk_sts::Client,
    request: AssumeRequest,
}

impl StsExchanger {
    /// Builds the STS client directly from its own config (no `aws-config` loader: nothing is read
    /// from profiles or IMDS, and far less code is paged in, which keeps the idle footprint small).
    pub async fn new(endpoint: &StsEndpoint, request: AssumeRequest) -> Self {
        Self::build(endpoint, request, None)
    }

    /// Like [`StsExchanger::new`], sending every request through `http_client` (fuzzing and wire tests
    /// answer STS in process).
    pub fn with_http_client(
        endpoint: &StsEndpoint,
        request: AssumeRequest,
        http_client: aws_sdk_sts::config::SharedHttpClient,
    ) -> Self {
        Self::build(endpoint, request, Some(http_client))
    }

    fn build(
        endpoint: &StsEndpoint,
        request: AssumeRequest,
        http_client: Option<aws_sdk_sts::config::SharedHttpClient>,
    ) -> Self {
        use aws_sdk_sts::config::retry::RetryConfig;
        use aws_sdk_sts::config::timeout::TimeoutConfig;
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(endpoint.connect_timeout)
            .operation_attempt_timeout(endpoint.attempt_timeout)
            .operation_timeout(endpoint.attempt_timeout + Duration::from_secs(1))
            .build();
        let mut config = aws_sdk_sts::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(endpoint.region.clone()))
            .retry_config(RetryConfig::disabled())
            .timeout_config(timeouts);
        if let Some(url) = &endpoint.url {
            config = config.endpoint_url(url);
        }
        if let Some(http_client) = http_client {
            config = config.http_client(http_client);
        }
        Self {
            client: aws_sdk_sts::Client::from_conf(config.build()),
            request,
        }
    }
}

impl Exchanger for StsExchanger {
    async fn exchange(&self, token: &str) -> Result<Credentials, Failure> {
        let r = &self.request;
        let policy_arns = (!r.policy_arns.is_empty()).then(|| {
            r.policy_arns
                .iter()
                .map(|arn| PolicyDescriptorType::builder().arn(arn).build())
                .collect::<Vec<_>>()
        });
        let result = self
            .client
            .assume_role_with_web_identity()
            .role_arn(&r.role_arn)
            .role_session_name(&r.session_name)
            .web_identity_token(token)
            .set_duration_seconds(r.duration_seconds)
            .set_policy(r.policy.clone())
            .set_policy_arns(policy_arns)
            .send()
            .await;
        match result {
            Ok(out) => {
                let Some(c) = out.credentials() else {
                    return Err(Failure::new(
                        FailureKind::Transient,
                        "StsNoCredentials",
                        "STS answered without credentials",
                    ));
                };
                let expiration = time::OffsetDateTime::from_unix_timestamp(c.expiration().secs())
                    .map_err(|_| {
                    Failure::new(
                        FailureKind::Transient,
                        "StsBadExpiration",
                        "STS returned an out-of-range expiration",
                    )
                })?;
                let assumed = out.assumed_role_user().map(|u| u.arn().to_string());
                Ok(Credentials {
                    access_key_id: c.access_key_id().to_string(),
                    secret_access_key: c.secret_access_key().to_string(),
                    session_token: c.session_token().to_string(),
                    expiration,
                    account_id: assumed.as_deref().and_then(account_from_arn),
                    assumed_role_arn: assumed,
                })
            }
            Err(err) => Err(classify_sdk_error(&err, &r.role_arn).scrub(token)),
        }
    }
}

type StsError = SdkError<
    aws_sdk_sts::operation::assume_role_with_web_identity::AssumeRoleWithWebIdentityError,
    aws_sdk_sts::config::http::HttpResponse,
>;

fn classify_sdk_error(err: &StsError, role_arn: &str) -> Failure {
    match err {
        SdkError::TimeoutError(_) => Failure::new(
            FailureKind::Timeout,
            "StsTimeout",
            "STS did not answer AssumeRoleWithWebIdentity in time",
        ),
        SdkError::DispatchFailure(d) if d.is_timeout() => Failure::new(
            FailureKind::Timeout,
            "StsTimeout",
            "timed out connecting to STS",
        ),
        SdkError::DispatchFailure(_) => Failure::new(
            FailureKind::Transient,
            "StsUnreachable",
            format!("cannot reach STS: {}", DisplayErrorContext(err)),
        ),
        SdkError::ResponseError(_) => Failure::new(
            FailureKind::Transient,
            "StsBadResponse",
            format!("unreadable STS response: {}", DisplayErrorContext(err)),
        ),
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            // An error body without a usable <Code> (empty or missing) is "Unknown", never an empty code
            // (it is the `Code` clients get and a metric label; found by fuzz/regressions/credproxy_sts).
            let code = err
                .code()
                .filter(|code| !code.trim().is_empty())
                .unwrap_or("Unknown")
                .to_string();
            let kind = classify_sts_code(&code, status);
            let detail = err.message().unwrap_or("no message");
            Failure::new(
                kind,
                code.clone(),
                format!("STS AssumeRoleWithWebIdentity for {role_arn} failed (HTTP {status}): {code}: {detail}"),
            )
        }
        _ => Failure::new(
            FailureKind::Permanent,
            "StsRequestInvalid",
            format!("cannot build the STS request: {}", DisplayErrorContext(err)),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sts_codes_are_classified_by_next_action() {
        assert_eq!(
            classify_sts_code("ExpiredTokenException", 400),
            FailureKind::TokenRejected
        );
        assert_eq!(
            classify_sts_code("InvalidIdentityToken", 400),
            FailureKind::TokenRejected
        );
        assert_eq!(
            classify_sts_code("IDPCommunicationError", 400),
            FailureKind::Transient
        );
        assert_eq!(classify_sts_code("Throttling", 400), FailureKind::Transient);
        assert_eq!(
            classify_sts_code("AccessDenied", 403),
            FailureKind::Permanent
        );
        assert_eq!(
            classify_sts_code("ValidationError", 400),
            FailureKind::Permanent
        );
        assert_eq!(classify_sts_code("Whatever", 503), FailureKind::Transient);
    }

    #[test]
    fn token_file_missing_or_empty_is_a_token_file_failure() {
        let dir = tempfile::tempdir().unwrap();
        let missing = read_token(&dir.path().join("nope")).unwrap_err();
        assert_eq!(missing.kind, FailureKind::TokenFile);
        assert_eq!(missing.code, "WebIdentityTokenUnreadable");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "  \n").unwrap();
        assert_eq!(
            read_token(&empty).unwrap_err().code,
            "WebIdentityTokenEmpty"
        );
        let ok = dir.path().join("ok");
        std::fs::write(&ok, "eyJ.token\n").unwrap();
        assert_eq!(read_token(&ok).unwrap(), "eyJ.token");
    }

    #[test]
    fn scrub_removes_the_token_from_messages() {
        let f = Failure::new(FailureKind::Permanent, "X", "bad token eyJabc.def given")
            .scrub("eyJabc.def");
        assert_eq!(f.message, "bad token [redacted] given");
    }
}
