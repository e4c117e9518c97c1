//! Core `Secret` (`v1`): the typed object, and its keys decoded for `auth.type: Secret` Backends.
//!
//! Secret values never reach a problem line, a warning or `Debug` output: type errors under `data` and
//! `stringData` are reported without the deserializer's message (which quotes the value), and base64 or
//! UTF-8 failures name only the key.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use base64::Engine as _;
use serde::Deserialize;

use super::fields::TypeError;
use super::meta::ObjectMeta;
use super::report::Report;
use crate::model::StaticKeys;

/// A `v1` Secret as written in a manifest or sent by the API server.
#[derive(Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretObject {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Base64-encoded values.
    pub data: Option<BTreeMap<String, String>>,
    /// Plain values (they win over `data`, as in Kubernetes).
    pub string_data: Option<BTreeMap<String, String>>,
    #[serde(rename = "type")]
    pub secret_type: Option<String>,
    pub immutable: Option<bool>,
}

impl fmt::Debug for SecretObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = |map: &Option<BTreeMap<String, String>>| {
            map.as_ref().map(|m| m.keys().cloned().collect::<Vec<_>>())
        };
        f.debug_struct("SecretObject")
            .field("metadata", &self.metadata)
            .field("data (keys only)", &keys(&self.data))
            .field("string_data (keys only)", &keys(&self.string_data))
            .field("secret_type", &self.secret_type)
            .finish()
    }
}

/// The decoded keys of each Secret in the configuration, by `namespace/name`.
pub(super) type SecretKeys = HashMap<String, BTreeMap<String, String>>;

/// Decodes every Secret's keys; a key that is not base64 or not UTF-8 is a problem naming the key only.
pub(super) fn decode_all(secrets: &[SecretObject], report: &mut Report) -> SecretKeys {
    let mut out = HashMap::new();
    for secret in secrets {
        let id = secret.metadata.id();
        let mut keys = BTreeMap::new();
        for (key, encoded) in secret.data.iter().flatten() {
            match base64::engine::general_purpose::STANDARD.decode(encoded.trim()) {
                Ok(bytes) => match String::from_utf8(bytes) {
                    Ok(value) => {
                        keys.insert(key.clone(), value);
                    }
                    Err(_) => report.error(format!(
                        "Secret {id}: data.{key}: not UTF-8 once base64-decoded"
                    )),
                },
                Err(_) => report.error(format!("Secret {id}: data.{key}: not valid base64")),
            }
        }
        for (key, value) in secret.string_data.iter().flatten() {
            keys.insert(key.clone(), value.clone());
        }
        out.insert(id, keys);
    }
    out
}

/// The message of a Secret's type error: under `data`/`stringData` the deserializer's text (which quotes the
/// offending value) is replaced.
pub(super) fn redacted_type_error(error: &TypeError) -> String {
    match error.path.first_field() {
        Some("data" | "stringData") => {
            "expected a mapping of key names to string values (the value is not shown)".to_string()
        }
        _ => error.message.clone(),
    }
}

/// A Secret mounted as a directory (`<dir>/accessKey`, …), as kubelet projects it.
pub(super) fn read_mounted(dir: &Path) -> Option<BTreeMap<String, String>> {
    let mut keys = BTreeMap::new();
    for key in ["accessKey", "secretKey", "sessionToken"] {
        if let Ok(value) = std::fs::read_to_string(dir.join(key)) {
            keys.insert(
                key.to_string(),
                value.trim_end_matches(['\n', '\r']).to_string(),
            );
        }
    }
    (!keys.is_empty()).then_some(keys)
}

/// The static keys a Backend signs with: `accessKey` and `secretKey` required, `sessionToken` optional.
pub(super) fn static_keys(keys: &BTreeMap<String, String>) -> Result<StaticKeys, &'static str> {
    let get = |k: &str| {
        keys.get(k)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let access_key_id = get("accessKey").ok_or("key accessKey is missing or empty")?;
    let secret_access_key = get("secretKey").ok_or("key secretKey is missing or empty")?;
    Ok(StaticKeys {
        access_key_id,
        secret_access_key,
        session_token: get("sessionToken"),
    })
}
