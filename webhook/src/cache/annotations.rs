//! ServiceAccount annotations → [`StsIdentity`] (spec §3.1), with upstream's Go parsing rules.

use std::collections::BTreeMap;

use crate::identity::StsIdentity;

// Annotation values below upstream's minimum token expiration are raised to it.
use crate::mutate::MIN_TOKEN_EXPIRATION;

/// `--compose-role-arn`: account and partition from the instance identity document (§3.6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleArnComposer {
    pub partition: String,
    pub account_id: String,
}

impl RoleArnComposer {
    /// A value without the substring `arn:` is a role name or path: `arn:<partition>:iam::<account>:role/<value>`.
    pub fn compose(&self, value: &str) -> String {
        if value.contains("arn:") {
            value.to_owned()
        } else {
            format!(
                "arn:{}:iam::{}:role/{}",
                self.partition, self.account_id, value
            )
        }
    }
}

/// Flag values the annotations fall back to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnotationDefaults {
    /// `--annotation-prefix` (e.g. `eks.amazonaws.com`).
    pub annotation_prefix: String,
    /// Sidecar annotation domain (e.g. `podcred.dev`); `None` when sidecar injection is off.
    pub sidecar_prefix: Option<String>,
    /// `--token-audience`.
    pub audience: String,
    /// `--sts-regional-endpoint`.
    pub regional_sts: bool,
    /// `--token-expiration`, already clamped to ≥ 600.
    pub token_expiration: i64,
    /// `Some` with `--compose-role-arn`.
    pub compose_role_arn: Option<RoleArnComposer>,
}

impl AnnotationDefaults {
    /// Whether the cache keeps an annotation with this key.
    pub fn is_relevant(&self, key: &str) -> bool {
        let under = |prefix: &str| {
            key.len() > prefix.len()
                && key.starts_with(prefix)
                && key[prefix.len()..].starts_with('/')
        };
        under(&self.annotation_prefix) || self.sidecar_prefix.as_deref().is_some_and(under)
    }
}

pub use crate::go::parse_bool as parse_go_bool;

/// Upstream's check `^arn:aws[a-z0-9-]*:iam::\d{12}:role\/[\w-\/.@+=,]+$` (a mismatch is only a warning).
pub fn is_valid_role_arn(arn: &str) -> bool {
    let Some(rest) = arn.strip_prefix("arn:aws") else {
        return false;
    };
    let Some((partition_suffix, rest)) = rest.split_once(':') else {
        return false;
    };
    if !partition_suffix
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return false;
    }
    let Some(rest) = rest.strip_prefix("iam::") else {
        return false;
    };
    let Some((account, rest)) = rest.split_once(':') else {
        return false;
    };
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let Some(path) = rest.strip_prefix("role/") else {
        return false;
    };
    !path.is_empty()
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-/.@+=,".contains(&b))
}

/// Derive an SA's identity from its annotations (only `<prefix>/…` keys are read).
///
/// - `role-arn`: present (even empty) → used as is, composed with `--compose-role-arn` when it is not an ARN.
/// - `audience`: absent → `--token-audience`; present but empty → empty (API-server default audience).
/// - `sts-regional-endpoints`: Go `ParseBool`; unparsable or absent → `--sts-regional-endpoint`.
/// - `token-expiration`: base-10 int64, clamped to ≥ 600; unparsable or absent → `--token-expiration`.
/// - `<sidecar-prefix>/inject`: Go `ParseBool` into `inject_sidecar`; unparsable or absent → `None`.
pub fn sts_identity_from_annotations(
    annotations: &BTreeMap<String, String>,
    defaults: &AnnotationDefaults,
) -> StsIdentity {
    sts_identity_from_lookup(|key| annotations.get(key).map(String::as_str), defaults)
}

/// Same as [`sts_identity_from_annotations`] over any key lookup.
pub(crate) fn sts_identity_from_lookup<'a>(
    get: impl Fn(&str) -> Option<&'a str>,
    defaults: &AnnotationDefaults,
) -> StsIdentity {
    let prefix = &defaults.annotation_prefix;
    let key = |name: &str| format!("{prefix}/{name}");
    let role_arn = match (get(&key("role-arn")), &defaults.compose_role_arn) {
        (None, _) => String::new(),
        (Some(value), Some(composer)) if !value.is_empty() => composer.compose(value),
        (Some(value), _) => value.to_owned(),
    };
    let audience = get(&key("audience")).map_or_else(|| defaults.audience.clone(), str::to_owned);
    let use_regional_sts = get(&key("sts-regional-endpoints"))
        .and_then(parse_go_bool)
        .unwrap_or(defaults.regional_sts);
    let token_expiration = get(&key("token-expiration"))
        .and_then(|value| value.parse::<i64>().ok())
        .map_or(defaults.token_expiration, |value| {
            value.max(MIN_TOKEN_EXPIRATION)
        });
    let inject_sidecar = defaults
        .sidecar_prefix
        .as_ref()
        .and_then(|sidecar| get(&format!("{sidecar}/inject")))
        .and_then(parse_go_bool);
    StsIdentity {
        role_arn,
        audience,
        use_regional_sts,
        token_expiration,
        inject_sidecar,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> AnnotationDefaults {
        AnnotationDefaults {
            annotation_prefix: "eks.amazonaws.com".into(),
            sidecar_prefix: Some("podcred.dev".into()),
            audience: "sts.amazonaws.com".into(),
            regional_sts: false,
            token_expiration: 86400,
            compose_role_arn: None,
        }
    }

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn unannotated_sa_gets_flag_defaults_and_no_role() {
        let id = sts_identity_from_annotations(&BTreeMap::new(), &defaults());
        assert_eq!(
            id,
            StsIdentity {
                role_arn: String::new(),
                audience: "sts.amazonaws.com".into(),
                use_regional_sts: false,
                token_expiration: 86400,
                inject_sidecar: None,
            }
        );
    }

    #[test]
    fn annotations_override_defaults() {
        let id = sts_identity_from_annotations(
            &annotations(&[
                (
                    "eks.amazonaws.com/role-arn",
                    "arn:aws:iam::111122223333:role/s3-reader",
                ),
                ("eks.amazonaws.com/audience", ""),
                ("eks.amazonaws.com/sts-regional-endpoints", "T"),
                ("eks.amazonaws.com/token-expiration", "3600"),
                ("podcred.dev/inject", "true"),
                ("other.io/role-arn", "ignored"),
            ]),
            &defaults(),
        );
        assert_eq!(id.role_arn, "arn:aws:iam::111122223333:role/s3-reader");
        assert_eq!(id.audience, "", "present-but-empty audience stays empty");
        assert!(id.use_regional_sts);
        assert_eq!(id.token_expiration, 3600);
        assert_eq!(id.inject_sidecar, Some(true));
    }

    #[test]
    fn regional_sts_matrix_matches_upstream() {
        // annotation × flag → annotation wins when parseable; empty/absent/garbage → flag.
        for flag in [false, true] {
            let mut d = defaults();
            d.regional_sts = flag;
            for (value, expected) in [
                (Some("true"), true),
                (Some("1"), true),
                (Some("false"), false),
                (Some("F"), false),
                (Some(""), flag),
                (Some("yes"), flag),
                (None, flag),
            ] {
                let a = match value {
                    Some(v) => annotations(&[("eks.amazonaws.com/sts-regional-endpoints", v)]),
                    None => BTreeMap::new(),
                };
                assert_eq!(
                    sts_identity_from_annotations(&a, &d).use_regional_sts,
                    expected,
                    "flag={flag} value={value:?}"
                );
            }
        }
    }

    #[test]
    fn token_expiration_parses_like_go_parse_int_and_clamps() {
        for (value, expected) in [
            ("3600", 3600),
            ("+3600", 3600),
            ("0", 600),
            ("-5", 600),
            ("599", 600),
            ("1000000000", 1_000_000_000),
            ("", 86400),
            ("1h", 86400),
            ("3600.0", 86400),
            ("0x10", 86400),
            ("99999999999999999999", 86400),
        ] {
            let a = annotations(&[("eks.amazonaws.com/token-expiration", value)]);
            assert_eq!(
                sts_identity_from_annotations(&a, &defaults()).token_expiration,
                expected,
                "{value:?}"
            );
        }
    }

    #[test]
    fn compose_role_arn_only_for_values_without_arn_prefix() {
        let mut d = defaults();
        d.compose_role_arn = Some(RoleArnComposer {
            partition: "aws".into(),
            account_id: "111122223333".into(),
        });
        let compose = |value: &str| {
            sts_identity_from_annotations(
                &annotations(&[("eks.amazonaws.com/role-arn", value)]),
                &d,
            )
            .role_arn
        };
        assert_eq!(
            compose("s3-reader"),
            "arn:aws:iam::111122223333:role/s3-reader"
        );
        assert_eq!(
            compose("path/to/role"),
            "arn:aws:iam::111122223333:role/path/to/role"
        );
        assert_eq!(
            compose("arn:aws-cn:iam::111122223333:role/x"),
            "arn:aws-cn:iam::111122223333:role/x"
        );
        assert_eq!(compose(""), "", "empty stays empty: no mutation");
    }

    #[test]
    fn sidecar_annotation_needs_the_sidecar_prefix() {
        let mut d = defaults();
        let a = annotations(&[("podcred.dev/inject", "false")]);
        assert_eq!(
            sts_identity_from_annotations(&a, &d).inject_sidecar,
            Some(false)
        );
        let garbage = annotations(&[("podcred.dev/inject", "yes")]);
        assert_eq!(
            sts_identity_from_annotations(&garbage, &d).inject_sidecar,
            None
        );
        d.sidecar_prefix = None;
        assert_eq!(sts_identity_from_annotations(&a, &d).inject_sidecar, None);
    }

    #[test]
    fn relevant_keys_are_exactly_the_prefixed_ones() {
        let d = defaults();
        assert!(d.is_relevant("eks.amazonaws.com/role-arn"));
        assert!(d.is_relevant("podcred.dev/inject"));
        assert!(!d.is_relevant("eks.amazonaws.com"));
        assert!(!d.is_relevant("eks.amazonaws.comx/role-arn"));
        assert!(!d.is_relevant("kubectl.kubernetes.io/last-applied-configuration"));
    }

    #[test]
    fn role_arn_validation_follows_upstream_regex() {
        for ok in [
            "arn:aws:iam::111122223333:role/s3-reader",
            "arn:aws-cn:iam::111122223333:role/path/to/x_y.z@a+b=c,d",
            "arn:aws-us-gov:iam::111122223333:role/r",
        ] {
            assert!(is_valid_role_arn(ok), "{ok}");
        }
        for bad in [
            "",
            "s3-reader",
            "arn:aws:iam::11112222333:role/x",
            "arn:aws:iam::111122223333:user/x",
            "arn:aws:iam::111122223333:role/",
            "arn:AWS:iam::111122223333:role/x",
            "arn:aws:iam::111122223333:role/x y",
        ] {
            assert!(!is_valid_role_arn(bad), "{bad}");
        }
    }

    #[test]
    fn go_parse_bool_set() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_go_bool(t), Some(true));
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_go_bool(f), Some(false));
        }
        for n in ["", "yes", "tRUE", " true"] {
            assert_eq!(parse_go_bool(n), None);
        }
    }
}
