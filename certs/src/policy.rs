//! `--tls-min-version` and `--tls-cipher-suites` (Go/IANA names, as the upstream webhook accepts them) mapped
//! onto a rustls `ServerConfig`.
//!
//! Go semantics kept: the cipher-suite list only restricts TLS 1.0–1.2 suites; TLS 1.3 suites are always
//! enabled (Go does not let them be configured, and naming them is accepted). rustls implements only the
//! ECDHE AEAD suites and TLS ≥ 1.2, so Go names outside that set are rejected with a message saying so, and a
//! minimum of 1.0/1.1 is accepted but means 1.2 (see [`TlsVersion::effective`]).

use std::sync::Arc;

use rustls::crypto::aws_lc_rs::cipher_suite as suites;
use rustls::server::ResolvesServerCert;
use rustls::{ServerConfig, SupportedCipherSuite, SupportedProtocolVersion};

/// A minimum TLS version as named by the upstream flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    V1_0,
    V1_1,
    V1_2,
    V1_3,
}

impl std::fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TlsVersion::V1_0 => "TLS 1.0",
            TlsVersion::V1_1 => "TLS 1.1",
            TlsVersion::V1_2 => "TLS 1.2",
            TlsVersion::V1_3 => "TLS 1.3",
        })
    }
}

impl TlsVersion {
    /// The versions rustls will negotiate for this minimum (1.0 and 1.1 do not exist in rustls).
    pub fn effective(self) -> &'static [&'static SupportedProtocolVersion] {
        static TLS13_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
        static TLS12_AND_13: &[&SupportedProtocolVersion] =
            &[&rustls::version::TLS13, &rustls::version::TLS12];
        match self {
            TlsVersion::V1_3 => TLS13_ONLY,
            _ => TLS12_AND_13,
        }
    }
}

/// TLS settings from the command line. `Default` = rustls defaults (TLS 1.2–1.3, all AEAD suites), which
/// matches Go's current server defaults.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TlsPolicy {
    pub min_version: Option<TlsVersion>,
    /// TLS 1.2 suites to allow, in order; `None` = all.
    pub tls12_cipher_suites: Option<Vec<SupportedCipherSuite>>,
}

impl TlsPolicy {
    /// A minimum of 1.0/1.1 is accepted for drop-in compatibility but negotiates TLS 1.2 at least: the line
    /// to log once at startup so the difference is visible. `None` for every other minimum.
    pub fn raised_min_version_warning(&self) -> Option<String> {
        match self.min_version? {
            requested @ (TlsVersion::V1_0 | TlsVersion::V1_1) => Some(format!(
                "--tls-min-version asks for {requested}, which rustls does not implement: \
                 the effective minimum is TLS 1.2 (rustls' floor)"
            )),
            TlsVersion::V1_2 | TlsVersion::V1_3 => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsPolicyError {
    /// Upstream's exact message for an unknown version.
    #[error("Invalid value for tls-min-version unsupported version {0}")]
    MinVersion(String),
    /// Upstream's exact message for a name Go does not know either.
    #[error("invalid tls-cipher-suites: unsupported cipher suite: {0}")]
    UnknownCipherSuite(String),
    #[error(
        "invalid tls-cipher-suites: {0} is a Go cipher suite that rustls does not implement \
         (no CBC, RC4, 3DES or RSA key exchange); remove it from --tls-cipher-suites and use ECDHE suites \
         with AES-GCM or ChaCha20-Poly1305 instead: {supported} (TLS 1.3 suites are always enabled)",
        supported = TLS12_NAMES.join(", ")
    )]
    NotImplemented(String),
}

/// Parse `--tls-min-version`: `1.0`…`1.3` or `VersionTLS10`…`VersionTLS13`; empty = default.
pub fn parse_min_version(value: &str) -> Result<Option<TlsVersion>, TlsPolicyError> {
    Ok(Some(match value {
        "" => return Ok(None),
        "1.0" | "VersionTLS10" => TlsVersion::V1_0,
        "1.1" | "VersionTLS11" => TlsVersion::V1_1,
        "1.2" | "VersionTLS12" => TlsVersion::V1_2,
        "1.3" | "VersionTLS13" => TlsVersion::V1_3,
        other => return Err(TlsPolicyError::MinVersion(other.to_owned())),
    }))
}

/// Go's TLS 1.0–1.2 suites that rustls implements (Go's legacy `…_CHACHA20_POLY1305` aliases included).
const IMPLEMENTED: &[(&str, SupportedCipherSuite)] = &[
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        suites::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        suites::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        suites::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        suites::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        suites::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        suites::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
        suites::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
        suites::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

/// The TLS 1.2 names to suggest instead of a suite rustls does not implement (the first six of [`IMPLEMENTED`];
/// the aliases are left out).
const TLS12_NAMES: &[&str] = &[
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
];

/// TLS 1.3 names: accepted, no effect (always enabled, as in Go).
const TLS13_NAMES: &[&str] = &[
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

/// Suites Go knows (secure and insecure lists) that rustls does not implement.
const GO_ONLY: &[&str] = &[
    "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
];

/// Parse `--tls-cipher-suites` (comma-separated; entries trimmed, empty entries skipped). Empty = default.
pub fn parse_cipher_suites(
    value: &str,
) -> Result<Option<Vec<SupportedCipherSuite>>, TlsPolicyError> {
    let names: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .collect();
    if names.is_empty() {
        return Ok(None);
    }
    let mut chosen: Vec<SupportedCipherSuite> = Vec::new();
    for name in names {
        if let Some((_, suite)) = IMPLEMENTED.iter().find(|(known, _)| *known == name) {
            if !chosen.iter().any(|s| s.suite() == suite.suite()) {
                chosen.push(*suite);
            }
        } else if TLS13_NAMES.contains(&name) {
            continue;
        } else if GO_ONLY.contains(&name) {
            return Err(TlsPolicyError::NotImplemented(name.to_owned()));
        } else {
            return Err(TlsPolicyError::UnknownCipherSuite(name.to_owned()));
        }
    }
    Ok(Some(chosen))
}

/// A server config with the given certificate resolver and policy. `alpn` e.g. `[b"h2", b"http/1.1"]`.
pub fn server_config(
    resolver: Arc<dyn ResolvesServerCert>,
    policy: &TlsPolicy,
    alpn: &[&[u8]],
) -> Result<ServerConfig, rustls::Error> {
    let mut provider = crate::provider();
    if let Some(tls12) = &policy.tls12_cipher_suites {
        provider
            .cipher_suites
            .retain(|suite| suite.tls13().is_some());
        provider.cipher_suites.extend(tls12.iter().copied());
    }
    let versions = policy
        .min_version
        .map(TlsVersion::effective)
        .unwrap_or(rustls::DEFAULT_VERSIONS);
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_version_accepts_upstream_spellings_only() {
        for (input, expected) in [
            ("1.0", TlsVersion::V1_0),
            ("VersionTLS10", TlsVersion::V1_0),
            ("1.1", TlsVersion::V1_1),
            ("VersionTLS11", TlsVersion::V1_1),
            ("1.2", TlsVersion::V1_2),
            ("VersionTLS12", TlsVersion::V1_2),
            ("1.3", TlsVersion::V1_3),
            ("VersionTLS13", TlsVersion::V1_3),
        ] {
            assert_eq!(parse_min_version(input), Ok(Some(expected)), "{input}");
        }
        assert_eq!(parse_min_version(""), Ok(None));
        let err = parse_min_version("1.4").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Invalid value for tls-min-version unsupported version 1.4"
        );
        assert!(parse_min_version("tls1.2").is_err());
    }

    #[test]
    fn cipher_suites_follow_upstream_list_rules() {
        assert_eq!(parse_cipher_suites("").unwrap(), None);
        assert_eq!(parse_cipher_suites(" , ,").unwrap(), None);
        let chosen = parse_cipher_suites(
            " TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 ,,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            chosen.iter().map(|s| s.suite()).collect::<Vec<_>>(),
            vec![
                suites::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256.suite(),
                suites::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384.suite()
            ]
        );
        // TLS 1.3 names are accepted and leave the TLS 1.2 list empty.
        assert_eq!(
            parse_cipher_suites("TLS_AES_128_GCM_SHA256").unwrap(),
            Some(vec![])
        );
        assert_eq!(
            parse_cipher_suites("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,bogus")
                .unwrap_err()
                .to_string(),
            "invalid tls-cipher-suites: unsupported cipher suite: bogus"
        );
        let err = parse_cipher_suites("TLS_RSA_WITH_AES_128_CBC_SHA")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "TLS_RSA_WITH_AES_128_CBC_SHA is a Go cipher suite that rustls does not implement"
            ),
            "{err}"
        );
        assert!(err.contains("remove it from --tls-cipher-suites"), "{err}");
        assert!(
            err.contains("instead: TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, "),
            "{err}"
        );
        // A Go suite rustls lacks is rejected even after valid names.
        assert_eq!(
            parse_cipher_suites(
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA"
            ),
            Err(TlsPolicyError::NotImplemented(
                "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA".to_owned()
            ))
        );
    }

    #[test]
    fn go_chacha_aliases_and_duplicates_collapse() {
        let chosen = parse_cipher_suites(
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305,TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,TLS_AES_256_GCM_SHA384",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            chosen.iter().map(|s| s.suite()).collect::<Vec<_>>(),
            vec![suites::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256.suite()]
        );
    }

    #[test]
    fn min_versions_below_rustls_floor_mean_tls12_and_say_so() {
        for version in [TlsVersion::V1_0, TlsVersion::V1_1] {
            assert_eq!(version.effective(), TlsVersion::V1_2.effective());
            let policy = TlsPolicy {
                min_version: Some(version),
                tls12_cipher_suites: None,
            };
            let warning = policy.raised_min_version_warning().expect("warning");
            assert!(warning.contains(&version.to_string()), "{warning}");
            assert!(
                warning.contains("the effective minimum is TLS 1.2"),
                "{warning}"
            );
        }
        assert_eq!(TlsVersion::V1_3.effective(), &[&rustls::version::TLS13]);
        for min_version in [None, Some(TlsVersion::V1_2), Some(TlsVersion::V1_3)] {
            let policy = TlsPolicy {
                min_version,
                tls12_cipher_suites: None,
            };
            assert_eq!(policy.raised_min_version_warning(), None, "{min_version:?}");
        }
    }

    #[test]
    fn every_implemented_name_maps_to_a_provider_suite() {
        let provider = crate::provider();
        for (name, suite) in IMPLEMENTED {
            assert!(
                provider
                    .cipher_suites
                    .iter()
                    .any(|s| s.suite() == suite.suite()),
                "{name}"
            );
        }
        // The suggestions are exactly the implemented TLS 1.2 suites (aliases aside).
        for name in TLS12_NAMES {
            assert!(IMPLEMENTED.iter().any(|(known, _)| known == name), "{name}");
        }
        let mut distinct = Vec::new();
        for (_, suite) in IMPLEMENTED {
            if !distinct.contains(&suite.suite()) {
                distinct.push(suite.suite());
            }
        }
        assert_eq!(distinct.len(), TLS12_NAMES.len());
    }
}
