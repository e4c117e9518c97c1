//! Temporary credentials and their wire form.
//!
//! Contract: the JSON served to SDKs is rendered once per exchange ([`Served::render`]) into
//! shared bytes, so the cached request path only clones a reference count. `Expiration` is UTC
//! with a literal `Z` and whole seconds (aws-sdk-rust and JS v3 reject offsets), truncated, so the
//! advertised expiry is never later than the real one. `Debug` never prints a secret.

use std::fmt;

use bytes::Bytes;
use serde::Serialize;
use time::{format_description::FormatItem, macros::format_description, OffsetDateTime};

const EXPIRATION_FORMAT: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

/// Credentials returned by STS.
#[derive(Clone, PartialEq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    pub expiration: OffsetDateTime,
    pub account_id: Option<String>,
    pub assumed_role_arn: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &"** redacted **")
            .field("expiration", &self.expiration)
            .field("account_id", &self.account_id)
            .field("assumed_role_arn", &self.assumed_role_arn)
            .finish_non_exhaustive()
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` in UTC.
pub fn format_expiration(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(EXPIRATION_FORMAT)
        .expect("a UTC timestamp always formats")
}

/// Account id from an STS ARN such as `arn:aws:sts::123456789012:assumed-role/r/s`.
pub fn account_from_arn(arn: &str) -> Option<String> {
    let account = arn.split(':').nth(4)?;
    (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()))
        .then(|| account.to_string())
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Wire<'a> {
    access_key_id: &'a str,
    secret_access_key: &'a str,
    token: &'a str,
    expiration: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role_arn: Option<&'a str>,
}

/// What the endpoint hands out: pre-rendered JSON plus the expiry used to decide whether it may be.
#[derive(Clone)]
pub struct Served {
    pub body: Bytes,
    /// Truncated to whole seconds, matching the `Expiration` field.
    pub expiration: OffsetDateTime,
}

impl fmt::Debug for Served {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Served")
            .field("expiration", &self.expiration)
            .finish_non_exhaustive()
    }
}

impl Served {
    /// `role_arn` is the configured role (served as `RoleArn`, as the ECS agent does).
    pub fn render(creds: &Credentials, role_arn: Option<&str>) -> Self {
        let expiration = creds
            .expiration
            .replace_nanosecond(0)
            .expect("zero nanoseconds is valid");
        let expiration_text = format_expiration(expiration);
        let wire = Wire {
            access_key_id: &creds.access_key_id,
            secret_access_key: &creds.secret_access_key,
            token: &creds.session_token,
            expiration: &expiration_text,
            account_id: creds.account_id.as_deref(),
            role_arn,
        };
        let body = serde_json::to_vec(&wire).expect("plain strings always serialize");
        Self {
            body: Bytes::from(body),
            expiration,
        }
    }

    /// True if the credential may still be handed out at `now`, keeping `margin` of life.
    pub fn usable_at(&self, now: OffsetDateTime, margin: std::time::Duration) -> bool {
        self.expiration - now > margin
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn creds() -> Credentials {
        Credentials {
            access_key_id: "ASIAEXAMPLEEXAMPLE00".into(),
            secret_access_key: "secret/with+chars".into(),
            session_token: "tok\"en".into(),
            expiration: datetime!(2026-11-25 13:07:03.470048 UTC),
            account_id: Some("123456789012".into()),
            assumed_role_arn: None,
        }
    }

    #[test]
    fn renders_the_container_credentials_json() {
        let served = Served::render(&creds(), None);
        let v: serde_json::Value = serde_json::from_slice(&served.body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "AccessKeyId": "ASIAEXAMPLEEXAMPLE00",
                "SecretAccessKey": "secret/with+chars",
                "Token": "tok\"en",
                "Expiration": "2026-11-25T13:07:03Z",
                "AccountId": "123456789012"
            })
        );
        assert_eq!(served.expiration, datetime!(2026-11-25 13:07:03 UTC));
    }

    #[test]
    fn expiration_is_utc_with_z_even_from_an_offset() {
        let at = datetime!(2026-11-25 14:00:00 +01:00);
        assert_eq!(format_expiration(at), "2026-11-25T13:00:00Z");
    }

    #[test]
    fn account_is_parsed_from_the_assumed_role_arn() {
        assert_eq!(
            account_from_arn("arn:aws:sts::123456789012:assumed-role/r/s").as_deref(),
            Some("123456789012")
        );
        assert_eq!(account_from_arn("arn:aws:sts::bad:assumed-role/r/s"), None);
        assert_eq!(account_from_arn("nonsense"), None);
    }

    #[test]
    fn debug_output_has_no_secret() {
        let text = format!("{:?}", creds());
        assert!(!text.contains("secret/with"));
        assert!(!text.contains("tok\\\"en"));
        assert!(!text.contains("ASIAEXAMPLE"));
    }

    #[test]
    fn usable_respects_the_margin() {
        let served = Served::render(&creds(), None);
        let exp = served.expiration;
        let margin = std::time::Duration::from_secs(15);
        assert!(served.usable_at(exp - std::time::Duration::from_secs(16), margin));
        assert!(!served.usable_at(exp - std::time::Duration::from_secs(15), margin));
        assert!(!served.usable_at(exp + std::time::Duration::from_secs(1), margin));
    }
}
