//! Differential test: the upstream webhook (v0.6.17, tests/peers/install-upstream-webhook.sh) and ours run
//! side by side with the same flags, watching the same real kube-apiserver (same ServiceAccounts), and get
//! the same AdmissionReviews: every mutation fixture under webhook/tests/fixtures/mutate/ plus generated pods.
//! Each patch is applied to the pod and the resulting pods are compared after normalising Go serialisation
//! artifacts (reference upstream-webhook.md §4.6: `resources: {}`, nulls, zero-value strings).
//!
//! Every remaining difference must be one of our documented improvements: upstream re-serialises containers
//! through its Go types and so drops or rewrites fields of the input (unknown fields, quantities), while we
//! keep the input's value. Any other difference fails the test. The differences found are written to
//! `target/differential-report.md` (and printed).
//!
//! `PODCRED_DIFF_SELF_CHECK=1` compares upstream with itself (checks the harness: no differences at all).
//! `PODCRED_DIFF_GENERATED=<n>` (default 1000) and `PODCRED_DIFF_SEED=<u64>` control the generated pods.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use integration::kube::{ControlPlane, WebhookImpl, WebhookProcess};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};

const CC_FIXTURE_FLAGS: [(&str, &str); 5] = [
    ("audience", "--container-credentials-audience"),
    ("mountPath", "--container-credentials-token-mount-path"),
    ("volumeName", "--container-credentials-token-volume-name"),
    ("tokenPath", "--container-credentials-token-path"),
    ("fullUri", "--container-credentials-full-uri"),
];

/// The flags a group of cases needs (both webhooks get exactly these).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Flags {
    region: String,
    /// `--container-credentials-*` overrides, as (flag, value).
    container_credentials: Vec<(String, String)>,
}

/// One admission to send to both webhooks.
#[derive(Clone, Debug)]
struct Case {
    name: String,
    namespace: String,
    pod: Value,
    /// The pod's ServiceAccount: `Some(annotations)` creates it, `None` leaves it missing.
    service_account: Option<BTreeMap<String, String>>,
    /// Listed in the container-credentials identities file.
    container_credentials: bool,
    flags: Flags,
}

fn fixtures_root() -> PathBuf {
    integration::workspace_root().join("webhook/tests/fixtures/mutate")
}

fn read_yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn k8s_name(text: &str) -> String {
    let mut name: String = text
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    name.truncate(55);
    name.trim_matches('-').to_owned()
}

fn bool_text(value: &Value) -> String {
    value.as_bool().unwrap_or(false).to_string()
}

/// Every fixture whose setup can be reproduced with real ServiceAccounts and flags; the others are returned
/// by name with the reason (podcred-only features).
fn fixture_cases() -> (Vec<Case>, Vec<(String, String)>) {
    let root = fixtures_root();
    let mut names: Vec<String> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e} (the webhook's mutation fixtures)", root.display()))
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("case.yaml").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut cases = Vec::new();
    let mut skipped = Vec::new();
    for name in names {
        let dir = root.join(&name);
        let case = read_yaml(&dir.join("case.yaml"));
        if !case["config"]["sidecar"].is_null() {
            skipped.push((name, "sidecar injection is a podcred extension".into()));
            continue;
        }
        if !case["cache"]["namespace"].is_null() {
            skipped.push((name, "namespace-scoped fake cache".into()));
            continue;
        }
        let namespace = k8s_name(&format!("fx-{name}"));
        let mut pod = read_yaml(&dir.join("pod.yaml"));
        pod["metadata"]["namespace"] = json!(namespace);
        let cache = &case["cache"];
        let service_account = if let Some(sts) = cache.get("sts").filter(|v| !v.is_null()) {
            let mut annotations = BTreeMap::new();
            annotations.insert(
                "eks.amazonaws.com/role-arn".to_owned(),
                sts["roleArn"].as_str().unwrap_or_default().to_owned(),
            );
            annotations.insert(
                "eks.amazonaws.com/audience".to_owned(),
                sts["audience"].as_str().unwrap_or_default().to_owned(),
            );
            annotations.insert(
                "eks.amazonaws.com/sts-regional-endpoints".to_owned(),
                bool_text(&sts["useRegionalSts"]),
            );
            annotations.insert(
                "eks.amazonaws.com/token-expiration".to_owned(),
                sts["tokenExpiration"]
                    .as_i64()
                    .unwrap_or(86_400)
                    .to_string(),
            );
            Some(annotations)
        } else if let Some(common) = cache.get("common").filter(|v| !v.is_null()) {
            let mut annotations = BTreeMap::new();
            annotations.insert(
                "eks.amazonaws.com/sts-regional-endpoints".to_owned(),
                bool_text(&common["useRegionalSts"]),
            );
            annotations.insert(
                "eks.amazonaws.com/token-expiration".to_owned(),
                common["tokenExpiration"]
                    .as_i64()
                    .unwrap_or(86_400)
                    .to_string(),
            );
            Some(annotations)
        } else {
            None
        };
        let mut flags = Flags {
            region: case["config"]["region"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            ..Flags::default()
        };
        if let Some(cc) = case["config"]
            .get("containerCredentials")
            .filter(|v| !v.is_null())
        {
            for (key, flag) in CC_FIXTURE_FLAGS {
                flags.container_credentials.push((
                    flag.to_owned(),
                    cc[key].as_str().unwrap_or_default().to_owned(),
                ));
            }
        }
        cases.push(Case {
            name: format!("fixture {name}"),
            namespace,
            pod,
            service_account,
            container_credentials: cache["containerCredentials"].as_bool().unwrap_or(false),
            flags,
        });
    }
    (cases, skipped)
}

/// xorshift64*: deterministic pods for a given seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const GENERATED_IRSA_NS: &str = "gen-irsa";
const GENERATED_CC_NS: &str = "gen-cc";

/// A generated pod's ServiceAccount: (namespace, name, annotations or None = missing, listed in the CC file).
type GeneratedServiceAccount = (
    &'static str,
    &'static str,
    Option<Vec<(&'static str, &'static str)>>,
    bool,
);

/// ServiceAccounts of the generated pods.
fn generated_service_accounts() -> Vec<GeneratedServiceAccount> {
    let role = (
        "eks.amazonaws.com/role-arn",
        "arn:aws:iam::111122223333:role/generated",
    );
    vec![
        (GENERATED_IRSA_NS, "role", Some(vec![role]), false),
        (
            GENERATED_IRSA_NS,
            "role-cn",
            Some(vec![(
                "eks.amazonaws.com/role-arn",
                "arn:aws-cn:iam::111122223333:role/cn",
            )]),
            false,
        ),
        (
            GENERATED_IRSA_NS,
            "audience-empty",
            Some(vec![role, ("eks.amazonaws.com/audience", "")]),
            false,
        ),
        (
            GENERATED_IRSA_NS,
            "audience-custom",
            Some(vec![
                role,
                ("eks.amazonaws.com/audience", "beta-sts.amazonaws.com"),
            ]),
            false,
        ),
        (
            GENERATED_IRSA_NS,
            "sts-true",
            Some(vec![
                role,
                ("eks.amazonaws.com/sts-regional-endpoints", "true"),
            ]),
            false,
        ),
        (
            GENERATED_IRSA_NS,
            "sts-unparsable",
            Some(vec![
                role,
                ("eks.amazonaws.com/sts-regional-endpoints", "yes"),
            ]),
            false,
        ),
        (
            GENERATED_IRSA_NS,
            "exp-3600",
            Some(vec![role, ("eks.amazonaws.com/token-expiration", "3600")]),
            false,
        ),
        (
            GENERATED_IRSA_NS,
            "exp-small",
            Some(vec![role, ("eks.amazonaws.com/token-expiration", "100")]),
            false,
        ),
        (
            GENERATED_IRSA_NS,
            "exp-bad",
            Some(vec![role, ("eks.amazonaws.com/token-expiration", "soon")]),
            false,
        ),
        (
            GENERATED_IRSA_NS,
            "role-empty",
            Some(vec![("eks.amazonaws.com/role-arn", "")]),
            false,
        ),
        (
            GENERATED_IRSA_NS,
            "role-invalid",
            Some(vec![("eks.amazonaws.com/role-arn", "not-an-arn")]),
            false,
        ),
        (GENERATED_IRSA_NS, "no-role", Some(vec![]), false),
        (GENERATED_IRSA_NS, "missing", None, false),
        (GENERATED_CC_NS, "cc-with-role", Some(vec![role]), true),
        (
            GENERATED_CC_NS,
            "cc-exp",
            Some(vec![
                ("eks.amazonaws.com/token-expiration", "7200"),
                ("eks.amazonaws.com/sts-regional-endpoints", "true"),
            ]),
            true,
        ),
        (GENERATED_CC_NS, "cc-plain", Some(vec![]), true),
        (GENERATED_CC_NS, "cc-missing", None, true),
        (GENERATED_CC_NS, "not-listed", Some(vec![role]), false),
    ]
}

const AWS_ENV: [&str; 8] = [
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_STS_REGIONAL_ENDPOINTS",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "UNRELATED",
];

fn generated_container(rng: &mut Rng, name: &str, init: bool) -> Value {
    let mut container =
        json!({"name": name, "image": "public.ecr.aws/docker/library/busybox:1.36"});
    if rng.chance(50) {
        let mut env = Vec::new();
        for var in AWS_ENV {
            if rng.chance(25) {
                env.push(json!({"name": var, "value": format!("preset-{}", rng.below(100))}));
            }
        }
        if rng.chance(10) {
            env.push(json!({"name": "FROM_FIELD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}));
        }
        if !env.is_empty() || rng.chance(20) {
            container["env"] = json!(env);
        }
    }
    if rng.chance(10) {
        container["envFrom"] = json!([{"configMapRef": {"name": "settings"}}]);
    }
    if rng.chance(30) {
        let mount_name = rng.pick(&["data", "aws-iam-token", "eks-pod-identity-token", "cache"]);
        container["volumeMounts"] =
            json!([{"name": mount_name, "mountPath": format!("/mnt/{}", rng.below(9))}]);
    }
    if rng.chance(20) {
        container["resources"] = json!({"requests": {"cpu": rng.pick(&["100m", "0.5", "1"]), "memory": rng.pick(&["64Mi", "1Gi", "128M"])}});
    }
    if rng.chance(15) {
        container["readinessProbe"] = json!({"grpc": {"port": 5000}});
    }
    if rng.chance(10) {
        container["startupProbe"] =
            json!({"httpGet": {"path": "/ready", "port": 8080}, "failureThreshold": 30});
    }
    if rng.chance(20) {
        container["securityContext"] = json!({"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}, "capabilities": {"drop": ["ALL"]}});
    }
    if init && rng.chance(40) {
        container["restartPolicy"] = json!("Always");
    }
    if rng.chance(10) {
        container["args"] = json!(["--html=<b>&</b>"]);
    }
    container
}

fn generated_cases(count: usize, seed: u64) -> Vec<Case> {
    let mut rng = Rng(seed.max(1));
    let accounts = generated_service_accounts();
    let regions = ["", "us-west-2"];
    let mut cases = Vec::new();
    for i in 0..count {
        let (namespace, sa, annotations, in_cc) = rng.pick(&accounts).clone();
        let mut containers = Vec::new();
        for c in 0..1 + rng.below(3) {
            containers.push(generated_container(&mut rng, &format!("c{c}"), false));
        }
        let mut spec = json!({"serviceAccountName": sa, "containers": containers});
        if rng.chance(40) {
            let init: Vec<Value> = (0..1 + rng.below(2))
                .map(|c| generated_container(&mut rng, &format!("i{c}"), true))
                .collect();
            spec["initContainers"] = json!(init);
        }
        match rng.below(5) {
            0 => {}
            1 => spec["volumes"] = json!([]),
            2 => spec["volumes"] = json!([{"name": "data", "emptyDir": {}}]),
            3 => {
                spec["volumes"] = json!([{"name": "aws-iam-token", "hostPath": {"path": "/token"}}])
            }
            _ => {
                spec["volumes"] = json!([{"name": "eks-pod-identity-token", "emptyDir": {}}, {"name": "cache", "emptyDir": {"medium": "Memory"}}])
            }
        }
        match rng.below(6) {
            0 => spec["nodeSelector"] = json!({"kubernetes.io/os": "windows"}),
            1 => spec["nodeSelector"] = json!({"beta.kubernetes.io/os": "windows"}),
            2 => spec["nodeSelector"] = json!({"kubernetes.io/os": "linux"}),
            _ => {}
        }
        let mut metadata = json!({"name": format!("gen-{i}"), "namespace": namespace});
        match rng.below(4) {
            0 => metadata["labels"] = json!({}),
            1 => metadata["labels"] = json!({"app": "gen"}),
            2 => metadata["labels"] = json!({"eks.amazonaws.com/pod-identity": "disabled"}),
            _ => {}
        }
        let mut pod_annotations = serde_json::Map::new();
        if rng.chance(25) {
            let skip = rng.pick(&[
                "c0",
                "c1,i0",
                "\"c0,c1\"",
                "c0, c1",
                "i0",
                "",
                "\"unterminated",
            ]);
            pod_annotations.insert("eks.amazonaws.com/skip-containers".into(), json!(skip));
        }
        if rng.chance(20) {
            let exp = rng.pick(&["3600", "0", "abc", "+700", "99999999", "-5"]);
            pod_annotations.insert("eks.amazonaws.com/token-expiration".into(), json!(exp));
        }
        if !pod_annotations.is_empty() {
            metadata["annotations"] = Value::Object(pod_annotations);
        }
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec});
        let flags = Flags {
            region: (*rng.pick(&regions)).to_owned(),
            container_credentials: Vec::new(),
        };
        cases.push(Case {
            name: format!("generated #{i} (sa {namespace}/{sa})"),
            namespace: namespace.to_owned(),
            pod,
            service_account: annotations.map(|list| {
                list.iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect()
            }),
            container_credentials: in_cc,
            flags,
        });
    }
    cases
}

fn admission_review(case: &Case, uid: &str) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": case.pod["metadata"]["name"],
            "namespace": case.namespace,
            "operation": "CREATE",
            "userInfo": {"username": "differential-test"},
            "object": case.pod,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        }
    })
}

/// What a webhook did with one review: the resulting pod, or why it refused.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Pod(Value),
    Denied(String),
}

async fn admit(
    http: &reqwest::Client,
    webhook: &WebhookProcess,
    case: &Case,
    uid: &str,
) -> Outcome {
    let response = http
        .post(webhook.mutate_url())
        .header("Content-Type", "application/json")
        .body(admission_review(case, uid).to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{:?} webhook, {}: {e}", webhook.which, case.name));
    assert_eq!(
        response.status(),
        200,
        "{:?} webhook, {}",
        webhook.which,
        case.name
    );
    let review: Value = response.json().await.expect("AdmissionReview JSON");
    let response = &review["response"];
    assert_eq!(response["uid"], uid, "{:?}: uid echoed", webhook.which);
    if response["allowed"] != true {
        return Outcome::Denied(
            response["status"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    let mut pod = case.pod.clone();
    if let Some(patch) = response["patch"].as_str() {
        assert_eq!(response["patchType"], "JSONPatch");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(patch)
            .expect("patch is base64");
        let patch: json_patch::Patch =
            serde_json::from_slice(&bytes).expect("patch is a JSON Patch");
        json_patch::patch(&mut pod, &patch).unwrap_or_else(|e| {
            panic!(
                "{:?} patch does not apply to {}: {e}",
                webhook.which, case.name
            )
        });
    }
    Outcome::Pod(pod)
}

/// Go serialisation artifacts are equal to absent: nulls, empty strings and empty objects are dropped.
fn normalise(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (key, item) in map {
                let item = normalise(item);
                let empty = match &item {
                    Value::Null => true,
                    Value::String(s) => s.is_empty(),
                    Value::Object(m) => m.is_empty(),
                    _ => false,
                };
                if !empty {
                    out.insert(key.clone(), item);
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(normalise).collect()),
        other => other.clone(),
    }
}

/// Container-credentials expiration jitter: any value in [79200, 86400] (inclusive) on both sides is the
/// same draw. Only for pods the webhook put in container-credentials mode (labelled), so an IRSA pod that
/// got jitter would still show up as a difference.
fn unjitter(pod: &mut Value) {
    if pod["metadata"]["labels"]["eks.amazonaws.com/pod-identity"] != "enabled" {
        return;
    }
    if let Some(volumes) = pod["spec"]["volumes"].as_array_mut() {
        for volume in volumes {
            if let Some(sources) = volume["projected"]["sources"].as_array_mut() {
                for source in sources {
                    let token = &mut source["serviceAccountToken"];
                    if let Some(exp) = token["expirationSeconds"].as_i64() {
                        if (79_200..=86_400).contains(&exp) {
                            token["expirationSeconds"] = json!("jittered");
                        }
                    }
                }
            }
        }
    }
}

/// JSON pointers where `a` and `b` differ (objects by key, arrays by index).
fn differences(a: &Value, b: &Value, path: String, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for key in keys {
                let escaped = key.replace('~', "~0").replace('/', "~1");
                differences(
                    x.get(key).unwrap_or(&Value::Null),
                    y.get(key).unwrap_or(&Value::Null),
                    format!("{path}/{escaped}"),
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                differences(p, q, format!("{path}/{i}"), out);
            }
        }
        _ if a != b => out.push(path),
        _ => {}
    }
}

/// A difference is a documented improvement when our pod keeps the input's value at that path and
/// upstream's does not (it dropped or re-canonicalised the field while re-serialising the containers).
fn keeps_input(input: &Value, ours: &Value, path: &str) -> bool {
    let at = |v: &Value| v.pointer(path).cloned().unwrap_or(Value::Null);
    at(input) == at(ours)
}

async fn create_namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(e) => panic!("create namespace {name}: {e}"),
    }
}

async fn create_service_account(
    client: &Client,
    namespace: &str,
    name: &str,
    annotations: &BTreeMap<String, String>,
) {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.into()),
            annotations: Some(annotations.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &sa).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(e) => panic!("create service account {namespace}/{name}: {e}"),
    }
}

/// Waits until `probe` (whose ServiceAccount was created last) is mutated by every webhook and, when it is
/// a container-credentials probe, labelled for pod identity: ServiceAccount events arrive in order, so every
/// earlier ServiceAccount is cached too, and the identities file has been loaded.
async fn wait_until_mutated(http: &reqwest::Client, webhooks: &[&WebhookProcess], probe: &Case) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for webhook in webhooks {
        loop {
            if let Outcome::Pod(pod) = admit(http, webhook, probe, "probe").await {
                let labelled =
                    pod["metadata"]["labels"]["eks.amazonaws.com/pod-identity"] == "enabled";
                if pod != probe.pod && (labelled || !probe.container_credentials) {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{:?} webhook never saw the probe {}; log:\n{}",
                webhook.which,
                probe.name,
                webhook.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn probe_case(namespace: &str, service_account: &str, container_credentials: bool) -> Case {
    Case {
        name: format!("probe {namespace}/{service_account}"),
        namespace: namespace.to_owned(),
        pod: json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "probe", "namespace": namespace},
            "spec": {"serviceAccountName": service_account, "containers": [{"name": "probe", "image": "busybox"}]},
        }),
        service_account: Some(BTreeMap::from([(
            "eks.amazonaws.com/role-arn".to_owned(),
            "arn:aws:iam::111122223333:role/probe".to_owned(),
        )])),
        container_credentials,
        flags: Flags::default(),
    }
}

#[derive(Default)]
struct Report {
    compared: usize,
    mutated: usize,
    identical: usize,
    improvements: Vec<(String, String, Value, Value)>,
    unexpected: Vec<String>,
}

#[tokio::test]
#[ignore = "needs peers: run make test"]
async fn upstream_and_podcred_produce_the_same_pods() {
    let self_check = std::env::var_os("PODCRED_DIFF_SELF_CHECK").is_some();
    let ours_impl = if self_check {
        WebhookImpl::Upstream
    } else {
        WebhookImpl::Podcred
    };
    let generated_count: usize = std::env::var("PODCRED_DIFF_GENERATED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let seed: u64 = std::env::var("PODCRED_DIFF_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5EED_CAFE);

    let (mut cases, skipped) = fixture_cases();
    let fixture_count = cases.len();
    assert!(
        fixture_count >= 24,
        "expected every upstream fixture, found {fixture_count}"
    );
    cases.extend(generated_cases(generated_count, seed));

    let plane = ControlPlane::start().await;
    let client = plane.client().await;
    let mut namespaces: BTreeSet<&str> = cases.iter().map(|c| c.namespace.as_str()).collect();
    namespaces.insert("podcred-system");
    for namespace in &namespaces {
        create_namespace(&client, namespace).await;
    }
    for case in &cases {
        if let Some(annotations) = &case.service_account {
            let name = case.pod["spec"]["serviceAccountName"]
                .as_str()
                .unwrap_or("default");
            create_service_account(&client, &case.namespace, name, annotations).await;
        }
    }
    let probes = [
        probe_case(GENERATED_IRSA_NS, "zz-probe", false),
        probe_case(GENERATED_CC_NS, "zz-cc-probe", true),
    ];
    for probe in &probes {
        create_namespace(&client, &probe.namespace).await;
        let annotations = probe.service_account.clone().unwrap_or_default();
        create_service_account(
            &client,
            &probe.namespace,
            probe.pod["spec"]["serviceAccountName"].as_str().unwrap(),
            &annotations,
        )
        .await;
    }
    let identities: Vec<Value> = cases
        .iter()
        .chain(&probes)
        .filter(|c| c.container_credentials)
        .map(|c| {
            (
                c.namespace.clone(),
                c.pod["spec"]["serviceAccountName"]
                    .as_str()
                    .unwrap_or("default")
                    .to_owned(),
            )
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|(namespace, sa)| json!({"namespace": namespace, "serviceAccount": sa}))
        .collect();
    let identities_file = plane.dir().join("container-credentials.json");
    std::fs::write(
        &identities_file,
        json!({"identities": identities}).to_string(),
    )
    .expect("write identities");

    let mut groups: BTreeMap<Flags, Vec<&Case>> = BTreeMap::new();
    for case in &cases {
        groups.entry(case.flags.clone()).or_default().push(case);
    }

    let http = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(plane.ca_pem().as_bytes()).expect("CA"),
        )
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client");
    let mut report = Report::default();
    for (group_index, (flags, group)) in groups.iter().enumerate() {
        let mut args = vec![
            format!("--aws-default-region={}", flags.region),
            format!(
                "--watch-container-credentials-config={}",
                identities_file.display()
            ),
        ];
        args.extend(
            flags
                .container_credentials
                .iter()
                .map(|(f, v)| format!("{f}={v}")),
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let upstream = WebhookProcess::start(
            &plane,
            WebhookImpl::Upstream,
            &format!("upstream-{group_index}"),
            &args,
        )
        .await;
        let ours =
            WebhookProcess::start(&plane, ours_impl, &format!("podcred-{group_index}"), &args)
                .await;
        for probe in &probes {
            wait_until_mutated(&http, &[&upstream, &ours], probe).await;
        }

        for (i, case) in group.iter().enumerate() {
            let uid = format!("diff-{group_index}-{i}");
            let from_upstream = admit(&http, &upstream, case, &uid).await;
            let from_ours = admit(&http, &ours, case, &uid).await;
            report.compared += 1;
            let (upstream_pod, ours_pod) = match (&from_upstream, &from_ours) {
                (Outcome::Pod(u), Outcome::Pod(o)) => (u, o),
                _ => {
                    if from_upstream != from_ours {
                        report.unexpected.push(format!(
                            "{}: upstream {from_upstream:?}, podcred {from_ours:?}",
                            case.name
                        ));
                    }
                    continue;
                }
            };
            if *upstream_pod != case.pod || *ours_pod != case.pod {
                report.mutated += 1;
            }
            let mut u = normalise(upstream_pod);
            let mut o = normalise(ours_pod);
            unjitter(&mut u);
            unjitter(&mut o);
            let input = normalise(&case.pod);
            let mut diffs = Vec::new();
            differences(&u, &o, String::new(), &mut diffs);
            if diffs.is_empty() {
                report.identical += 1;
            }
            for path in diffs {
                let at = |v: &Value| v.pointer(&path).cloned().unwrap_or(Value::Null);
                if keeps_input(&input, &o, &path) && !keeps_input(&input, &u, &path) {
                    report
                        .improvements
                        .push((case.name.clone(), path.clone(), at(&u), at(&o)));
                } else {
                    report.unexpected.push(format!(
                        "{}: {path}: upstream {} vs podcred {} (input {})",
                        case.name,
                        at(&u),
                        at(&o),
                        at(&input)
                    ));
                }
            }
        }
    }

    let mut text = String::new();
    let _ = writeln!(
        text,
        "# Differential test: upstream v0.6.17 vs {}\n\n{} admissions ({} mutation fixtures, {} generated, seed {seed:#x}); \
         {} mutated; {} resulting pods identical after normalisation.\n",
        if self_check { "upstream (self-check)" } else { "podcred" },
        report.compared,
        fixture_count,
        generated_count,
        report.mutated,
        report.identical,
    );
    let _ = writeln!(
        text,
        "Fixtures not comparable (podcred-only): {skipped:?}\n"
    );
    let _ = writeln!(
        text,
        "## Differences that are documented improvements (podcred keeps the input's value)\n"
    );
    let mut by_pattern: BTreeMap<String, usize> = BTreeMap::new();
    for (_, path, _, _) in &report.improvements {
        let pattern: Vec<&str> = path
            .split('/')
            .map(|segment| {
                if !segment.is_empty() && segment.chars().all(|c| c.is_ascii_digit()) {
                    "*"
                } else {
                    segment
                }
            })
            .collect();
        *by_pattern.entry(pattern.join("/")).or_default() += 1;
    }
    let _ = writeln!(text, "| path | occurrences |\n| --- | --- |");
    for (pattern, count) in &by_pattern {
        let _ = writeln!(text, "| `{pattern}` | {count} |");
    }
    let _ = writeln!(
        text,
        "\n| case | path | upstream | podcred |\n| --- | --- | --- | --- |"
    );
    for (case, path, u, o) in &report.improvements {
        let _ = writeln!(text, "| {case} | `{path}` | `{u}` | `{o}` |");
    }
    let _ = writeln!(text, "\n## Unexpected differences\n");
    for line in &report.unexpected {
        let _ = writeln!(text, "- {line}");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| integration::workspace_root().join("target"));
    let _ = std::fs::write(target.join("differential-report.md"), &text);
    println!("{text}");

    assert!(
        report.unexpected.is_empty(),
        "{} unexpected differences (see target/differential-report.md):\n{}",
        report.unexpected.len(),
        report.unexpected.join("\n")
    );
    assert!(
        report.mutated * 2 > report.compared,
        "most admissions should mutate: {} of {}",
        report.mutated,
        report.compared
    );
    if self_check {
        assert!(
            report.improvements.is_empty(),
            "upstream differs from itself"
        );
    }
}
