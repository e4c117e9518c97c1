//! The HTTP layer over real TLS: certificates from the `certs` crate, rotation without restart, readiness,
//! metrics text, the body cap, debug routes and graceful shutdown.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::ObjectMeta;
use kube::runtime::watcher::Event;
use prometheus_client::registry::Registry;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use webhook::admission::Admission;
use webhook::cache::{AnnotationDefaults, LiveIdentities, ServiceAccountCache};
use webhook::container_credentials::ContainerCredentials;
use webhook::metrics::Metrics;
use webhook::mutate::{ContainerCredentialsSettings, MutateConfig};
use webhook::server::{self, AppState, ClientTimeouts, Listeners};

const ROLE: &str = "arn:aws:iam::111122223333:role/s3-reader";
const MAX_BODY: usize = 64 * 1024;

struct Running {
    webhook: SocketAddr,
    metrics: SocketAddr,
    ca: certs::CertificateAuthority,
    dir: tempfile::TempDir,
    cache: Arc<ServiceAccountCache>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    _watch: certs::FileWatch,
}

fn write_pair(dir: &Path, pair: &certs::IssuedCertificate) {
    std::fs::write(dir.join("tls.crt"), &pair.cert_pem).unwrap();
    std::fs::write(dir.join("tls.key"), &pair.key_pem).unwrap();
}

fn serving(ca: &certs::CertificateAuthority) -> certs::IssuedCertificate {
    certs::issue_serving_cert(ca, &["localhost"], &[IpAddr::V4(Ipv4Addr::LOCALHOST)]).unwrap()
}

fn mutate_config() -> MutateConfig {
    MutateConfig {
        annotation_prefix: "eks.amazonaws.com".into(),
        token_mount_path: "/var/run/secrets/eks.amazonaws.com/serviceaccount".into(),
        aws_default_region: String::new(),
        container_credentials: ContainerCredentialsSettings {
            audience: "pods.eks.amazonaws.com".into(),
            mount_path: "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount".into(),
            volume_name: "eks-pod-identity-token".into(),
            token_path: "eks-pod-identity-token".into(),
            full_uri: "http://169.254.170.23/v1/credentials".into(),
        },
        sidecar: None,
    }
}

async fn start() -> Running {
    start_with(ClientTimeouts::default()).await
}

async fn start_with(timeouts: ClientTimeouts) -> Running {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let ca = certs::generate_ca("test CA").unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_pair(dir.path(), &serving(&ca));
    let resolver =
        certs::ReloadingCertResolver::load(dir.path().join("tls.crt"), dir.path().join("tls.key"))
            .unwrap();
    // Hour-long poll: rotation must come from file events.
    let watch = certs::watch(resolver.clone(), Duration::from_secs(3600)).unwrap();
    let tls = certs::server_config(
        resolver.clone(),
        &certs::TlsPolicy::default(),
        &[b"h2", b"http/1.1"],
    )
    .unwrap();
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let cache = ServiceAccountCache::new(
        AnnotationDefaults {
            annotation_prefix: "eks.amazonaws.com".into(),
            sidecar_prefix: None,
            audience: "sts.amazonaws.com".into(),
            regional_sts: false,
            token_expiration: 86400,
            compose_role_arn: None,
        },
        Duration::ZERO,
        false,
        metrics.cache.clone(),
    );
    let credentials = ContainerCredentials::new();
    let identities = Arc::new(LiveIdentities {
        cache: cache.clone(),
        container_credentials: credentials.clone(),
    });
    let state = Arc::new(AppState {
        admission: Admission::new(mutate_config(), identities),
        metrics,
        registry,
        cache: cache.clone(),
        container_credentials: credentials,
        tls: Some(resolver),
        max_request_bytes: MAX_BODY,
        enable_debugging_handlers: true,
        timeouts,
    });
    let webhook_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let webhook = webhook_listener.local_addr().unwrap();
    let metrics_addr = metrics_listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server::serve(
        state,
        Listeners {
            webhook: webhook_listener,
            metrics: metrics_listener,
            tls: Arc::new(tls),
        },
        async move {
            let _ = stopped.await;
        },
    ));
    Running {
        webhook,
        metrics: metrics_addr,
        ca,
        dir,
        cache,
        stop: Some(stop),
        task,
        _watch: watch,
    }
}

impl Running {
    /// A client configuration that trusts only the test CA (no ALPN set).
    fn tls_trusting_ca(&self) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.ca.cert_pem().as_bytes()).unwrap())
            .unwrap();
        rustls::ClientConfig::builder_with_provider(Arc::new(certs::provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth()
    }

    fn client(&self) -> reqwest::Client {
        let mut tls = self.tls_trusting_ca();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .tls_info(true)
            .no_proxy()
            .build()
            .unwrap()
    }

    /// Puts the `default/default` ServiceAccount, annotated with [`ROLE`], in the cache.
    fn cache_role_annotated_service_account(&self) {
        self.cache
            .apply_service_account_event(&Event::Apply(service_account(&[(
                "eks.amazonaws.com/role-arn",
                ROLE,
            )])));
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.webhook.port())
    }

    fn metrics_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.metrics)
    }

    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("shut down within the grace period")
            .unwrap()
            .unwrap();
    }
}

fn review(uid: &str) -> String {
    serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": uid, "namespace": "default", "operation": "CREATE",
            "object": {"metadata": {"name": "app"},
                       "spec": {"serviceAccountName": "default", "containers": [{"name": "app", "image": "amazonlinux"}]}}}
    })
    .to_string()
}

fn service_account(annotations: &[(&str, &str)]) -> ServiceAccount {
    ServiceAccount {
        metadata: ObjectMeta {
            name: Some("default".into()),
            namespace: Some("default".into()),
            annotations: Some(
                annotations
                    .iter()
                    .map(|(k, v)| ((*k).into(), (*v).into()))
                    .collect(),
            ),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[tokio::test]
async fn mutate_over_https_with_generated_ca_http1_and_h2() {
    let running = start().await;
    running.cache_role_annotated_service_account();
    let client = running.client();
    let health = get(&client, running.url("/healthz")).await;
    assert_eq!(health.version(), reqwest::Version::HTTP_2, "ALPN h2");
    assert_eq!(health.text().await.unwrap(), "ok");

    let response = post(
        &client,
        running.url("/mutate?timeout=10s"),
        "application/json",
        review("u-1"),
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["response"]["uid"], "u-1");
    assert_eq!(body["response"]["allowed"], true);
    assert_eq!(body["response"]["patchType"], "JSONPatch");
    assert_eq!(body["apiVersion"], "admission.k8s.io/v1");

    // HTTP/1.1 only client works too.
    let http1 = reqwest::Client::builder()
        .tls_backend_preconfigured(running.tls_trusting_ca())
        .http1_only()
        .no_proxy()
        .build()
        .unwrap();
    let response = post(
        &http1,
        running.url("/mutate"),
        "application/json; charset=utf-8",
        review("u-2"),
    )
    .await;
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_eq!(response.status(), 200);

    // Wrong content type: upstream's 415.
    let response = post(
        &client,
        running.url("/mutate"),
        "application/xml",
        review("u-3"),
    )
    .await;
    assert_eq!(response.status(), 415);
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert_eq!(
        response.text().await.unwrap(),
        "Invalid Content-Type, expected `application/json`\n"
    );
    running.stop().await;
}

async fn get(client: &reqwest::Client, url: String) -> reqwest::Response {
    client.get(url).send().await.unwrap()
}

async fn get_text(client: &reqwest::Client, url: String) -> String {
    get(client, url).await.text().await.unwrap()
}

async fn post(
    client: &reqwest::Client,
    url: String,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    client
        .post(url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// A request body without Content-Length (chunked transfer).
fn streamed_body(
    chunks: impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + Sync + 'static,
) -> reqwest::Body {
    use futures::StreamExt;
    reqwest::Body::wrap(http_body_util::StreamBody::new(chunks.map(|chunk| {
        chunk.map(|bytes| http_body::Frame::data(bytes::Bytes::from(bytes)))
    })))
}

fn leaf_of(response: &reqwest::Response) -> Vec<u8> {
    response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .expect("peer certificate")
        .to_vec()
}

#[tokio::test]
async fn rotated_certificate_is_served_without_restart() {
    let running = start().await;
    let first = get(&running.client(), running.url("/healthz")).await;
    let first_leaf = leaf_of(&first);

    let rotated = serving(&running.ca);
    let expected = CertificateDer::from_pem_slice(rotated.cert_pem.as_bytes())
        .unwrap()
        .to_vec();
    assert_ne!(first_leaf, expected);
    write_pair(running.dir.path(), &rotated);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // A fresh client = a fresh handshake.
        let response = get(&running.client(), running.url("/healthz")).await;
        if leaf_of(&response) == expected {
            break;
        }
        assert!(Instant::now() < deadline, "rotated certificate not served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = get_text(&running.client(), running.metrics_url("/metrics")).await;
    assert_eq!(
        series(&metrics, "podcred_webhook_tls_certificate_reloads"),
        Some(1.0),
        "{metrics}"
    );
    running.stop().await;
}

#[tokio::test]
async fn readiness_reflects_the_initial_cache_sync() {
    let running = start().await;
    let client = running.client();
    let before = get(&client, running.url("/readyz")).await;
    assert_eq!(before.status(), 503);
    assert!(before.text().await.unwrap().contains("not synced"));
    // Liveness is independent of the cache.
    assert_eq!(get(&client, running.url("/healthz")).await.status(), 200);
    running
        .cache
        .apply_service_account_event(&Event::<ServiceAccount>::Init);
    running
        .cache
        .apply_service_account_event(&Event::InitApply(service_account(&[])));
    assert_eq!(
        get(&client, running.url("/readyz")).await.status(),
        503,
        "mid-list is not ready"
    );
    running
        .cache
        .apply_service_account_event(&Event::<ServiceAccount>::InitDone);
    let after = get(&client, running.url("/readyz")).await;
    assert_eq!(after.status(), 200);
    assert_eq!(after.text().await.unwrap(), "ok");
    running.stop().await;
}

#[tokio::test]
async fn metrics_text_has_upstream_series_after_traffic() {
    let running = start().await;
    running.cache_role_annotated_service_account();
    let client = running.client();
    for uid in ["a", "b"] {
        let response = post(
            &client,
            running.url("/mutate"),
            "application/json",
            review(uid),
        )
        .await;
        assert_eq!(response.status(), 200);
    }
    let response = get(&client, running.metrics_url("/metrics")).await;
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    for line in [
        "http_request_count{code=\"200\",path=\"/mutate\",verb=\"POST\"} 2",
        "http_request_latencies_count{path=\"/mutate\",verb=\"POST\"} 2",
        "http_request_duration_microseconds_count{path=\"/mutate\",verb=\"POST\"} 2",
        "pod_identity_webhook_pod_count{method=\"sts_web_identity\"} 2",
        "pod_identity_webhook_used 1",
        "pod_identity_webhook_missing_sa_count 0",
        "podcred_webhook_service_accounts_cached 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(text.contains("http_request_latencies_bucket{le=\"125000.0\""));
    running.stop().await;
}

#[tokio::test]
async fn oversized_bodies_get_413_declared_or_streamed() {
    let running = start().await;
    let client = running.client();
    let big = format!(
        r#"{{"request":{{"uid":"x","object":{{"metadata":{{"name":"{}"}}}}}}}}"#,
        "a".repeat(MAX_BODY)
    );
    let declared = post(
        &client,
        running.url("/mutate"),
        "application/json",
        big.clone(),
    )
    .await;
    assert_eq!(declared.status(), 413);
    let message = declared.text().await.unwrap();
    assert!(message.contains("--max-request-bytes=65536"), "{message}");

    // No Content-Length (chunked): cut off while streaming.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = big
        .as_bytes()
        .chunks(4096)
        .map(|c| Ok(c.to_vec()))
        .collect();
    let streamed = post(
        &client,
        running.url("/mutate"),
        "application/json",
        streamed_body(futures::stream::iter(chunks)),
    )
    .await;
    assert_eq!(streamed.status(), 413);

    // Just under the cap is processed normally.
    let small = review("ok");
    let fine = post(&client, running.url("/mutate"), "application/json", small).await;
    assert_eq!(fine.status(), 200);
    running.stop().await;
}

#[tokio::test]
async fn debug_routes_and_unknown_paths() {
    let running = start().await;
    running.cache_role_annotated_service_account();
    let client = running.client();
    let deny = get(&client, running.url("/debug/alpha/deny")).await;
    assert_eq!(deny.status(), 200);
    assert_eq!(
        deny.text().await.unwrap(),
        r#"{"response":{"uid":"","allowed":false,"status":{"metadata":{},"message":"Test deny message"}}}"#
    );
    let error = get(&client, running.url("/debug/alpha/500")).await;
    assert_eq!(error.status(), 500);
    assert_eq!(error.text().await.unwrap(), "test error\n");
    let missing = get(&client, running.url("/nope")).await;
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.text().await.unwrap(), "404 page not found\n");

    let dump: serde_json::Value = get(&client, running.metrics_url("/debug/alpha/cache"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(dump["default/default"]["RoleARN"], ROLE);
    let clear = get(&client, running.metrics_url("/debug/alpha/cache/clear")).await;
    assert_eq!(clear.status(), 200);
    let dump = get_text(&client, running.metrics_url("/debug/alpha/cache")).await;
    assert_eq!(dump, "{}");
    let metrics = get_text(&client, running.metrics_url("/metrics")).await;
    assert_eq!(
        series(
            &metrics,
            "http_request_count{code=\"500\",path=\"/debug/alpha/500\",verb=\"GET\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    running.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_lets_in_flight_requests_finish() {
    let running = start().await;
    let client = running.client();
    // A slow upload keeps a request in flight while shutdown starts.
    let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Vec<u8>, std::io::Error>>();
    let request = tokio::spawn(
        client
            .post(running.url("/mutate"))
            .header("content-type", "application/json")
            .body(streamed_body(rx))
            .send(),
    );
    let body = review("slow");
    let (head, tail) = body.split_at(10);
    tx.unbounded_send(Ok(head.as_bytes().to_vec())).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stop = running.stop.as_ref().is_some();
    assert!(stop);
    let webhook_addr = running.webhook;
    let Running {
        stop: Some(stop_tx),
        task,
        ..
    } = running
    else {
        unreachable!()
    };
    stop_tx.send(()).unwrap();
    // Shutdown has begun once the listener refuses new connections.
    let deadline = Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(webhook_addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting connections");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tx.unbounded_send(Ok(tail.as_bytes().to_vec())).unwrap();
    drop(tx);
    let response = request.await.unwrap().unwrap();
    assert_eq!(response.status(), 200, "in-flight request completed");
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// The value of exactly one series (name and every label), e.g. `x_total{a="b"}`, in a Prometheus text page.
fn series(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            (key == series).then(|| value.parse().ok())?
        })
}

/// 60 invented HTTP methods make one `verb="other"` series, not 60 new ones.
#[tokio::test]
async fn invented_http_methods_share_one_metric_series() {
    let running = start().await;
    let client = running.client();
    for i in 0..60 {
        let method = reqwest::Method::from_bytes(format!("INVENTED{i}").as_bytes()).unwrap();
        let response = client
            .request(method, running.url("/mutate"))
            .send()
            .await
            .unwrap();
        assert!(response.status().as_u16() >= 200);
    }
    let metrics = get_text(&client, running.metrics_url("/metrics")).await;
    assert!(!metrics.contains("INVENTED"), "{metrics}");
    let other: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("http_request_count{") && l.contains("verb=\"other\""))
        .collect();
    assert_eq!(other.len(), 1, "{metrics}");
    let (series_key, _) = other[0].rsplit_once(' ').unwrap();
    assert_eq!(series(&metrics, series_key), Some(60.0), "{metrics}");
    running.stop().await;
}

/// A client that declares a too-large body and keeps sending it still reads the 413 (the server drains the
/// rest instead of resetting the connection under it).
#[tokio::test]
async fn a_client_still_sending_a_too_large_body_reads_the_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let running = start().await;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(running.tls_trusting_ca()));
    let body_len = 4 << 20;
    for declared in [true, false] {
        let tcp = tokio::net::TcpStream::connect(running.webhook)
            .await
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        let framing = if declared {
            format!("Content-Length: {body_len}\r\n")
        } else {
            "Transfer-Encoding: chunked\r\n".to_owned()
        };
        let head = format!(
            "POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n{framing}\r\n"
        );
        tls.write_all(head.as_bytes()).await.unwrap();
        let chunk = vec![b' '; 64 * 1024];
        let mut sent = 0;
        while sent < body_len {
            let write = if declared {
                tls.write_all(&chunk).await
            } else {
                let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
                framed.extend_from_slice(&chunk);
                framed.extend_from_slice(b"\r\n");
                tls.write_all(&framed).await
            };
            if let Err(error) = write {
                panic!(
                    "declared={declared}: the server stopped reading after {sent} bytes: {error}"
                );
            }
            sent += chunk.len();
        }
        if !declared {
            let _ = tls.write_all(b"0\r\n\r\n").await;
        }
        let _ = tls.flush().await;
        let mut reply = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut reply)).await;
        let reply = String::from_utf8_lossy(&reply);
        assert!(
            reply.starts_with("HTTP/1.1 413"),
            "declared={declared}: {read:?}, reply {reply:?}"
        );
    }
    running.stop().await;
}

/// Short client timeouts, so the tests below see them fire.
fn short_timeouts() -> ClientTimeouts {
    ClientTimeouts {
        header_read: Duration::from_millis(300),
        body_read: Duration::from_millis(300),
        tls_handshake: Duration::from_millis(300),
    }
}

/// Reads until the server closes the connection; fails if it is still open after 10 s (30× the timeout).
async fn read_until_closed(stream: &mut (impl tokio::io::AsyncRead + Unpin), what: &str) -> String {
    use tokio::io::AsyncReadExt;
    let mut reply = Vec::new();
    match tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut reply)).await {
        Ok(_) => String::from_utf8_lossy(&reply).into_owned(),
        Err(_) => panic!("{what}: the server kept the connection open; read so far {reply:?}"),
    }
}

#[tokio::test]
async fn a_client_that_stalls_in_the_tls_handshake_is_disconnected() {
    let running = start_with(short_timeouts()).await;
    // TCP connected, no ClientHello ever sent.
    let mut tcp = tokio::net::TcpStream::connect(running.webhook)
        .await
        .unwrap();
    let reply = read_until_closed(&mut tcp, "stalled handshake").await;
    assert!(reply.is_empty(), "{reply:?}");
    running.stop().await;
}

#[tokio::test]
async fn a_client_that_stalls_in_its_headers_is_disconnected() {
    use tokio::io::AsyncWriteExt;
    let running = start_with(short_timeouts()).await;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(running.tls_trusting_ca()));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    // Both the first request of a connection and a later one on a kept-alive connection.
    for earlier_requests in [0, 1] {
        let tcp = tokio::net::TcpStream::connect(running.webhook)
            .await
            .unwrap();
        let mut tls = connector.connect(name.clone(), tcp).await.unwrap();
        for _ in 0..earlier_requests {
            tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .await
                .unwrap();
            let mut head = [0u8; 12];
            tokio::io::AsyncReadExt::read_exact(&mut tls, &mut head)
                .await
                .unwrap();
            assert_eq!(&head, b"HTTP/1.1 200");
            // Let the rest of that reply arrive before stalling.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tls.write_all(b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Ty")
            .await
            .unwrap();
        let reply = read_until_closed(&mut tls, "stalled headers").await;
        assert!(
            !reply.contains("HTTP/1.1 200 OK\r\ncontent-type: application/json"),
            "earlier_requests={earlier_requests}: a half-sent request was answered: {reply:?}"
        );
    }
    running.stop().await;
}

#[tokio::test]
async fn a_client_that_stalls_in_its_body_gets_408_and_the_connection_closes() {
    use tokio::io::AsyncWriteExt;
    let running = start_with(short_timeouts()).await;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(running.tls_trusting_ca()));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tcp = tokio::net::TcpStream::connect(running.webhook)
        .await
        .unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let body = review("stalled-body");
    let head = format!(
        "POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(&body.as_bytes()[..body.len() / 2])
        .await
        .unwrap();
    tls.flush().await.unwrap();
    let reply = read_until_closed(&mut tls, "stalled body").await;
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply:?}");
    assert!(
        reply.to_ascii_lowercase().contains("connection: close"),
        "{reply:?}"
    );
    let metrics = get_text(&running.client(), running.metrics_url("/metrics")).await;
    assert!(
        metrics
            .lines()
            .any(|line| line == r#"podcred_webhook_admissions_total{outcome="body_timeout"} 1"#),
        "no body_timeout admission counted:\n{metrics}"
    );
    running.stop().await;
}
