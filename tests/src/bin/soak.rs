//! The fault soak: `make soak SOAK_SECONDS=N` (or `soak N`; default 300, at least 180).
//!
//! Runs, on loopback, the seed's whole path and the webhook's, under steady modest load while faults are
//! injected on a schedule, then prints a report (also written to `target/soak/report.txt`, with every
//! process log under `target/soak/logs/`) and exits non-zero when a target is missed.
//!
//! What runs (all real peers; the only stand-ins are fault injectors in `integration::soak::faults`):
//! - moto (STS) behind the STS fault proxy ← credproxy (`--duration-seconds=120 --refresh-fraction=0.1`, so
//!   it refreshes every 10.8–12 s, the *refresh period* R) ← the gateway (`--config` file) → the flapping
//!   proxy → serverless-offline running the seed's `echo`. The web-identity token credproxy exchanges is a
//!   real service-account token (TokenRequest) from the soak's API server.
//! - etcd + kube-apiserver with our webhook registered (`failurePolicy: Fail`) at a Service-like balancer
//!   (`Balancer`: round robin, next replica when one refuses) over two webhook replicas.
//!
//! Load: a `POST /echo` to the gateway every 200 ms; a credentials GET to credproxy every 250 ms (fresh
//! connection, as an SDK's occasional fetch); a pod created (and deleted) through the API server every 500 ms
//! in a namespace whose ServiceAccount has a role; a direct AdmissionReview POST to the balancer every 250 ms.
//! The gateway's configuration file is rewritten every second, cycling two valid and two invalid versions.
//!
//! Faults (fractions of N): STS throttled (400 `Throttling` / 503 alternately) from 0.10 for max(15 s, 0.07 N);
//! credproxy SIGKILLed at 0.20 and restarted 3 s later; STS down (connections reset) from 0.27 for 3 R = 36 s;
//! Lambda down 5 s at 0.15 and 0.85 and flapping (1 s down, 1 s up, three times) at 0.40; webhook replica B
//! SIGKILLed at 0.45, restarted at 0.55; the API server stopped and restarted at 0.62 (same etcd); replica A
//! stopped with SIGTERM at 0.72, restarted at 0.80.
//!
//! Excused failures (counted and reported by reason, never silently dropped):
//! - gateway `502 LambdaUnreachable` for a request whose [start, end] overlaps a Lambda-down window;
//! - gateway `503 NoCredentials` / `502 CredentialsRejected` when the credentials the gateway last fetched
//!   (its `credentials fetched` log line before the request started) had ≤ 10 s + 1 s left (its expiry
//!   margin): nothing valid held;
//! - credproxy requests overlapping [SIGKILL, restarted instance ready]; or failing when the instance had
//!   served no credentials with more than 15 s + 1 s left (its expiry margin) before the request started;
//! - pod creations overlapping [API server stopped, ready again + 2 s];
//! - admissions (either kind) in flight at the instant a replica was SIGKILLed (start < kill ≤ end): a request
//!   already sent to a process that dies cannot be shielded. Everything sent after the kill must succeed.
//!
//! Targets (exit 1 when missed): 0 failed credential requests while the responder held valid credentials (and
//! no served credential with less than its margin left); 0 failed admissions outside the excused instants;
//! 0 unexcused gateway failures; STS calls ≤ the bound printed with the report (derivation there); RSS and
//! open fds flat per `integration::soak::sampler`; no secret in any log; and every fault actually exercised.
//! The same, with the reasons and the measured figures: `tests/README.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use integration::gateway::Gateway;
use integration::kube::{ControlPlane, Registration, WebhookImpl, WebhookProcess};
use integration::moto::Moto;
use integration::serverless::ServerlessOffline;
use integration::soak::faults::{Balancer, FlappingProxy, StsFaultProxy, StsMode};
use integration::soak::sampler::{self, Sampler};
use integration::soak::scan::{self, Secrets};
use integration::soak::{parse_rfc3339, strip_ansi, unix_now};
use integration::{free_port, isolated_command, workspace_bin, workspace_root, ChildGuard};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};
use tokio::task::{block_in_place, JoinHandle};

const DEFAULT_SECONDS: u64 = 300;
const MIN_SECONDS: u64 = 180;
const MAX_SECONDS: u64 = 3600;
/// credproxy's `--duration-seconds` and `--refresh-fraction`: refresh period R = 0.1 × 120 s × (1 − 0.1 U).
const CREDENTIAL_SECONDS: f64 = 120.0;
const REFRESH_FRACTION: f64 = 0.1;
const REFRESH_PERIOD: f64 = CREDENTIAL_SECONDS * REFRESH_FRACTION;
/// The shortest refresh period (jitter 0.1 shortens it by up to 10 %).
const MIN_REFRESH_PERIOD: f64 = REFRESH_PERIOD * 0.9;
/// credproxy's backoff: first ceiling 200 ms, doubling, capped at 30 s.
const BACKOFF_BASE: f64 = 0.2;
const BACKOFF_MAX: f64 = 30.0;
/// Credentials are not served (credproxy) or used (gateway) with less life than this.
const CREDPROXY_EXPIRY_MARGIN: f64 = 15.0;
const GATEWAY_EXPIRY_MARGIN: f64 = 10.0;
/// Tolerance of the credential oracle (clock reads in different processes, whole-second `Expiration`).
const ORACLE_SLACK: f64 = 1.0;
/// After the API server is ready again, clients may still hold a connection to the old one.
const APISERVER_GRACE: f64 = 2.0;
const NAMESPACE: &str = "soak";
const SERVICE_ACCOUNT: &str = "app";
const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/soak";

/// One request of a load stream.
#[derive(Clone, Debug)]
struct Call {
    start: f64,
    end: f64,
    ok: bool,
    /// Grouping key of a failure (status + code, or the transport error kind).
    reason: String,
    /// credproxy only: the instance asked, and the `Expiration` served.
    instance: u32,
    expiration: Option<f64>,
}

type Calls = Arc<Mutex<Vec<Call>>>;

fn push(calls: &Calls, call: Call) {
    calls.lock().unwrap_or_else(|e| e.into_inner()).push(call);
}

fn take(calls: &Calls) -> Vec<Call> {
    calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// What happened when (the schedule as executed).
#[derive(Default)]
struct Timeline {
    log: Vec<(f64, String)>,
    lambda_down: Vec<(f64, f64)>,
    credproxy_down: Vec<(f64, f64)>,
    apiserver_down: Vec<(f64, f64)>,
    webhook_sigkills: Vec<f64>,
    sts_fault_windows: Vec<(f64, f64)>,
}

impl Timeline {
    fn note(&mut self, what: impl Into<String>) -> f64 {
        let now = unix_now();
        let what = what.into();
        eprintln!("soak: {what}");
        self.log.push((now, what));
        now
    }
}

fn overlaps(call: &Call, (from, to): (f64, f64)) -> bool {
    call.start <= to && call.end >= from
}

/// credproxy as the webhook's sidecar contract runs it, restartable on the same ports and token files.
struct Credproxy {
    port: u16,
    metrics_port: u16,
    dir: PathBuf,
    sts_endpoint: String,
    instance: Arc<AtomicU32>,
    guard: Option<ChildGuard>,
}

impl Credproxy {
    fn auth_token_file(&self) -> PathBuf {
        self.dir.join("auth-token")
    }

    fn web_identity_token_file(&self) -> PathBuf {
        self.dir.join("web-identity-token")
    }

    fn spawn(&mut self) -> u32 {
        let instance = self.instance.fetch_add(1, Ordering::SeqCst) + 1;
        let log = self.dir.join(format!("credproxy-{instance}.log"));
        let log = std::fs::File::create(log).expect("credproxy log");
        let mut cmd = isolated_command(workspace_bin("credproxy"));
        cmd.env("AWS_ROLE_ARN", ROLE_ARN)
            .env(
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                self.web_identity_token_file(),
            )
            .env("AWS_REGION", integration::moto::REGION)
            .env("AWS_ENDPOINT_URL_STS", &self.sts_endpoint)
            .arg(format!("--listen=127.0.0.1:{}", self.port))
            .arg(format!("--metrics-listen=127.0.0.1:{}", self.metrics_port))
            .arg(format!(
                "--auth-token-file={}",
                self.auth_token_file().display()
            ))
            .arg(format!("--duration-seconds={CREDENTIAL_SECONDS}"))
            .arg(format!("--refresh-fraction={REFRESH_FRACTION}"))
            // debug: more of what credproxy and the SDK do is logged, and scanned for secrets.
            .arg("--log-level=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        self.guard = Some(ChildGuard::spawn("credproxy", &mut cmd));
        instance
    }

    fn pid(&self) -> u32 {
        self.guard.as_ref().map(ChildGuard::id).unwrap_or(0)
    }

    async fn wait_ready(&mut self) -> f64 {
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let deadline = unix_now() + 60.0;
        loop {
            if let Some(guard) = self.guard.as_mut() {
                guard.assert_running();
            }
            let (status, _) = block_in_place(|| integration::gateway::http_get(addr, "/readyz"));
            if status == 200 {
                return unix_now();
            }
            assert!(unix_now() < deadline, "credproxy not ready within 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no drain, the cache is gone with the process.
    fn kill(&mut self) {
        if let Some(mut guard) = self.guard.take() {
            let _ = guard.child_mut().kill();
            let _ = guard.child_mut().wait();
        }
    }
}

fn main() -> ExitCode {
    let seconds = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("SOAK_SECONDS").ok())
        .map(|s| {
            s.parse::<u64>()
                .unwrap_or_else(|_| panic!("SOAK_SECONDS must be a number of seconds, got {s:?}"))
        })
        .unwrap_or(DEFAULT_SECONDS);
    if !(MIN_SECONDS..=MAX_SECONDS).contains(&seconds) {
        eprintln!(
            "soak: SOAK_SECONDS={seconds} is outside {MIN_SECONDS}..={MAX_SECONDS} (the schedule needs {MIN_SECONDS} s: \
             three refresh periods of STS outage plus the other faults, one at a time)"
        );
        return ExitCode::from(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let passed = runtime.block_on(run(seconds));
    runtime.shutdown_timeout(Duration::from_secs(2));
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

const CONFIG_VARIANTS: [&str; 4] = [
    "valid: the seed's routes",
    "valid: the seed's routes plus /echo-v2",
    "invalid: YAML syntax error",
    "invalid: route to a Backend that does not exist",
];

fn config_variant(seed: &str, variant: usize) -> String {
    match variant {
        0 => seed.to_string(),
        1 => format!(
            "{seed}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: lambda-v2\n  \
             namespace: kgateway-system\nspec:\n  parentRefs:\n  - name: http\n    namespace: kgateway-system\n  rules:\n  \
             - matches:\n    - path:\n        type: PathPrefix\n        value: /echo-v2\n    backendRefs:\n    - name: lambda\n      \
             namespace: kgateway-system\n      group: gateway.kgateway.dev\n      kind: Backend\n"
        ),
        2 => format!("{seed}\n---\nkind: HTTPRoute\n  metadata: [unclosed\n"),
        _ => seed.replace(
            "backendRefs:\n    - name: lambda\n",
            "backendRefs:\n    - name: no-such-backend\n",
        ),
    }
}

/// Replaces the file the way a ConfigMap volume update does (write elsewhere, rename over).
fn replace_file(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).expect("write config");
    std::fs::rename(&tmp, path).expect("rename config");
}

async fn create_soak_namespace(client: &Client) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: ObjectMeta {
                    name: Some(NAMESPACE.into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .expect("create namespace");
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), NAMESPACE);
    accounts
        .create(
            &PostParams::default(),
            &ServiceAccount {
                metadata: ObjectMeta {
                    name: Some(SERVICE_ACCOUNT.into()),
                    annotations: Some(
                        [(
                            "eks.amazonaws.com/role-arn".to_string(),
                            ROLE_ARN.to_string(),
                        )]
                        .into(),
                    ),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .expect("create service account");
}

/// A service-account token for `sts.amazonaws.com`, as the kubelet projects it.
async fn service_account_token(client: &Client) -> String {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), NAMESPACE);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec!["sts.amazonaws.com".into()],
            expiration_seconds: Some(2 * 3600),
            bound_object_ref: None,
        },
        ..Default::default()
    };
    accounts
        .create_token_request(SERVICE_ACCOUNT, &PostParams::default(), &request)
        .await
        .expect("TokenRequest")
        .status
        .expect("token status")
        .token
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "serviceAccountName": SERVICE_ACCOUNT,
            "containers": [{"name": "app", "image": "public.ecr.aws/docker/library/busybox:1.36"}],
        }
    }))
    .expect("pod")
}

fn mutated(pod: &Pod) -> bool {
    pod.spec.as_ref().is_some_and(|spec| {
        spec.containers.iter().any(|c| {
            c.env
                .as_ref()
                .is_some_and(|env| env.iter().any(|e| e.name == "AWS_ROLE_ARN"))
        })
    })
}

/// A kube client error as a grouping key (status and reason; whether a webhook call failed).
fn kube_reason(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => {
            let webhook = if status.message.contains("failed calling webhook") {
                " (failed calling webhook)"
            } else {
                ""
            };
            format!("API {} {}{webhook}", status.code, status.reason)
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) => {
            "API server unreachable (connection error)".into()
        }
        other => format!("client error: {}", short(&other.to_string())),
    }
}

fn short(text: &str) -> String {
    text.chars().take(120).collect()
}

fn transport_reason(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "transport: timeout".into()
    } else if error.is_connect() {
        "transport: connection refused/reset".into()
    } else {
        "transport: connection closed".into()
    }
}

struct Load {
    stop: Arc<AtomicBool>,
    loops: Vec<JoinHandle<Vec<JoinHandle<()>>>>,
}

impl Load {
    /// Runs `request(i)` every `period`, each in its own task, until stopped.
    fn every<F, Fut>(&mut self, period: Duration, request: F)
    where
        F: Fn(u64) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let stop = self.stop.clone();
        self.loops.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut tasks = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                tick.tick().await;
                tasks.push(tokio::spawn(request(i)));
                i += 1;
                tasks.retain(|t: &JoinHandle<()>| !t.is_finished());
            }
            tasks
        }));
    }

    async fn finish(self) {
        self.stop.store(true, Ordering::SeqCst);
        for handle in self.loops {
            if let Ok(tasks) = handle.await {
                for task in tasks {
                    let _ = task.await;
                }
            }
        }
    }
}

async fn sleep_until(at: f64) {
    let wait = at - unix_now();
    if wait > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
    }
}

async fn run(seconds: u64) -> bool {
    let out_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
        .join("soak");
    let _ = std::fs::remove_dir_all(&out_dir);
    std::fs::create_dir_all(out_dir.join("logs")).expect("create target/soak");
    let work = tempfile::Builder::new()
        .prefix("podcred-soak-")
        .tempdir()
        .expect("temp dir");
    let sampler = Sampler::default();
    let mut timeline = Timeline::default();
    timeline.note(format!("starting peers for a {seconds} s soak"));

    // The Kubernetes side first: the web-identity token is a real service-account token.
    let mut plane = ControlPlane::start().await;
    let client = plane.client().await;
    create_soak_namespace(&client).await;
    let sa_token = service_account_token(&client).await;
    let mut webhook_a = WebhookProcess::start(&plane, WebhookImpl::Podcred, "webhook-a", &[]).await;
    let mut webhook_b = WebhookProcess::start(&plane, WebhookImpl::Podcred, "webhook-b", &[]).await;
    sampler.track("webhook-a#1", webhook_a.pid().expect("pid"));
    sampler.track("webhook-b#1", webhook_b.pid().expect("pid"));
    let balancer = Balancer::start(vec![
        ([127, 0, 0, 1], webhook_a.port).into(),
        ([127, 0, 0, 1], webhook_b.port).into(),
    ])
    .await;
    let mut registration = Registration::for_webhook("podcred-soak", &webhook_a);
    registration.url = format!("https://127.0.0.1:{}/mutate", balancer.addr.port());
    registration.apply(&client).await;

    // The seed's side.
    let moto = block_in_place(Moto::start_plain);
    let sts = StsFaultProxy::start(moto.addr()).await;
    let sls = block_in_place(ServerlessOffline::start);
    let sls_addr: SocketAddr = ([127, 0, 0, 1], sls.lambda_port).into();
    let lambda = FlappingProxy::start(sls_addr).await;
    let instance = Arc::new(AtomicU32::new(0));
    let mut credproxy = Credproxy {
        port: free_port(),
        metrics_port: free_port(),
        dir: work.path().to_path_buf(),
        sts_endpoint: sts.endpoint(),
        instance: instance.clone(),
        guard: None,
    };
    std::fs::write(credproxy.web_identity_token_file(), &sa_token).expect("token file");
    let first_credproxy_start = unix_now();
    let n = credproxy.spawn();
    credproxy.wait_ready().await;
    sampler.track(&format!("credproxy#{n}"), credproxy.pid());
    let config_dir = work.path().join("config");
    std::fs::create_dir_all(&config_dir).expect("config dir");
    let config = config_dir.join("routes.yaml");
    let seed_routes =
        std::fs::read_to_string(workspace_root().join("deploy/demo/seed-routes.yaml"))
            .expect("seed routes");
    std::fs::write(&config, &seed_routes).expect("config");
    let gateway_env = vec![
        (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            format!("http://127.0.0.1:{}/v1/credentials", credproxy.port),
        ),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            credproxy.auth_token_file().display().to_string(),
        ),
        ("AWS_REGION", integration::moto::REGION.to_string()),
        ("AWS_ENDPOINT_URL_LAMBDA", lambda.endpoint()),
    ];
    let gateway = block_in_place(|| Gateway::start(&config, &gateway_env, &[]));
    block_in_place(|| gateway.wait_ready(Duration::from_secs(30)));
    sampler.track("gateway", gateway.child_id());
    track_peers(&sampler, &plane, &moto, &sls, "");
    let auth_token = std::fs::read_to_string(credproxy.auth_token_file()).expect("auth token");

    // The webhook mutates before the load starts (its ServiceAccount cache has the role).
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let deadline = unix_now() + 30.0;
    loop {
        let created = pods
            .create(
                &PostParams {
                    dry_run: true,
                    ..Default::default()
                },
                &pod("soak-probe"),
            )
            .await;
        if created.as_ref().is_ok_and(mutated) {
            break;
        }
        assert!(
            unix_now() < deadline,
            "the webhook does not mutate pods: {created:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Load.
    let sampling = sampler.spawn(Duration::from_secs(2));
    let (gateway_calls, credential_calls, pod_calls, review_calls): (Calls, Calls, Calls, Calls) =
        Default::default();
    let mut load = Load {
        stop: Arc::new(AtomicBool::new(false)),
        loops: Vec::new(),
    };
    {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        let (url, calls) = (gateway.url("/echo"), gateway_calls.clone());
        load.every(Duration::from_millis(200), move |i| {
            let (http, url, calls) = (http.clone(), url.clone(), calls.clone());
            async move {
                let start = unix_now();
                let answer = http
                    .post(&url)
                    .body(format!("{{\"soak\":{i}}}"))
                    .send()
                    .await;
                let (ok, reason) = match answer {
                    Ok(answer) => {
                        let status = answer.status().as_u16();
                        let body: Value = answer.json().await.unwrap_or(Value::Null);
                        let code = body["error"].as_str().unwrap_or("").to_string();
                        (status == 200, format!("HTTP {status} {code}"))
                    }
                    Err(e) => (false, transport_reason(&e)),
                };
                push(
                    &calls,
                    Call {
                        start,
                        end: unix_now(),
                        ok,
                        reason,
                        instance: 0,
                        expiration: None,
                    },
                );
            }
        });
    }
    {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(0)
            .build()
            .expect("client");
        let url = format!("http://127.0.0.1:{}/v1/credentials", credproxy.port);
        let (calls, instance, token) = (
            credential_calls.clone(),
            instance.clone(),
            auth_token.clone(),
        );
        load.every(Duration::from_millis(250), move |_| {
            let (http, url, calls, token) =
                (http.clone(), url.clone(), calls.clone(), token.clone());
            let asked = instance.load(Ordering::SeqCst);
            async move {
                let start = unix_now();
                let answer = http.get(&url).header("Authorization", token).send().await;
                let (ok, reason, expiration) = match answer {
                    Ok(answer) => {
                        let status = answer.status().as_u16();
                        let body: Value = answer.json().await.unwrap_or(Value::Null);
                        let expiration = body["Expiration"].as_str().and_then(parse_rfc3339);
                        let code = body["Code"].as_str().unwrap_or("").to_string();
                        (
                            status == 200 && expiration.is_some(),
                            format!("HTTP {status} {code}"),
                            expiration,
                        )
                    }
                    Err(e) => (false, transport_reason(&e), None),
                };
                push(
                    &calls,
                    Call {
                        start,
                        end: unix_now(),
                        ok,
                        reason,
                        instance: asked,
                        expiration,
                    },
                );
            }
        });
    }
    {
        let (pods, calls) = (pods.clone(), pod_calls.clone());
        load.every(Duration::from_millis(500), move |i| {
            let (pods, calls) = (pods.clone(), calls.clone());
            async move {
                let start = unix_now();
                let name = format!("soak-{i}");
                let created = pods.create(&PostParams::default(), &pod(&name)).await;
                let end = unix_now();
                let (ok, reason) = match &created {
                    Ok(stored) if mutated(stored) => (true, String::new()),
                    Ok(_) => (false, "created but not mutated".into()),
                    Err(e) => (false, kube_reason(e)),
                };
                push(
                    &calls,
                    Call {
                        start,
                        end,
                        ok,
                        reason,
                        instance: 0,
                        expiration: None,
                    },
                );
                if created.is_ok() {
                    // Keep the namespace small; a failed delete is not an admission.
                    let _ = pods
                        .delete(
                            &name,
                            &DeleteParams {
                                grace_period_seconds: Some(0),
                                ..Default::default()
                            },
                        )
                        .await;
                }
            }
        });
    }
    {
        // A fresh connection per review, so each one is balanced (the API server's kept-alive
        // connections are exercised by the pod stream).
        let http = reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(plane.ca_pem().as_bytes()).expect("CA"),
            )
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(0)
            .build()
            .expect("client");
        let url = format!("https://127.0.0.1:{}/mutate", balancer.addr.port());
        let template: Value = serde_json::from_str(
            &std::fs::read_to_string(
                workspace_root().join("tests/bench/webhook-admission-review.json"),
            )
            .expect("review template"),
        )
        .expect("review JSON");
        let calls = review_calls.clone();
        load.every(Duration::from_millis(250), move |i| {
            let (http, url, calls) = (http.clone(), url.clone(), calls.clone());
            let mut review = template.clone();
            let uid = format!("00000000-0000-4000-8000-{i:012}");
            review["request"]["uid"] = json!(uid);
            async move {
                let start = unix_now();
                let answer = http.post(&url).json(&review).send().await;
                let (ok, reason) = match answer {
                    Ok(answer) => {
                        let status = answer.status().as_u16();
                        let body: Value = answer.json().await.unwrap_or(Value::Null);
                        let ok = status == 200
                            && body["response"]["uid"] == json!(uid)
                            && body["response"]["allowed"] == json!(true);
                        (ok, format!("HTTP {status}"))
                    }
                    Err(e) => (false, transport_reason(&e)),
                };
                push(
                    &calls,
                    Call {
                        start,
                        end: unix_now(),
                        ok,
                        reason,
                        instance: 0,
                        expiration: None,
                    },
                );
            }
        });
    }
    let config_writes = Arc::new(Mutex::new([0u64; 4]));
    {
        let (config, seed, writes) = (config.clone(), seed_routes.clone(), config_writes.clone());
        load.every(Duration::from_secs(1), move |i| {
            let variant = (i % 4) as usize;
            replace_file(&config, &config_variant(&seed, variant));
            writes.lock().unwrap_or_else(|e| e.into_inner())[variant] += 1;
            async {}
        });
    }

    // The fault schedule.
    let t0 = timeline.note("load started");
    let n = seconds as f64;
    let at = |fraction: f64| t0 + fraction * n;
    let throttle_for = (0.07 * n).max(15.0);
    let sts_down_for = 3.0 * REFRESH_PERIOD;
    let mut lambda_windows = vec![(at(0.15), 5.0)];
    lambda_windows.extend((0..3).map(|k| (at(0.40) + 2.0 * k as f64, 1.0)));
    lambda_windows.push((at(0.85), 5.0));
    let lambda_flapper = {
        let lambda_up = Arc::new(Mutex::new(Vec::new()));
        let windows = lambda_windows.clone();
        let record = lambda_up.clone();
        let proxy = Arc::new(lambda);
        let flapping = proxy.clone();
        let task = tokio::spawn(async move {
            for (from, length) in windows {
                sleep_until(from).await;
                flapping.set_up(false);
                let down = unix_now();
                tokio::time::sleep(Duration::from_secs_f64(length)).await;
                flapping.set_up(true);
                record
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((down, unix_now()));
            }
        });
        (task, lambda_up, proxy)
    };

    sleep_until(at(0.10)).await;
    let from = timeline.note(format!(
        "STS throttling (400 Throttling / 503) for {throttle_for:.0} s"
    ));
    sts.set(StsMode::Throttle);
    sleep_until(from + throttle_for).await;
    sts.set(StsMode::Pass);
    let to = timeline.note("STS throttling over");
    timeline.sts_fault_windows.push((from, to));

    sleep_until(at(0.20)).await;
    let killed = timeline.note("credproxy SIGKILLed");
    credproxy.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let n_cp = credproxy.spawn();
    timeline.note(format!("credproxy restarted (instance {n_cp})"));
    let ready = credproxy.wait_ready().await;
    sampler.track(&format!("credproxy#{n_cp}"), credproxy.pid());
    timeline.note(format!("credproxy instance {n_cp} ready"));
    timeline.credproxy_down.push((killed, ready));

    sleep_until(at(0.27)).await;
    let from = timeline.note(format!(
        "STS down (connections reset) for 3 refresh periods = {sts_down_for:.0} s"
    ));
    sts.set(StsMode::Down);
    sleep_until(from + sts_down_for).await;
    sts.set(StsMode::Pass);
    let to = timeline.note("STS back");
    timeline.sts_fault_windows.push((from, to));

    sleep_until(at(0.45)).await;
    let kill_at = timeline.note("webhook replica B SIGKILLed");
    if let Some(pid) = webhook_b.pid() {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    timeline.webhook_sigkills.push(kill_at);
    sleep_until(at(0.55)).await;
    webhook_b.restart().await;
    sampler.track("webhook-b#2", webhook_b.pid().expect("pid"));
    timeline.note("webhook replica B restarted");

    sleep_until(at(0.62)).await;
    let stopped = timeline.note("API server stopping");
    block_in_place(|| plane.stop_apiserver());
    timeline.note("API server stopped; starting it again (same etcd)");
    plane.start_apiserver().await;
    let ready = timeline.note("API server ready");
    track_peers(&sampler, &plane, &moto, &sls, "kube-apiserver");
    timeline
        .apiserver_down
        .push((stopped, ready + APISERVER_GRACE));

    sleep_until(at(0.72)).await;
    timeline.note("webhook replica A: SIGTERM (graceful stop)");
    block_in_place(|| webhook_a.stop());
    timeline.note("webhook replica A stopped");
    sleep_until(at(0.80)).await;
    webhook_a.restart().await;
    sampler.track("webhook-a#2", webhook_a.pid().expect("pid"));
    timeline.note("webhook replica A restarted");

    sleep_until(at(1.0)).await;
    timeline.note("stopping the load");
    load.finish().await;
    let (flapper, lambda_up, lambda) = lambda_flapper;
    let _ = flapper.await;
    timeline.lambda_down = lambda_up.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for (down, up) in &timeline.lambda_down {
        timeline.log.push((*down, "Lambda endpoint down".into()));
        timeline.log.push((*up, "Lambda endpoint up".into()));
    }
    timeline.log.sort_by(|a, b| a.0.total_cmp(&b.0));
    sampling.abort();
    let end = unix_now();

    // Collect.
    let gateway_metrics =
        block_in_place(|| integration::gateway::http_get(gateway.admin, "/metrics").1);
    let mut logs: Vec<(String, String)> = vec![
        ("gateway.log".into(), gateway.log()),
        ("moto.log".into(), moto.log()),
        ("serverless-offline.log".into(), sls.log()),
    ];
    for dir in [work.path(), plane.dir()] {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                logs.push((
                    path.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read_to_string(&path).unwrap_or_default(),
                ));
            }
        }
    }
    for (name, text) in &logs {
        let _ = std::fs::write(out_dir.join("logs").join(name), text);
    }
    let mut secrets = Secrets::default();
    secrets.add("web-identity (service-account) token", &sa_token);
    secrets.add("credproxy auth token (Authorization value)", &auth_token);
    let issued = sts
        .counts
        .issued
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    for credentials in &issued {
        secrets.add("secret access key", &credentials.secret_access_key);
        secrets.add("session token", &credentials.session_token);
    }
    for authorization in lambda
        .counts
        .authorizations
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
    {
        if let Some((_, signature)) = authorization.split_once("Signature=") {
            secrets.add("Lambda request signature (Authorization value)", signature);
        }
    }
    let findings = scan::scan(&secrets, &logs);

    let inputs = ReportInputs {
        seconds,
        start: t0,
        end,
        first_credproxy_start,
        credproxy_instances: instance.load(Ordering::SeqCst),
        timeline: &timeline,
        gateway: take(&gateway_calls),
        credentials: take(&credential_calls),
        pods: take(&pod_calls),
        reviews: take(&review_calls),
        gateway_fetches: gateway_fetches(&gateway.log()),
        sts: &sts,
        lambda: &lambda,
        balancer: &balancer,
        config_writes: *config_writes.lock().unwrap_or_else(|e| e.into_inner()),
        gateway_metrics: &gateway_metrics,
        instances: sampler.instances(),
        secrets: &secrets,
        findings: &findings,
        out_dir: &out_dir,
    };
    let (text, passed) = report(&inputs);
    println!("{text}");
    std::fs::write(out_dir.join("report.txt"), &text).expect("write report");
    eprintln!(
        "soak: report written to {} (logs in {})",
        out_dir.join("report.txt").display(),
        out_dir.join("logs").display()
    );
    credproxy.kill();
    drop(webhook_a);
    drop(webhook_b);
    drop(plane);
    passed
}

/// Registers the test peers' processes (found by command line) for sampling; `only` narrows to one name.
fn track_peers(
    sampler: &Sampler,
    plane: &ControlPlane,
    moto: &Moto,
    sls: &ServerlessOffline,
    only: &str,
) {
    let etcd_data = format!("--data-dir={}", plane.dir().join("etcd").display());
    let secure_port = format!("--secure-port={}", plane.api_port());
    let moto_port = moto.port.to_string();
    let lambda_port = sls.lambda_port.to_string();
    let peers: [(&str, Vec<&str>); 4] = [
        ("kube-apiserver", vec!["kube-apiserver", &secure_port]),
        ("etcd", vec![&etcd_data]),
        ("moto", vec!["moto", "-p", &moto_port]),
        (
            "sls-offline",
            vec!["node", "offline", "--lambdaPort", &lambda_port],
        ),
    ];
    for (name, parts) in peers {
        if only.is_empty() || only == name {
            for pid in sampler::pids_with_args(&parts) {
                sampler.track_peer(name, pid);
            }
        }
    }
}

/// (log time, expiration) of every `credentials fetched` line of the gateway.
fn gateway_fetches(log: &str) -> Vec<(f64, f64)> {
    strip_ansi(log)
        .lines()
        .filter(|line| line.contains("credentials fetched"))
        .filter_map(|line| {
            let at = parse_rfc3339(line.split_whitespace().next()?)?;
            let expires = line.split("expires=").nth(1)?;
            let expires = expires.trim_start_matches('"');
            let expires = &expires[..expires.find(['"', ' '])?];
            Some((at, parse_rfc3339(expires)?))
        })
        .collect()
}

struct ReportInputs<'a> {
    seconds: u64,
    start: f64,
    end: f64,
    first_credproxy_start: f64,
    credproxy_instances: u32,
    timeline: &'a Timeline,
    gateway: Vec<Call>,
    credentials: Vec<Call>,
    pods: Vec<Call>,
    reviews: Vec<Call>,
    gateway_fetches: Vec<(f64, f64)>,
    sts: &'a StsFaultProxy,
    lambda: &'a FlappingProxy,
    balancer: &'a Balancer,
    config_writes: [u64; 4],
    gateway_metrics: &'a str,
    instances: Vec<sampler::Instance>,
    secrets: &'a Secrets,
    findings: &'a [scan::Finding],
    out_dir: &'a Path,
}

/// How one failed call is judged.
enum Verdict {
    Excused(String),
    Miss(String),
}

/// Counts per stream: sent, ok, failures grouped by (verdict, reason).
struct Tally {
    sent: usize,
    ok: usize,
    groups: BTreeMap<(bool, String), usize>,
}

impl Tally {
    fn of(calls: &[Call], judge: impl Fn(&Call) -> Verdict) -> Tally {
        let mut groups = BTreeMap::new();
        for call in calls.iter().filter(|c| !c.ok) {
            let (miss, why) = match judge(call) {
                Verdict::Excused(why) => (false, format!("{} — excused: {why}", call.reason)),
                Verdict::Miss(why) => (true, format!("{} — MISS: {why}", call.reason)),
            };
            *groups.entry((miss, why)).or_default() += 1;
        }
        Tally {
            sent: calls.len(),
            ok: calls.iter().filter(|c| c.ok).count(),
            groups,
        }
    }

    fn misses(&self) -> usize {
        self.groups
            .iter()
            .filter(|((miss, _), _)| *miss)
            .map(|(_, n)| n)
            .sum()
    }

    fn render(&self, name: &str, out: &mut String) {
        let _ = writeln!(
            out,
            "{name:<34} sent {:>6}  ok {:>6}  failed {:>5}  (target misses {})",
            self.sent,
            self.ok,
            self.sent - self.ok,
            self.misses()
        );
        for ((_, why), count) in &self.groups {
            let _ = writeln!(out, "    {count:>5} × {why}");
        }
    }
}

fn metric_lines<'a>(metrics: &'a str, name: &str) -> Vec<&'a str> {
    metrics.lines().filter(|l| l.starts_with(name)).collect()
}

fn metric_value(metrics: &str, name: &str, label: &str) -> f64 {
    metric_lines(metrics, name)
        .iter()
        .filter(|l| l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn report(r: &ReportInputs<'_>) -> (String, bool) {
    let t = r.timeline;
    let mut out = String::new();
    let mut missed: Vec<String> = Vec::new();
    let rel = |at: f64| at - r.start;
    let _ = writeln!(
        out,
        "podcred fault soak — {} s of load ({:.0} s measured), {} on {} ({} CPUs)",
        r.seconds,
        r.end - r.start,
        chrono_like(r.start),
        hostname(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let _ = writeln!(
        out,
        "\nSchedule as executed (seconds after the load started):"
    );
    for (at, what) in &t.log {
        let _ = writeln!(out, "  {:>7.1}  {what}", rel(*at));
    }

    // Gateway requests.
    let fetches = &r.gateway_fetches;
    let gateway = Tally::of(&r.gateway, |call| {
        if call.reason.contains("LambdaUnreachable")
            && t.lambda_down.iter().any(|w| overlaps(call, *w))
        {
            return Verdict::Excused("Lambda endpoint down (fault window)".into());
        }
        if call.reason.contains("NoCredentials") || call.reason.contains("CredentialsRejected") {
            let held = fetches
                .iter()
                .filter(|(at, _)| *at <= call.start)
                .map(|(_, expires)| *expires)
                .next_back();
            return match held {
                Some(expires) if expires - call.start > GATEWAY_EXPIRY_MARGIN + ORACLE_SLACK => {
                    Verdict::Miss(format!(
                        "the gateway held credentials with more than {} s left",
                        GATEWAY_EXPIRY_MARGIN + ORACLE_SLACK
                    ))
                }
                _ => Verdict::Excused("the gateway held no valid credentials".into()),
            };
        }
        Verdict::Miss("not explained by any fault window".into())
    });

    // credproxy requests.
    let served = &r.credentials;
    let credentials = Tally::of(served, |call| {
        if t.credproxy_down.iter().any(|w| overlaps(call, *w)) {
            return Verdict::Excused("credproxy killed (until the new instance is ready)".into());
        }
        let held = served
            .iter()
            .filter(|c| c.ok && c.instance == call.instance && c.end <= call.start)
            .filter_map(|c| c.expiration)
            .fold(f64::NEG_INFINITY, f64::max);
        if held - call.start > CREDPROXY_EXPIRY_MARGIN + ORACLE_SLACK {
            Verdict::Miss(format!(
                "credproxy had already served credentials with more than {} s left",
                CREDPROXY_EXPIRY_MARGIN + ORACLE_SLACK
            ))
        } else {
            Verdict::Excused("credproxy held no valid credentials".into())
        }
    });
    let short_lived = served
        .iter()
        .filter(|c| {
            c.ok && c
                .expiration
                .is_some_and(|e| e - c.end < CREDPROXY_EXPIRY_MARGIN - ORACLE_SLACK)
        })
        .count();

    // Admissions.
    let in_flight_at_kill = |call: &Call| {
        t.webhook_sigkills
            .iter()
            .any(|k| call.start < *k && *k <= call.end)
    };
    let pods = Tally::of(&r.pods, |call| {
        if t.apiserver_down.iter().any(|w| overlaps(call, *w)) {
            Verdict::Excused("API server restarting".into())
        } else if in_flight_at_kill(call) {
            Verdict::Excused("in flight at a replica when it was SIGKILLed".into())
        } else {
            Verdict::Miss("a webhook replica was up".into())
        }
    });
    let reviews = Tally::of(&r.reviews, |call| {
        if in_flight_at_kill(call) {
            Verdict::Excused("in flight at a replica when it was SIGKILLed".into())
        } else {
            Verdict::Miss("a webhook replica was up".into())
        }
    });

    let _ = writeln!(out, "\nRequests (failures grouped by reason; excused = inside a fault window the client cannot be shielded from):");
    gateway.render("gateway POST /echo (→ Lambda)", &mut out);
    credentials.render("credproxy GET /v1/credentials", &mut out);
    pods.render("pods created via the API server", &mut out);
    reviews.render("AdmissionReviews to the balancer", &mut out);
    let _ = writeln!(
        out,
        "  credproxy responses with less than {CREDPROXY_EXPIRY_MARGIN} s − {ORACLE_SLACK} s of life: {short_lived}"
    );
    let gateway_credential_misses: usize = gateway
        .groups
        .iter()
        .filter(|((miss, why), _)| {
            *miss && (why.contains("NoCredentials") || why.contains("CredentialsRejected"))
        })
        .map(|(_, n)| n)
        .sum();
    let credential_misses = credentials.misses() + gateway_credential_misses + short_lived;
    if credential_misses > 0 {
        missed.push(format!(
            "{credential_misses} failed credential requests while valid credentials were held"
        ));
    }
    let other_gateway = gateway.misses() - gateway_credential_misses;
    if other_gateway > 0 {
        missed.push(format!(
            "{other_gateway} gateway failures outside every fault window"
        ));
    }
    if pods.misses() + reviews.misses() > 0 {
        missed.push(format!(
            "{} failed admissions while a replica was up",
            pods.misses() + reviews.misses()
        ));
    }

    // STS calls.
    let c = &r.sts.counts;
    let total = c.total();
    let windows: Vec<f64> = t.sts_fault_windows.iter().map(|(a, b)| b - a).collect();
    let lifetime = r.end - r.first_credproxy_start;
    let success_bound =
        (lifetime / MIN_REFRESH_PERIOD).ceil() as u64 + u64::from(r.credproxy_instances);
    let ramp = (BACKOFF_MAX / BACKOFF_BASE).log2().ceil() as u64 + 1;
    let retry_bound: u64 = windows
        .iter()
        .map(|w| 2 * (ramp + (w / (BACKOFF_MAX / 2.0)).ceil() as u64) + 2)
        .sum();
    let bound = success_bound + retry_bound;
    let _ = writeln!(
        out,
        "\nSTS calls counted at the fault proxy: {total} (≤ bound {bound})"
    );
    let _ = writeln!(
        out,
        "  forwarded to moto {} (credentials issued {}), answered 400 Throttling {}, 503 {}, connections reset while down {}, requests cut while down {}",
        c.forwarded.load(Ordering::SeqCst),
        c.issued.lock().map(|i| i.len()).unwrap_or(0),
        c.throttled.load(Ordering::SeqCst),
        c.unavailable.load(Ordering::SeqCst),
        c.refused_connections.load(Ordering::SeqCst),
        c.cut_requests.load(Ordering::SeqCst),
    );
    let _ = writeln!(
        out,
        "  bound = ⌈{lifetime:.0} s of credproxy / {MIN_REFRESH_PERIOD:.1} s shortest refresh period⌉ + {} cold starts = {success_bound} \
         successes, + per STS fault window 2 × ({ramp} backoff steps until the {BACKOFF_MAX:.0} s cap + ⌈W / {:.0} s mean capped wait⌉) + 2 \
         = {retry_bound} retries over windows of {:?} s. Requests never cause STS calls (single flight): {} credential and \
         {} gateway requests were made.",
        r.credproxy_instances,
        BACKOFF_MAX / 2.0,
        windows.iter().map(|w| w.round() as u64).collect::<Vec<_>>(),
        r.credentials.len(),
        r.gateway.len()
    );
    if total > bound {
        missed.push(format!("{total} STS calls > bound {bound}"));
    }

    // Faults really exercised.
    let l = &r.lambda.counts;
    let b = &r.balancer.counts;
    let reload_ok = metric_value(
        r.gateway_metrics,
        "gateway_config_reloads_total",
        "result=\"ok\"",
    );
    let reload_error = metric_value(
        r.gateway_metrics,
        "gateway_config_reloads_total",
        "result=\"error\"",
    );
    let _ = writeln!(out, "\nFaults exercised:");
    let exercised = [
        (
            "STS throttled",
            c.throttled.load(Ordering::SeqCst) + c.unavailable.load(Ordering::SeqCst),
        ),
        (
            "STS calls refused/cut while down",
            c.refused_connections.load(Ordering::SeqCst) + c.cut_requests.load(Ordering::SeqCst),
        ),
        (
            "Lambda connections refused/cut while down",
            l.refused_connections.load(Ordering::SeqCst) + l.cut_connections.load(Ordering::SeqCst),
        ),
        (
            "balancer failovers to the other webhook replica",
            b.failovers.load(Ordering::SeqCst),
        ),
        ("credproxy restarts", u64::from(r.credproxy_instances) - 1),
        ("API server restarts", t.apiserver_down.len() as u64),
        ("gateway config reloads accepted", reload_ok as u64),
        ("gateway config reloads rejected", reload_error as u64),
    ];
    for (what, count) in exercised {
        let _ = writeln!(out, "  {what:<50} {count}");
        if count == 0 {
            missed.push(format!("fault not exercised: {what}"));
        }
    }
    let _ = writeln!(
        out,
        "  config writes per version: {}",
        CONFIG_VARIANTS
            .iter()
            .zip(r.config_writes)
            .map(|(v, n)| format!("{n} × {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        out,
        "  balancer connections per replica (A, B): {:?}; connections no replica took: {}",
        b.per_backend.lock().map(|v| v.clone()).unwrap_or_default(),
        b.unserved.load(Ordering::SeqCst)
    );

    // Memory and descriptors.
    let _ = writeln!(
        out,
        "\nRSS and open fds per process (sampled every 2 s from /proc; flat = last-quarter max ≤ second-quarter max × {:.2} + {} MiB, fds ≤ + {}):",
        1.0 + sampler::RSS_GROWTH,
        sampler::RSS_SLACK_KIB / 1024,
        sampler::FD_SLACK
    );
    let _ = writeln!(
        out,
        "  {:<14} {:>7} {:>12} {:>12} {:>12} {:>10} {:>8} {:>8} {:>8}  verdict",
        "process",
        "samples",
        "RSS start",
        "RSS settled",
        "RSS end",
        "RSS max",
        "fds start",
        "settled",
        "fds end"
    );
    for instance in &r.instances {
        let mib = |kib: u64| format!("{:.1} MiB", kib as f64 / 1024.0);
        let first = instance.first();
        let verdict = instance.flatness();
        let _ = writeln!(
            out,
            "  {:<14} {:>7} {:>12} {:>12} {:>12} {:>10} {:>8} {:>8} {:>8}  {}",
            instance.name,
            instance.samples.len(),
            first.map_or("-".into(), |s| mib(s.rss_kib)),
            verdict
                .as_ref()
                .map_or("-".into(), |v| mib(v.rss_baseline_kib)),
            instance.last().map_or("-".into(), |s| mib(s.rss_kib)),
            verdict.as_ref().map_or("-".into(), |v| mib(v.rss_max_kib)),
            first.map_or("-".into(), |s| s.fds.to_string()),
            verdict
                .as_ref()
                .map_or("-".into(), |v| v.fds_baseline.to_string()),
            instance.last().map_or("-".into(), |s| s.fds.to_string()),
            match &verdict {
                _ if !instance.judged => "test peer: reported, not judged".to_string(),
                None => "too short-lived to judge".to_string(),
                Some(v) if v.rss_flat && v.fds_flat => "flat".to_string(),
                Some(v) => format!(
                    "GROWING (RSS {} → {}, fds {} → {})",
                    mib(v.rss_baseline_kib),
                    mib(v.rss_end_kib),
                    v.fds_baseline,
                    v.fds_end
                ),
            }
        );
        if let Some(v) = verdict.filter(|_| instance.judged) {
            if !(v.rss_flat && v.fds_flat) {
                missed.push(format!("{} not flat", instance.name));
            }
        }
    }

    // Secrets.
    let _ = writeln!(
        out,
        "\nSecret scan: {} secrets ({}) searched for whole and by a 24-character middle window in {} bytes of logs (target/soak/logs/)",
        r.secrets.len(),
        r.secrets
            .kinds()
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect::<Vec<_>>()
            .join(", "),
        std::fs::read_dir(r.out_dir.join("logs"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum::<u64>(),
    );
    if r.findings.is_empty() {
        let _ = writeln!(out, "  no secret found in any log");
    } else {
        let mut grouped: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
        for finding in r.findings {
            grouped
                .entry((finding.log.as_str(), finding.secret))
                .or_default()
                .push(finding.line);
        }
        for ((log, secret), lines) in grouped {
            let _ = writeln!(
                out,
                "  FOUND {secret} in {log}: {} lines, first line {}",
                lines.len(),
                lines[0]
            );
        }
        missed.push(format!("{} log lines carry a secret", r.findings.len()));
    }
    if r.secrets.is_empty() {
        missed.push("no secrets collected to scan for".into());
    }

    let passed = missed.is_empty();
    let _ = writeln!(
        out,
        "\nResult: {}",
        if passed {
            "PASS — every target met"
        } else {
            "FAIL"
        }
    );
    for miss in &missed {
        let _ = writeln!(out, "  missed: {miss}");
    }
    (out, passed)
}

/// `YYYY-MM-DD HH:MM UTC` for the report header.
fn chrono_like(unix: f64) -> String {
    let out = std::process::Command::new("date")
        .args([
            "-u",
            "-d",
            &format!("@{}", unix as i64),
            "+%Y-%m-%d %H:%M UTC",
        ])
        .output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown host".into())
}
