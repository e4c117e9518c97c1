//! A real Kubernetes control plane for end-to-end tests: etcd + kube-apiserver on loopback, plus helpers to
//! run admission webhooks (ours or upstream's) against it.
//!
//! Contract:
//! - Binaries come from `tests/peers/install-kube.sh` (`$PODCRED_CACHE/bin/{etcd,kube-apiserver,helm}`) and
//!   `tests/peers/install-upstream-webhook.sh`; a missing one is a loud panic naming the installer.
//! - Each [`ControlPlane`] owns a temp dir with fresh certificates (one CA for serving, client and webhook
//!   certificates), a fresh service-account signing key (so TokenRequest works), and its own etcd data.
//! - Everything binds 127.0.0.1 and is killed on drop; the API server can be restarted on the same port while
//!   etcd keeps the data (for "restarted mid-watch" tests). A [`Reaper`] keyed on the temp dir also kills
//!   them (and whatever else mentions the dir, e.g. webhook processes) when the test process dies without
//!   dropping the plane (SIGKILL).
//! - [`ControlPlaneOptions`] add API server flags and certificate addresses (the real node in `node.rs`).
//! - There is no kubelet, scheduler or controller-manager: pods stay Pending (their stored spec is what the
//!   tests check) and no `default` ServiceAccount is created for new namespaces — tests create their own.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use k8s_openapi::ByteString;
use kube::api::{DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};

use crate::reaper::{Reaper, Scope};
use crate::{cache_dir, free_port, isolated_command, require_peer, ChildGuard};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// Path of a binary installed by one of the `tests/peers/install-*.sh` scripts.
pub fn peer_bin(name: &str, installer: &str) -> PathBuf {
    require_peer(cache_dir().join("bin").join(name), installer)
}

/// Installs the aws-lc-rs rustls provider once (several providers are compiled into the test binaries).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Certificate and key files for a TLS server, plus the CA that clients must trust.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca_pem: String,
}

/// Additions to the default control plane.
#[derive(Clone, Debug, Default)]
pub struct ControlPlaneOptions {
    /// Appended to the API server's flags (list flags such as `--authorization-mode` accumulate).
    pub extra_apiserver_args: Vec<String>,
    /// More IP addresses in the API server's certificate (e.g. a node bridge address pods connect to).
    pub extra_ips: Vec<IpAddr>,
}

/// etcd + kube-apiserver for one test.
pub struct ControlPlane {
    dir: tempfile::TempDir,
    options: ControlPlaneOptions,
    ca: certs::CertificateAuthority,
    etcd: ChildGuard,
    etcd_url: String,
    apiserver: Option<ChildGuard>,
    api_port: u16,
    admin_kubeconfig: PathBuf,
    apiserver_starts: u32,
    /// Last field: dropped after the processes are stopped, it then removes the temp dir.
    _reaper: Reaper,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("dir", &self.dir.path())
            .field("api_port", &self.api_port)
            .field("etcd_url", &self.etcd_url)
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver and waits until the API server reports ready.
    pub async fn start() -> Self {
        Self::start_with(ControlPlaneOptions::default()).await
    }

    /// Like [`ControlPlane::start`], with additions.
    pub async fn start_with(options: ControlPlaneOptions) -> Self {
        install_crypto_provider();
        let etcd_bin = peer_bin("etcd", "install-kube.sh");
        peer_bin("kube-apiserver", "install-kube.sh");
        let dir = tempfile::Builder::new()
            .prefix("podcred-kube-")
            .tempdir()
            .expect("create temp dir");
        let reaper = Reaper::watch(&Scope {
            run_dir: dir.path().to_path_buf(),
            keep_run_dir: std::env::var_os("PODCRED_KEEP_TMP").is_some(),
            ..Scope::default()
        });
        let ca = certs::generate_ca("podcred-test-ca").expect("generate CA");
        write(dir.path().join("ca.crt"), ca.cert_pem());

        let mut ips = vec![LOCALHOST, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))];
        ips.extend(options.extra_ips.iter().copied());
        let serving = certs::issue_serving_cert(
            &ca,
            &["localhost", "kubernetes", "kubernetes.default.svc"],
            &ips,
        )
        .expect("issue API server certificate");
        write(dir.path().join("apiserver.crt"), &serving.cert_pem);
        write(dir.path().join("apiserver.key"), &serving.key_pem);
        // Fresh per run: signs (and verifies) the service-account tokens TokenRequest issues.
        let sa_key = rcgen::KeyPair::generate().expect("generate service-account signing key");
        write(dir.path().join("sa.key"), &sa_key.serialize_pem());
        write(dir.path().join("sa.pub"), &sa_key.public_key_pem());

        let (etcd_client_port, etcd_peer_port) = (free_port(), free_port());
        let etcd_url = format!("http://127.0.0.1:{etcd_client_port}");
        let peer_url = format!("http://127.0.0.1:{etcd_peer_port}");
        let etcd = ChildGuard::spawn(
            "etcd",
            isolated_command(&etcd_bin)
                .args([
                    "--name=podcred-test",
                    &format!("--data-dir={}", dir.path().join("etcd").display()),
                    &format!("--listen-client-urls={etcd_url}"),
                    &format!("--advertise-client-urls={etcd_url}"),
                    &format!("--listen-peer-urls={peer_url}"),
                    &format!("--initial-advertise-peer-urls={peer_url}"),
                    &format!("--initial-cluster=podcred-test={peer_url}"),
                    // Test data is throwaway: skipping fsync keeps etcd fast on a shared disk.
                    "--unsafe-no-fsync",
                    "--log-level=warn",
                ])
                .stdout(log_file(dir.path(), "etcd.log"))
                .stderr(log_file(dir.path(), "etcd.log")),
        );

        let admin = certs::issue_client_cert(&ca, "podcred-test-admin", &["system:masters"])
            .expect("issue admin client certificate");
        let api_port = free_port();
        let admin_kubeconfig = dir.path().join("admin.kubeconfig");
        write(
            &admin_kubeconfig,
            &kubeconfig_yaml(
                &format!("https://127.0.0.1:{api_port}"),
                ca.cert_pem(),
                &admin,
            ),
        );

        let mut plane = Self {
            dir,
            options,
            ca,
            etcd,
            etcd_url,
            apiserver: None,
            api_port,
            admin_kubeconfig,
            apiserver_starts: 0,
            _reaper: reaper,
        };
        wait_for_etcd(&mut plane).await;
        plane.start_apiserver().await;
        plane
    }

    /// `https://127.0.0.1:<port>`.
    pub fn api_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.api_port)
    }

    /// A kubeconfig for a `system:masters` user (bypasses RBAC).
    pub fn admin_kubeconfig(&self) -> &Path {
        &self.admin_kubeconfig
    }

    /// The API server's port on 127.0.0.1.
    pub fn api_port(&self) -> u16 {
        self.api_port
    }

    /// The per-run temp dir (logs, certificates, kubeconfigs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA that signed every certificate of this control plane.
    pub fn ca_pem(&self) -> &str {
        self.ca.cert_pem()
    }

    /// Writes a kubeconfig for `user` in `groups` (client certificate), for RBAC-scoped clients.
    pub fn user_kubeconfig(&self, user: &str, groups: &[&str]) -> PathBuf {
        let cert = certs::issue_client_cert(&self.ca, user, groups).expect("issue client cert");
        let path = self
            .dir
            .path()
            .join(format!("{}.kubeconfig", user.replace([':', '/'], "_")));
        write(
            &path,
            &kubeconfig_yaml(&self.api_url(), self.ca_pem(), &cert),
        );
        path
    }

    /// Serving certificate for a webhook on 127.0.0.1, signed by this control plane's CA.
    pub fn webhook_tls(&self, name: &str) -> TlsFiles {
        let issued = certs::issue_serving_cert(&self.ca, &["localhost"], &[LOCALHOST])
            .expect("issue webhook serving certificate");
        let cert = self.dir.path().join(format!("{name}.crt"));
        let key = self.dir.path().join(format!("{name}.key"));
        write(&cert, &issued.cert_pem);
        write(&key, &issued.key_pem);
        TlsFiles {
            cert,
            key,
            ca_pem: self.ca.cert_pem().to_owned(),
        }
    }

    /// A kube-rs client authenticated as the admin user.
    pub async fn client(&self) -> Client {
        client_from_kubeconfig(&self.admin_kubeconfig).await
    }

    /// Starts (or re-starts, on the same port) kube-apiserver and waits for `/readyz`.
    pub async fn start_apiserver(&mut self) {
        assert!(self.apiserver.is_none(), "kube-apiserver already running");
        let bin = peer_bin("kube-apiserver", "install-kube.sh");
        let d = self.dir.path();
        self.apiserver_starts += 1;
        let log = format!("kube-apiserver.{}.log", self.apiserver_starts);
        let args: Vec<String> = vec![
            format!("--etcd-servers={}", self.etcd_url),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={}", self.api_port),
            format!("--tls-cert-file={}", d.join("apiserver.crt").display()),
            format!(
                "--tls-private-key-file={}",
                d.join("apiserver.key").display()
            ),
            format!("--client-ca-file={}", d.join("ca.crt").display()),
            format!("--service-account-key-file={}", d.join("sa.pub").display()),
            format!(
                "--service-account-signing-key-file={}",
                d.join("sa.key").display()
            ),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            "--authorization-mode=RBAC".into(),
            // Added to the default plugin set (which already has them, with ServiceAccount: pods get the
            // kube-api-access volume as on a real cluster and must name an existing ServiceAccount).
            "--enable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook".into(),
            // No controller-manager runs, so nothing would reconcile the kubernetes Service endpoints.
            "--endpoint-reconciler-type=none".into(),
            "--allow-privileged=true".into(),
            "--profiling=false".into(),
            "--v=1".into(),
        ];
        let args: Vec<String> = args
            .into_iter()
            .chain(self.options.extra_apiserver_args.iter().cloned())
            .collect();
        let mut cmd = isolated_command(bin);
        cmd.args(&args)
            .stdout(log_file(d, &log))
            .stderr(log_file(d, &log))
            .stdin(Stdio::null());
        self.apiserver = Some(ChildGuard::spawn("kube-apiserver", &mut cmd));
        self.wait_ready(&log).await;
    }

    /// Stops kube-apiserver (SIGTERM, then SIGKILL after 5 s: open watches can hold a graceful shutdown
    /// for a long time); etcd and its data stay.
    pub fn stop_apiserver(&mut self) {
        if let Some(mut apiserver) = self.apiserver.take() {
            apiserver.terminate(Duration::from_secs(5));
        }
    }

    pub async fn restart_apiserver(&mut self) {
        self.stop_apiserver();
        self.start_apiserver().await;
    }

    /// The current API server log (for assertion messages).
    pub fn apiserver_log(&self) -> String {
        let log = self
            .dir
            .path()
            .join(format!("kube-apiserver.{}.log", self.apiserver_starts));
        std::fs::read_to_string(log).unwrap_or_default()
    }

    async fn wait_ready(&mut self, log: &str) {
        let http = reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(self.ca.cert_pem().as_bytes()).expect("CA pem"),
            )
            .timeout(Duration::from_secs(2))
            .build()
            .expect("http client");
        let deadline = Instant::now() + READY_TIMEOUT;
        let url = format!("{}/readyz", self.api_url());
        loop {
            if let Some(apiserver) = self.apiserver.as_mut() {
                if let Ok(Some(status)) = apiserver.child_mut().try_wait() {
                    panic!(
                        "kube-apiserver exited with {status}; log tail:\n{}",
                        tail(&self.dir.path().join(log), 40)
                    );
                }
            }
            // /readyz is readable anonymously (system:public-info-viewer).
            if let Ok(response) = http.get(&url).send().await {
                if response.status().is_success() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "kube-apiserver not ready within {READY_TIMEOUT:?}; log tail:\n{}",
                tail(&self.dir.path().join(log), 40)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // Throwaway data: kill (ChildGuard's drop) instead of waiting for graceful shutdowns.
        drop(self.apiserver.take());
        let _ = self.etcd.child_mut().kill();
        let _ = self.etcd.child_mut().wait();
        if std::env::var_os("PODCRED_KEEP_TMP").is_some() {
            let kept =
                std::mem::replace(&mut self.dir, tempfile::tempdir().expect("create temp dir"));
            eprintln!("kept control-plane dir {}", kept.keep().display());
        }
    }
}

async fn wait_for_etcd(plane: &mut ControlPlane) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = format!("{}/health", plane.etcd_url);
    loop {
        plane.etcd.assert_running();
        if let Ok(response) = http.get(&url).send().await {
            if response.status().is_success() {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "etcd not healthy within 30 s; log tail:\n{}",
            tail(&plane.dir.path().join("etcd.log"), 40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A kube-rs client from a kubeconfig file.
pub async fn client_from_kubeconfig(path: &Path) -> Client {
    install_crypto_provider();
    let kubeconfig = Kubeconfig::read_from(path).expect("read kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig → client config");
    Client::try_from(config).expect("kube client")
}

fn kubeconfig_yaml(server: &str, ca_pem: &str, client: &certs::IssuedCertificate) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut yaml = String::new();
    let _ = write!(
        yaml,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {server}\n    \
         certificate-authority-data: {}\nusers:\n- name: test\n  user:\n    client-certificate-data: {}\n    \
         client-key-data: {}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n\
         current-context: test\n",
        b64(ca_pem),
        b64(&client.cert_pem),
        b64(&client.key_pem),
    );
    yaml
}

pub(crate) fn write(path: impl AsRef<Path>, contents: &str) {
    let path = path.as_ref();
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

pub(crate) fn log_file(dir: &Path, name: &str) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name))
        .expect("open log file")
}

/// The last `lines` lines of a log file.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Which webhook binary a [`WebhookProcess`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookImpl {
    /// `target/debug/webhook` (or `PODCRED_WEBHOOK_BIN`).
    Podcred,
    /// `amazon-eks-pod-identity-webhook` built by `tests/peers/install-upstream-webhook.sh`.
    Upstream,
}

impl WebhookImpl {
    pub fn binary(self) -> PathBuf {
        match self {
            WebhookImpl::Podcred => std::env::var_os("PODCRED_WEBHOOK_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| crate::workspace_bin("webhook")),
            WebhookImpl::Upstream => peer_bin(
                "amazon-eks-pod-identity-webhook",
                "install-upstream-webhook.sh",
            ),
        }
    }
}

/// A webhook server (ours or upstream's) run out of cluster against a [`ControlPlane`], with upstream's
/// flags: `--in-cluster=false --port --metrics-port --tls-cert --tls-key --kubeconfig` plus `extra_args`.
pub struct WebhookProcess {
    pub which: WebhookImpl,
    pub port: u16,
    pub metrics_port: u16,
    pub tls: TlsFiles,
    binary: PathBuf,
    env: Vec<(String, String)>,
    args: Vec<String>,
    log: PathBuf,
    process: Option<ChildGuard>,
}

impl WebhookProcess {
    pub async fn start(
        plane: &ControlPlane,
        which: WebhookImpl,
        name: &str,
        extra_args: &[&str],
    ) -> Self {
        Self::start_with_kubeconfig(plane, plane.admin_kubeconfig(), which, name, extra_args).await
    }

    /// Like [`WebhookProcess::start`], running `binary` with `env` added to its environment (a stand-in
    /// for `which`, e.g. the differential test's deliberately broken `forgetful_webhook`).
    pub async fn start_binary(
        plane: &ControlPlane,
        which: WebhookImpl,
        binary: PathBuf,
        env: &[(&str, &str)],
        name: &str,
        extra_args: &[&str],
    ) -> Self {
        let env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Self::launch(
            plane,
            plane.admin_kubeconfig(),
            which,
            (binary, env),
            name,
            extra_args,
        )
        .await
    }

    /// Like [`WebhookProcess::start`], authenticating with `kubeconfig` (e.g. an RBAC-scoped user).
    pub async fn start_with_kubeconfig(
        plane: &ControlPlane,
        kubeconfig: &Path,
        which: WebhookImpl,
        name: &str,
        extra_args: &[&str],
    ) -> Self {
        Self::launch(
            plane,
            kubeconfig,
            which,
            (which.binary(), Vec::new()),
            name,
            extra_args,
        )
        .await
    }

    async fn launch(
        plane: &ControlPlane,
        kubeconfig: &Path,
        which: WebhookImpl,
        (binary, env): (PathBuf, Vec<(String, String)>),
        name: &str,
        extra_args: &[&str],
    ) -> Self {
        let tls = plane.webhook_tls(name);
        let (port, metrics_port) = (free_port(), free_port());
        let mut args: Vec<String> = vec![
            "--in-cluster=false".into(),
            format!("--port={port}"),
            format!("--metrics-port={metrics_port}"),
            format!("--tls-cert={}", tls.cert.display()),
            format!("--tls-key={}", tls.key.display()),
            format!("--kubeconfig={}", kubeconfig.display()),
            "--namespace=podcred-system".into(),
            "--logtostderr".into(),
        ];
        args.extend(extra_args.iter().map(|a| (*a).to_owned()));
        let mut process = Self {
            which,
            port,
            metrics_port,
            tls,
            binary,
            env,
            args,
            log: plane.dir().join(format!("{name}.log")),
            process: None,
        };
        process.spawn().await;
        process
    }

    async fn spawn(&mut self) {
        let mut cmd = isolated_command(&self.binary);
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log_file(self.log.parent().unwrap(), "webhooks-stdout.log"))
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.log)
                    .expect("open webhook log"),
            );
        let mut child = ChildGuard::spawn(&format!("{:?} webhook", self.which), &mut cmd);
        let addr = SocketAddr::new(LOCALHOST, self.port);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = child.child_mut().try_wait() {
                panic!(
                    "{:?} webhook exited with {status}; log:\n{}",
                    self.which,
                    tail(&self.log, 40)
                );
            }
            assert!(
                Instant::now() < deadline,
                "{:?} webhook did not listen on {addr}; log:\n{}",
                self.which,
                tail(&self.log, 40)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.process = Some(child);
    }

    /// `https://127.0.0.1:<port>/mutate`.
    pub fn mutate_url(&self) -> String {
        format!("https://127.0.0.1:{}/mutate", self.port)
    }

    pub fn metrics_url(&self) -> String {
        format!("http://127.0.0.1:{}/metrics", self.metrics_port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ChildGuard::id)
    }

    /// SIGTERM and wait (graceful shutdown), then start again with the same flags, port and certificate.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.terminate(Duration::from_secs(15));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// An HTTPS client that trusts this webhook's CA.
    pub fn https_client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(self.tls.ca_pem.as_bytes()).expect("CA pem"),
            )
            .timeout(Duration::from_secs(15))
            .build()
            .expect("https client")
    }
}

/// How a webhook is registered with the API server.
#[derive(Clone, Debug)]
pub struct Registration {
    pub name: String,
    pub url: String,
    pub ca_pem: String,
    pub failure_policy: &'static str,
    pub reinvocation_policy: &'static str,
    pub review_versions: Vec<String>,
    pub timeout_seconds: i32,
}

impl Registration {
    /// Registration as the chart does it: v1 and v1beta1 reviews, `reinvocationPolicy: IfNeeded`,
    /// `failurePolicy: Fail` (so a broken webhook fails the test instead of admitting unmutated pods).
    pub fn for_webhook(name: &str, webhook: &WebhookProcess) -> Self {
        let review_versions = match webhook.which {
            WebhookImpl::Podcred => vec!["v1".into(), "v1beta1".into()],
            // v0.6.17 does not echo apiVersion/kind, which the API server requires for v1 reviews
            // (upstream issue #225; fixed after the tag) — v1beta1 is what EKS itself sends.
            WebhookImpl::Upstream => vec!["v1beta1".into()],
        };
        Self {
            name: name.into(),
            url: webhook.mutate_url(),
            ca_pem: webhook.tls.ca_pem.clone(),
            failure_policy: "Fail",
            reinvocation_policy: "IfNeeded",
            review_versions,
            timeout_seconds: 10,
        }
    }

    /// Creates (or replaces) the MutatingWebhookConfiguration: CREATE pods, upstream's skip-label selector.
    pub async fn apply(&self, client: &Client) {
        let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
        let _ = api.delete(&self.name, &DeleteParams::default()).await;
        let config = MutatingWebhookConfiguration {
            metadata: kube::api::ObjectMeta {
                name: Some(self.name.clone()),
                ..Default::default()
            },
            webhooks: Some(vec![MutatingWebhook {
                name: format!("{}.podcred.dev", self.name),
                admission_review_versions: self.review_versions.clone(),
                client_config: WebhookClientConfig {
                    url: Some(self.url.clone()),
                    ca_bundle: Some(ByteString(self.ca_pem.clone().into_bytes())),
                    service: None,
                },
                failure_policy: Some(self.failure_policy.into()),
                reinvocation_policy: Some(self.reinvocation_policy.into()),
                side_effects: "None".into(),
                timeout_seconds: Some(self.timeout_seconds),
                match_policy: Some("Equivalent".into()),
                object_selector: Some(LabelSelector {
                    match_expressions: Some(vec![LabelSelectorRequirement {
                        key: "eks.amazonaws.com/skip-pod-identity-webhook".into(),
                        operator: "DoesNotExist".into(),
                        values: None,
                    }]),
                    match_labels: None,
                }),
                rules: Some(vec![RuleWithOperations {
                    api_groups: Some(vec!["".into()]),
                    api_versions: Some(vec!["v1".into()]),
                    operations: Some(vec!["CREATE".into()]),
                    resources: Some(vec!["pods".into()]),
                    scope: Some("*".into()),
                }]),
                namespace_selector: None,
                match_conditions: None,
            }]),
        };
        api.create(&PostParams::default(), &config)
            .await
            .expect("create MutatingWebhookConfiguration");
    }
}

/// Runs `helm template` on the chart with `--set` values; returns the rendered YAML.
pub fn helm_template(chart: &Path, release: &str, namespace: &str, sets: &[&str]) -> String {
    let helm = peer_bin("helm", "install-kube.sh");
    let mut cmd = Command::new(helm);
    cmd.args(["template", release])
        .arg(chart)
        .args(["--namespace", namespace]);
    for set in sets {
        cmd.args(["--set", set]);
    }
    let output = cmd.output().expect("run helm template");
    assert!(
        output.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("helm output is UTF-8")
}

/// The Gateway API standard-channel CRD files, sorted (tests/peers/install-gateway-api-crds.sh installs
/// them from the `sigs.k8s.io/gateway-api` module zip).
pub fn gateway_api_crds() -> Vec<PathBuf> {
    let dir = require_peer(
        cache_dir().join("gateway-api/v1.6.3"),
        "install-gateway-api-crds.sh",
    );
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read the Gateway API CRD dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files
            .iter()
            .any(|p| p.ends_with("gateway.networking.k8s.io_httproutes.yaml")),
        "{files:?}"
    );
    files
}

/// The non-empty documents of a multi-document YAML text, as JSON values.
pub fn yaml_values(yaml: &str) -> Vec<serde_json::Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML"))
        .filter(|v: &serde_json::Value| !v.is_null())
        .collect()
}
