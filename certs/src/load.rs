//! Loading PEM certificate chains and private keys into a rustls `CertifiedKey`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why TLS material could not be produced or loaded. Messages name files, never their secret contents.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: no PEM certificate found (expected a `-----BEGIN CERTIFICATE-----` block)", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: invalid PEM certificate data: {reason}", path.display())]
    BadCertificate { path: PathBuf, reason: String },
    #[error("{}: no PEM private key found (expected a PKCS#8, PKCS#1 or SEC1 `PRIVATE KEY` block)", path.display())]
    NoKey { path: PathBuf },
    #[error("{}: unusable private key: {reason}", path.display())]
    BadKey { path: PathBuf, reason: String },
    #[error("private key {} does not match certificate {}", key.display(), cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("cannot {what}: {reason}")]
    Generate { what: &'static str, reason: String },
}

fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|source| CertError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Load a certificate chain (leaf first) and its private key from PEM files.
pub fn load_certified_key(
    cert_path: &Path,
    key_path: &Path,
) -> Result<Arc<CertifiedKey>, CertError> {
    let cert_pem = read(cert_path)?;
    let key_pem = read(key_path)?;
    parse_certified_key(&cert_pem, &key_pem, cert_path, key_path)
}

/// Parse PEM bytes already read from `cert_path` / `key_path` (the paths only label errors).
pub fn parse_certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &Path,
    key_path: &Path,
) -> Result<Arc<CertifiedKey>, CertError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::BadCertificate {
            path: cert_path.to_owned(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(CertError::NoCertificate {
            path: cert_path.to_owned(),
        });
    }
    // The pki-types PEM error for keys never echoes the key bytes, but keep only its kind to be sure.
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => CertError::NoKey {
            path: key_path.to_owned(),
        },
        _ => CertError::BadKey {
            path: key_path.to_owned(),
            reason: "malformed PEM".into(),
        },
    })?;
    let provider = crate::provider();
    let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => CertError::KeyMismatch {
            cert: cert_path.to_owned(),
            key: key_path.to_owned(),
        },
        other => CertError::BadKey {
            path: key_path.to_owned(),
            reason: other.to_string(),
        },
    })?;
    Ok(Arc::new(certified))
}
