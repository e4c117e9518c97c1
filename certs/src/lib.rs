//! TLS material for podcred: generate a CA and serving/client certificates (bootstrap and tests), load PEM
//! files into rustls, serve them through a resolver that reloads on change, and map the upstream webhook's
//! `--tls-min-version` / `--tls-cipher-suites` names onto rustls.
//!
//! Contract:
//! - Every function that builds rustls objects uses the aws-lc-rs provider explicitly; nothing here relies on
//!   the process-wide default provider.
//! - Errors name the file or flag value at fault and never contain key material.
//! - [`ReloadingCertResolver`] always serves the last pair that loaded successfully; a bad reload is logged
//!   and ignored.

mod generate;
mod load;
mod policy;
mod reload;
pub mod watch;

pub use generate::{
    generate_ca, issue_client_cert, issue_serving_cert, CertificateAuthority, IssuedCertificate,
};
pub use load::{load_certified_key, parse_certified_key, CertError};
pub use policy::{
    parse_cipher_suites, parse_min_version, server_config, TlsPolicy, TlsPolicyError, TlsVersion,
};
pub use reload::{watch, ReloadOutcome, ReloadStats, ReloadingCertResolver};
pub use watch::{watch_files, FileWatch, WatchError, WatchOptions};

/// The crypto provider every podcred TLS endpoint uses.
pub fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}
