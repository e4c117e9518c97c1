//! Certificate generation with rcgen: a CA, serving certificates (DNS/IP SANs) and client certificates
//! (CN + organizations, as kube-apiserver maps them to user and groups). All outputs are PEM strings.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::load::CertError;

const CA_VALIDITY: Duration = Duration::days(3650);
const LEAF_VALIDITY: Duration = Duration::days(365);
/// Back-dating absorbs small clock differences between the issuer and the verifier.
const BACKDATE: Duration = Duration::hours(1);

/// A certificate authority able to issue certificates. Keeps its key in memory; `key_pem` is the only way out.
pub struct CertificateAuthority {
    cert_pem: String,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Reuse an existing CA (e.g. one written by an earlier run) from its PEM certificate and key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, CertError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| CertError::Generate {
            what: "parse CA key",
            reason: e.to_string(),
        })?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(|e| CertError::Generate {
            what: "parse CA certificate",
            reason: e.to_string(),
        })?;
        Ok(Self {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            issuer,
        })
    }

    /// The CA certificate (what clients put in their trust store, e.g. a webhook's `caBundle`).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key (PKCS#8 PEM). Handle as a secret.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }
}

/// A leaf certificate and its private key (PKCS#8), both PEM.
#[derive(Clone)]
pub struct IssuedCertificate {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for IssuedCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCertificate")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

fn rcgen_error(what: &'static str) -> impl FnOnce(rcgen::Error) -> CertError {
    move |e| CertError::Generate {
        what,
        reason: e.to_string(),
    }
}

fn validity(params: &mut CertificateParams, lifetime: Duration) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + lifetime;
}

fn subject(common_name: &str, organizations: &[&str]) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    for organization in organizations {
        name.push(DnType::OrganizationName, *organization);
    }
    name.push(DnType::CommonName, common_name);
    name
}

/// Generate a self-signed CA (ECDSA P-256, 10 years) with the given common name.
pub fn generate_ca(common_name: &str) -> Result<CertificateAuthority, CertError> {
    let key = KeyPair::generate().map_err(rcgen_error("generate CA key"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(common_name, &[]);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, CA_VALIDITY);
    let cert = params
        .self_signed(&key)
        .map_err(rcgen_error("self-sign CA certificate"))?;
    let key_pem = key.serialize_pem();
    Ok(CertificateAuthority {
        cert_pem: cert.pem(),
        key_pem,
        issuer: Issuer::new(params, key),
    })
}

fn issue(
    ca: &CertificateAuthority,
    mut params: CertificateParams,
    usage: ExtendedKeyUsagePurpose,
) -> Result<IssuedCertificate, CertError> {
    let key = KeyPair::generate().map_err(rcgen_error("generate key"))?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, LEAF_VALIDITY);
    let cert = params
        .signed_by(&key, &ca.issuer)
        .map_err(rcgen_error("sign certificate"))?;
    Ok(IssuedCertificate {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Issue a serving certificate (server auth, 1 year) for the given DNS names and IP addresses.
/// The subject CN is the first DNS name (or the first IP address).
pub fn issue_serving_cert(
    ca: &CertificateAuthority,
    dns_names: &[&str],
    ip_addrs: &[IpAddr],
) -> Result<IssuedCertificate, CertError> {
    if dns_names.is_empty() && ip_addrs.is_empty() {
        return Err(CertError::Generate {
            what: "issue serving certificate",
            reason: "at least one DNS name or IP address is required".into(),
        });
    }
    let mut params = CertificateParams::default();
    let common_name = dns_names
        .first()
        .map(|name| (*name).to_owned())
        .unwrap_or_else(|| ip_addrs[0].to_string());
    params.distinguished_name = subject(&common_name, &[]);
    for name in dns_names {
        let name = (*name)
            .try_into()
            .map_err(rcgen_error("use DNS name in a certificate"))?;
        params.subject_alt_names.push(SanType::DnsName(name));
    }
    params
        .subject_alt_names
        .extend(ip_addrs.iter().copied().map(SanType::IpAddress));
    issue(ca, params, ExtendedKeyUsagePurpose::ServerAuth)
}

/// Issue a client certificate (client auth, 1 year). kube-apiserver reads the CN as the user name and each
/// organization as a group (e.g. `system:masters`).
pub fn issue_client_cert(
    ca: &CertificateAuthority,
    common_name: &str,
    organizations: &[&str],
) -> Result<IssuedCertificate, CertError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(common_name, organizations);
    issue(ca, params, ExtendedKeyUsagePurpose::ClientAuth)
}
