//! Generated certificates serve real TLS handshakes, and the reloading resolver follows the files on disk,
//! including a Kubernetes Secret-volume `..data` symlink swap.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use certs::{
    generate_ca, issue_client_cert, issue_serving_cert, server_config, CertError,
    CertificateAuthority, IssuedCertificate, ReloadOutcome, ReloadingCertResolver, TlsPolicy,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).expect("PEM certificate")
}

fn serving(ca: &CertificateAuthority) -> IssuedCertificate {
    issue_serving_cert(ca, &["webhook.podcred.svc", "localhost"], &[LOCALHOST]).unwrap()
}

/// Serves TLS with `resolver` on 127.0.0.1; each connection answers one line then closes.
async fn serve(resolver: Arc<ReloadingCertResolver>, policy: TlsPolicy) -> std::net::SocketAddr {
    let config = server_config(resolver, &policy, &[b"http/1.1"]).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let _ = tls.write_all(b"hello\n").await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    addr
}

/// The resolver over `dir`'s `tls.crt` and `tls.key`.
fn load_resolver(dir: &Path) -> Arc<ReloadingCertResolver> {
    ReloadingCertResolver::load(dir.join("tls.crt"), dir.join("tls.key")).unwrap()
}

fn ca_roots(ca_pem: &str) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der(ca_pem)).unwrap();
    roots
}

fn client_config(ca_pem: &str) -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(Arc::new(certs::provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(ca_roots(ca_pem))
        .with_no_client_auth()
}

/// A client that speaks TLS 1.2 only, with `provider`'s suites, trusting `ca_pem`.
fn tls12_client_config(
    provider: rustls::crypto::CryptoProvider,
    ca_pem: &str,
) -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(ca_roots(ca_pem))
        .with_no_client_auth()
}

/// Asserts what the resolver's next explicit re-check does.
macro_rules! assert_reload {
    ($resolver:expr, $outcome:pat) => {
        assert!(matches!($resolver.reload_if_changed(), $outcome))
    };
}

/// Asserts that the resolver holds `pair`'s certificate.
#[track_caller]
fn assert_current(resolver: &ReloadingCertResolver, pair: &IssuedCertificate) {
    assert_eq!(resolver.current().cert[0], der(&pair.cert_pem));
}

/// Handshake as a verifying client; returns the leaf certificate the server presented.
async fn served_leaf(
    addr: std::net::SocketAddr,
    ca_pem: &str,
    name: &str,
) -> Result<CertificateDer<'static>, std::io::Error> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(ca_pem)));
    let tcp = TcpStream::connect(addr).await?;
    let mut tls = connector
        .connect(ServerName::try_from(name.to_owned()).unwrap(), tcp)
        .await?;
    let mut greeting = String::new();
    tls.read_to_string(&mut greeting).await?;
    assert_eq!(greeting, "hello\n");
    let (_, session) = tls.get_ref();
    Ok(session.peer_certificates().unwrap()[0].clone().into_owned())
}

fn write_pair(dir: &Path, pair: &IssuedCertificate) {
    std::fs::write(dir.join("tls.crt"), &pair.cert_pem).unwrap();
    std::fs::write(dir.join("tls.key"), &pair.key_pem).unwrap();
}

#[tokio::test]
async fn generated_ca_and_serving_cert_complete_a_verified_handshake() {
    let ca = generate_ca("podcred test CA").unwrap();
    let pair = serving(&ca);
    let dir = tempfile::tempdir().unwrap();
    write_pair(dir.path(), &pair);
    let resolver = load_resolver(dir.path());
    let addr = serve(resolver, TlsPolicy::default()).await;
    for name in ["webhook.podcred.svc", "localhost", "127.0.0.1"] {
        let leaf = served_leaf(addr, ca.cert_pem(), name).await.unwrap();
        assert_eq!(leaf, der(&pair.cert_pem), "{name}");
    }
    // A name not in the SANs fails verification.
    let err = served_leaf(addr, ca.cert_pem(), "other.example")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
    // A different CA is not trusted.
    let stranger = generate_ca("someone else").unwrap();
    assert!(served_leaf(addr, stranger.cert_pem(), "localhost")
        .await
        .is_err());
}

#[tokio::test]
async fn min_version_1_3_refuses_tls_1_2_clients() {
    let ca = generate_ca("ca").unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_pair(dir.path(), &serving(&ca));
    let resolver = load_resolver(dir.path());
    let policy = TlsPolicy {
        min_version: certs::parse_min_version("VersionTLS13").unwrap(),
        tls12_cipher_suites: None,
    };
    let addr = serve(resolver, policy).await;
    let tls12_only = tls12_client_config(certs::provider(), ca.cert_pem());
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls12_only));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let result = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await;
    assert!(result.is_err(), "TLS 1.2 handshake must fail");
    // TLS 1.3 works.
    served_leaf(addr, ca.cert_pem(), "localhost").await.unwrap();
}

#[tokio::test]
async fn cipher_suite_restriction_applies_to_tls_1_2() {
    let ca = generate_ca("ca").unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_pair(dir.path(), &serving(&ca));
    let resolver = load_resolver(dir.path());
    let policy = TlsPolicy {
        min_version: None,
        tls12_cipher_suites: certs::parse_cipher_suites("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384")
            .unwrap(),
    };
    let addr = serve(resolver, policy).await;
    let connect_with = |suite: rustls::SupportedCipherSuite| {
        let mut provider = certs::provider();
        provider.cipher_suites = vec![suite];
        let config = tls12_client_config(provider, ca.cert_pem());
        async move {
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            let tcp = TcpStream::connect(addr).await.unwrap();
            let mut tls = connector
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await?;
            let mut out = String::new();
            tls.read_to_string(&mut out).await.map(|_| out)
        }
    };
    use rustls::crypto::aws_lc_rs::cipher_suite as s;
    assert_eq!(
        connect_with(s::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384)
            .await
            .unwrap(),
        "hello\n"
    );
    assert!(connect_with(s::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)
        .await
        .is_err());
}

async fn wait_for_leaf(
    addr: std::net::SocketAddr,
    ca_pem: &str,
    expected: &CertificateDer<'static>,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if served_leaf(addr, ca_pem, "localhost").await.ok().as_ref() == Some(expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "new certificate not served within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn rewritten_files_are_served_without_restart() {
    let ca = generate_ca("ca").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let first = serving(&ca);
    write_pair(dir.path(), &first);
    let resolver = load_resolver(dir.path());
    // A long poll interval: the file-system event must be what triggers the reload.
    let _watcher = certs::watch(resolver.clone(), Duration::from_secs(3600)).unwrap();
    let addr = serve(resolver.clone(), TlsPolicy::default()).await;
    assert_eq!(
        served_leaf(addr, ca.cert_pem(), "localhost").await.unwrap(),
        der(&first.cert_pem)
    );

    let second = serving(&ca);
    write_pair(dir.path(), &second);
    wait_for_leaf(addr, ca.cert_pem(), &der(&second.cert_pem)).await;
    assert!(resolver.stats().reloads >= 1);
}

/// What the kubelet does to a Secret volume: new timestamped dir, `..data_tmp` symlink, rename over `..data`.
fn kubelet_swap(dir: &Path, generation: &str, pair: &IssuedCertificate) {
    let target = dir.join(generation);
    std::fs::create_dir(&target).unwrap();
    write_pair(&target, pair);
    std::os::unix::fs::symlink(generation, dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
}

#[tokio::test]
async fn secret_volume_symlink_swap_is_picked_up() {
    let ca = generate_ca("ca").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let first = serving(&ca);
    kubelet_swap(dir.path(), "..2026_11_25_01", &first);
    for file in ["tls.crt", "tls.key"] {
        std::os::unix::fs::symlink(format!("..data/{file}"), dir.path().join(file)).unwrap();
    }
    let resolver = load_resolver(dir.path());
    let _watcher = certs::watch(resolver.clone(), Duration::from_secs(3600)).unwrap();
    let addr = serve(resolver, TlsPolicy::default()).await;
    assert_eq!(
        served_leaf(addr, ca.cert_pem(), "localhost").await.unwrap(),
        der(&first.cert_pem)
    );

    let second = serving(&ca);
    kubelet_swap(dir.path(), "..2026_11_25_02", &second);
    std::fs::remove_dir_all(dir.path().join("..2026_11_25_01")).unwrap();
    wait_for_leaf(addr, ca.cert_pem(), &der(&second.cert_pem)).await;
}

#[tokio::test]
async fn periodic_recheck_catches_changes_without_events() {
    let ca = generate_ca("ca").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let first = serving(&ca);
    write_pair(dir.path(), &first);
    let resolver = load_resolver(dir.path());
    // No watcher at all: only the explicit re-check, as the poll does it.
    let second = serving(&ca);
    write_pair(dir.path(), &second);
    assert_reload!(resolver, ReloadOutcome::Reloaded);
    assert_reload!(resolver, ReloadOutcome::Unchanged);
    assert_current(&resolver, &second);
}

#[test]
fn bad_reload_keeps_the_last_good_pair_and_logs_once() {
    let ca = generate_ca("ca").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let good = serving(&ca);
    write_pair(dir.path(), &good);
    let resolver = load_resolver(dir.path());

    // Key from another pair: mismatch.
    let other = serving(&ca);
    std::fs::write(dir.path().join("tls.key"), &other.key_pem).unwrap();
    match resolver.reload_if_changed() {
        ReloadOutcome::Failed(CertError::KeyMismatch { .. }) => {}
        other => panic!("expected key mismatch, got {other:?}"),
    }
    assert_current(&resolver, &good);
    // Same bad bytes again: not re-parsed, not counted twice.
    assert_reload!(resolver, ReloadOutcome::Unchanged);
    assert_eq!(resolver.stats().failures, 1);

    // Garbage certificate.
    std::fs::write(dir.path().join("tls.crt"), "not a certificate").unwrap();
    assert_reload!(
        resolver,
        ReloadOutcome::Failed(CertError::NoCertificate { .. })
    );
    // Removed file.
    std::fs::remove_file(dir.path().join("tls.crt")).unwrap();
    assert_reload!(resolver, ReloadOutcome::Failed(CertError::Read { .. }));
    assert_current(&resolver, &good);

    // Completing the pair recovers.
    write_pair(dir.path(), &other);
    assert_reload!(resolver, ReloadOutcome::Reloaded);
    assert_current(&resolver, &other);
}

#[test]
fn load_errors_name_the_file_and_never_the_key() {
    let ca = generate_ca("ca").unwrap();
    let pair = serving(&ca);
    let dir = tempfile::tempdir().unwrap();
    write_pair(dir.path(), &pair);
    let cert = dir.path().join("tls.crt");
    let key = dir.path().join("tls.key");

    let missing = certs::load_certified_key(&dir.path().join("nope.crt"), &key).unwrap_err();
    assert!(missing.to_string().contains("nope.crt"), "{missing}");

    // Key file holding a certificate only.
    std::fs::write(&key, &pair.cert_pem).unwrap();
    let no_key = certs::load_certified_key(&cert, &key)
        .unwrap_err()
        .to_string();
    assert!(
        no_key.contains("tls.key") && no_key.contains("no PEM private key"),
        "{no_key}"
    );

    // Corrupted key body: the message must not echo it.
    let corrupted = pair.key_pem.replace(
        &pair.key_pem[40..80],
        "SECRETSECRETSECRETSECRETSECRETSECRETSECR",
    );
    std::fs::write(&key, &corrupted).unwrap();
    let err = certs::load_certified_key(&cert, &key)
        .unwrap_err()
        .to_string();
    assert!(!err.contains("SECRET"), "{err}");
    let body: String = pair.key_pem.lines().nth(1).unwrap().to_owned();
    assert!(!err.contains(&body), "{err}");
    assert!(!format!("{ca:?}").contains(ca.key_pem().lines().nth(1).unwrap()));
}

#[test]
fn client_cert_carries_cn_and_organizations_and_ca_round_trips_through_pem() {
    let ca = generate_ca("ca").unwrap();
    let client = issue_client_cert(&ca, "admin", &["system:masters"]).unwrap();
    let leaf = der(&client.cert_pem);
    // The subject DER contains both strings (CN and O as UTF8/printable strings).
    let bytes = leaf.as_ref();
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(contains(b"admin") && contains(b"system:masters"));

    // A reloaded CA issues certificates its original certificate verifies.
    let reloaded = CertificateAuthority::from_pem(ca.cert_pem(), ca.key_pem()).unwrap();
    let pair = serving(&reloaded);
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(ca_roots(ca.cert_pem())),
        Arc::new(certs::provider()),
    )
    .build()
    .unwrap();
    rustls::client::danger::ServerCertVerifier::verify_server_cert(
        verifier.as_ref(),
        &der(&pair.cert_pem),
        &[],
        &ServerName::try_from("localhost").unwrap(),
        &[],
        rustls::pki_types::UnixTime::now(),
    )
    .unwrap();
    assert!(issue_serving_cert(&ca, &[], &[]).is_err());
}
