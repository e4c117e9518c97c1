//! The `pod-identity-webhook` ConfigMap's `config` value (spec §3.4): a JSON object
//! `{"<ns>/<sa>": {"RoleARN": …, "Audience": …, "UseRegionalSTS": …, "TokenExpiration": …}}`, decoded with
//! Go `encoding/json` rules (case-insensitive field names, unknown fields ignored, a type mismatch anywhere
//! rejects the whole value). `<ns>` may be the literal `*`.

use std::collections::HashMap;

use serde_json::Value;

use crate::identity::StsIdentity;

/// Name of the ConfigMap upstream reads (in `--namespace`).
pub const CONFIG_MAP_NAME: &str = "pod-identity-webhook";
/// Data key holding the JSON.
pub const CONFIG_KEY: &str = "config";

/// Entries keyed `"<ns>/<name>"` (`<ns>` possibly `*`).
pub type ConfigMapEntries = HashMap<String, StsIdentity>;

/// A parsed `config` value.
#[derive(Debug, Default, PartialEq)]
pub struct ParsedConfigMap {
    pub entries: ConfigMapEntries,
    /// Keys without a `/` (upstream crashed on them); skipped, reported for logging.
    pub malformed_keys: Vec<String>,
}

fn go_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn mismatch(key: &str, field: &str, value: &Value, want: &str) -> String {
    format!(
        "json: cannot unmarshal {} into Go struct field {key}.{field} of type {want}",
        go_type(value)
    )
}

/// Decode one entry. Defaults differ from SA annotations: absent audience = empty, absent regional STS =
/// false, `TokenExpiration` 0/absent = `--token-expiration` (explicit values are not clamped).
fn entry(key: &str, value: &Value, default_token_expiration: i64) -> Result<StsIdentity, String> {
    let mut identity = StsIdentity::default();
    let fields = match value {
        Value::Object(fields) => fields,
        Value::Null => &serde_json::Map::new(),
        other => {
            return Err(format!(
                "json: cannot unmarshal {} into Go value of type cache.CacheResponse (key {key:?})",
                go_type(other)
            ))
        }
    };
    for (name, value) in fields {
        // Go matches field names case-insensitively; null leaves the field unchanged.
        let field = name.to_ascii_lowercase();
        if value.is_null() {
            continue;
        }
        match field.as_str() {
            "rolearn" => {
                identity.role_arn = value
                    .as_str()
                    .ok_or_else(|| mismatch(key, "RoleARN", value, "string"))?
                    .to_owned()
            }
            "audience" => {
                identity.audience = value
                    .as_str()
                    .ok_or_else(|| mismatch(key, "Audience", value, "string"))?
                    .to_owned()
            }
            "useregionalsts" => {
                identity.use_regional_sts = value
                    .as_bool()
                    .ok_or_else(|| mismatch(key, "UseRegionalSTS", value, "bool"))?
            }
            "tokenexpiration" => {
                identity.token_expiration = value
                    .as_i64()
                    .ok_or_else(|| mismatch(key, "TokenExpiration", value, "int64"))?
            }
            _ => {}
        }
    }
    if identity.token_expiration == 0 {
        identity.token_expiration = default_token_expiration;
    }
    Ok(identity)
}

/// Parse the `config` JSON. `Err` = the whole value is rejected (the caller keeps its previous entries).
pub fn parse_config_map(
    config: &str,
    default_token_expiration: i64,
) -> Result<ParsedConfigMap, String> {
    let value: Value = serde_json::from_str(config).map_err(|e| e.to_string())?;
    let object = match value {
        Value::Object(object) => object,
        Value::Null => return Ok(ParsedConfigMap::default()),
        other => {
            return Err(format!(
                "json: cannot unmarshal {} into Go value of type map[string]*cache.CacheResponse",
                go_type(&other)
            ))
        }
    };
    let mut parsed = ParsedConfigMap::default();
    for (key, value) in &object {
        let identity = entry(key, value, default_token_expiration)?;
        // Upstream splits on "/" and uses the first two segments.
        let mut parts = key.split('/');
        match (parts.next(), parts.next()) {
            (Some(namespace), Some(name)) => {
                parsed
                    .entries
                    .insert(format!("{namespace}/{name}"), identity);
            }
            _ => parsed.malformed_keys.push(key.clone()),
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(role: &str, audience: &str, sts: bool, exp: i64) -> StsIdentity {
        StsIdentity {
            role_arn: role.into(),
            audience: audience.into(),
            use_regional_sts: sts,
            token_expiration: exp,
            inject_sidecar: None,
        }
    }

    #[test]
    fn go_field_names_case_insensitive_and_cm_defaults() {
        let parsed = parse_config_map(
            r#"{
              "default/a": {"RoleARN": "arn:aws:iam::111122223333:role/a", "Audience": "aud", "UseRegionalSTS": true, "TokenExpiration": 300},
              "default/b": {"rolearn": "arn:aws:iam::111122223333:role/b", "unknown": [1]},
              "*/c": {"ROLEARN": "arn:aws:iam::111122223333:role/c", "tokenExpiration": 0}
            }"#,
            86400,
        )
        .unwrap();
        assert!(parsed.malformed_keys.is_empty());
        assert_eq!(
            parsed.entries["default/a"],
            id("arn:aws:iam::111122223333:role/a", "aud", true, 300),
            "explicit expiration is not clamped"
        );
        assert_eq!(
            parsed.entries["default/b"],
            id("arn:aws:iam::111122223333:role/b", "", false, 86400),
            "absent audience is empty, absent STS false, absent expiration = flag"
        );
        assert_eq!(
            parsed.entries["*/c"],
            id("arn:aws:iam::111122223333:role/c", "", false, 86400)
        );
    }

    #[test]
    fn malformed_keys_are_skipped_not_fatal() {
        let parsed = parse_config_map(
            r#"{"no-slash": {"RoleARN": "x"}, "ns/name/extra": {"RoleARN": "y"}, "ok/sa": {"RoleARN": "z"}}"#,
            86400,
        )
        .unwrap();
        assert_eq!(parsed.malformed_keys, vec!["no-slash".to_string()]);
        assert_eq!(parsed.entries.len(), 2);
        assert_eq!(parsed.entries["ns/name"].role_arn, "y");
        assert_eq!(parsed.entries["ok/sa"].role_arn, "z");
    }

    #[test]
    fn type_mismatch_or_bad_json_rejects_everything() {
        for bad in [
            "",
            "{",
            "[]",
            r#""text""#,
            r#"{"a/b": "role"}"#,
            r#"{"a/b": {"RoleARN": 5}}"#,
            r#"{"a/b": {"UseRegionalSTS": "true"}}"#,
            r#"{"a/b": {"TokenExpiration": 1.5}}"#,
            r#"{"a/b": {"TokenExpiration": "3600"}}"#,
        ] {
            assert!(parse_config_map(bad, 86400).is_err(), "{bad:?}");
        }
        let err = parse_config_map(r#"{"a/b": {"RoleARN": 5}}"#, 86400).unwrap_err();
        assert!(err.contains("RoleARN") && err.contains("string"), "{err}");
    }

    #[test]
    fn null_values_are_empty() {
        assert_eq!(
            parse_config_map("null", 86400).unwrap(),
            ParsedConfigMap::default()
        );
        let parsed = parse_config_map(r#"{"a/b": null, "a/c": {"RoleARN": null}}"#, 7200).unwrap();
        assert_eq!(parsed.entries["a/b"], id("", "", false, 7200));
        assert_eq!(parsed.entries["a/c"], id("", "", false, 7200));
    }
}
