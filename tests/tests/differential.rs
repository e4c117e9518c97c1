//! Differential test: the upstream webhook (v0.6.17, tests/peers/install-upstream-webhook.sh) and ours run
//! side by side with the same flags, watching the same real kube-apiserver (same ServiceAccounts), and get
//! the same AdmissionReviews: every mutation fixture under webhook/tests/fixtures/mutate/ plus generated pods.
//! Each patch is applied to the pod and the resulting pods are compared after normalising Go serialisation
//! artifacts (reference upstream-webhook.md §4.6: `resources: {}`, nulls, zero-value strings).
//!
//! Every remaining difference must be on the explicit list [`IMPROVEMENTS`] (a path pattern and the
//! documented reason: upstream re-serialises containers through its Go types and so rewrites some input
//! fields, while we keep the input's value). Any other difference fails the test, and so does a different
//! number of mutated pods ("mutated" is counted from our output). The differences found are written to
//! `target/differential-report.md` (and printed).
//!
//! The self-test [`a_webhook_that_forgets_part_of_the_mutation_fails_the_differential`] puts
//! `forgetful_webhook` (tests/src/bin/forgetful_webhook.rs) in front of ours, forgetting env, a volume, a
//! volume mount or the token-expiration annotation, and requires each to fail.
//!
//! `PODCRED_WEBHOOK_BIN=<path>` tests another binary in place of ours (e.g. `target/debug/forgetful_webhook`
//! with `PODCRED_FORGET=env`). `PODCRED_DIFF_SELF_CHECK=1` compares upstream with itself (checks the harness:
//! no differences at all). `PODCRED_DIFF_GENERATED=<n>` (default 1000; the self-test's
//! `PODCRED_DIFF_SELF_TEST_GENERATED`, default 150) and `PODCRED_DIFF_SEED=<u64>` control the generated pods.

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
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
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

/// A difference from upstream that we accept: a documented improvement (webhook/README.md, "Intentional
/// improvements over upstream"). `pattern` is a JSON pointer in which `*` stands for any one segment.
struct Improvement {
    pattern: &'static str,
    reason: &'static str,
}

/// The only differences the test accepts. A difference is accepted when its path matches one of these
/// patterns, our pod keeps the input's value there and upstream's pod does not. Anything else fails the test,
/// in particular any part of the mutation missing from our pod.
const IMPROVEMENTS: &[Improvement] = &[
    Improvement {
        pattern: "/spec/containers/*/resources/requests/cpu",
        reason: "quantities are not re-canonicalised (upstream writes 0.5 as 500m)",
    },
    Improvement {
        pattern: "/spec/initContainers/*/resources/requests/cpu",
        reason: "quantities are not re-canonicalised (upstream writes 0.5 as 500m)",
    },
    Improvement {
        pattern: "/spec/containers/*/futureContainerField",
        reason: "container fields unknown to upstream's Go types are kept (upstream issues #84, #165, #208; \
                 fixture improvement-unknown-fields-kept)",
    },
    Improvement {
        pattern: "/spec/containers/*/volumeMounts/*/path",
        reason: "volume-mount fields unknown to upstream's Go types are kept (fixture \
                 irsa-raw-pod-has-volume-mount)",
    },
];

fn matches_pattern(pattern: &str, path: &str) -> bool {
    let (pattern, path): (Vec<&str>, Vec<&str>) =
        (pattern.split('/').collect(), path.split('/').collect());
    pattern.len() == path.len()
        && pattern
            .iter()
            .zip(&path)
            .all(|(want, got)| *want == "*" || want == got)
}

/// The documented improvement that explains a difference at `path`, if any.
fn improvement(
    input: &Value,
    upstream: &Value,
    ours: &Value,
    path: &str,
) -> Option<&'static Improvement> {
    let at = |v: &Value| v.pointer(path).cloned().unwrap_or(Value::Null);
    if at(ours) != at(input) || at(upstream) == at(input) {
        return None;
    }
    IMPROVEMENTS
        .iter()
        .find(|improvement| matches_pattern(improvement.pattern, path))
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
async fn wait_until_mutated(http: &reqwest::Client, webhook: &WebhookProcess, probe: &Case) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Outcome::Pod(pod) = admit(http, webhook, probe, "probe").await {
            let labelled = pod["metadata"]["labels"]["eks.amazonaws.com/pod-identity"] == "enabled";
            if pod != probe.pod && (labelled || !probe.container_credentials) {
                return;
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

/// Which webhook answers the reviews.
#[derive(Clone, Copy, Debug)]
enum Subject {
    Upstream,
    /// Ours: `target/debug/webhook`, or `PODCRED_WEBHOOK_BIN`.
    Podcred,
    /// `forgetful_webhook` in front of ours, forgetting one part of the mutation (`PODCRED_FORGET`).
    Forgetful(&'static str),
}

/// A control plane with every case's namespace, ServiceAccount and container-credentials entry.
struct Setup {
    plane: ControlPlane,
    cases: Vec<Case>,
    fixture_count: usize,
    generated_count: usize,
    seed: u64,
    skipped: Vec<(String, String)>,
    probes: [Case; 2],
    identities_file: PathBuf,
    http: reqwest::Client,
}

impl Setup {
    async fn new(generated_count: usize, seed: u64) -> Self {
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
        let http = reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(plane.ca_pem().as_bytes()).expect("CA"),
            )
            .timeout(Duration::from_secs(15))
            .build()
            .expect("client");
        Self {
            plane,
            cases,
            fixture_count,
            generated_count,
            seed,
            skipped,
            probes,
            identities_file,
            http,
        }
    }

    /// Sends every case to `subject` (one webhook process per group of flags); the outcomes in case order.
    async fn outcomes(&self, subject: Subject) -> Vec<Outcome> {
        let mut groups: BTreeMap<&Flags, Vec<usize>> = BTreeMap::new();
        for (index, case) in self.cases.iter().enumerate() {
            groups.entry(&case.flags).or_default().push(index);
        }
        let mut outcomes = vec![Outcome::Denied("not sent".into()); self.cases.len()];
        for (group_index, (flags, group)) in groups.iter().enumerate() {
            let mut args = vec![
                format!("--aws-default-region={}", flags.region),
                format!(
                    "--watch-container-credentials-config={}",
                    self.identities_file.display()
                ),
            ];
            args.extend(
                flags
                    .container_credentials
                    .iter()
                    .map(|(f, v)| format!("{f}={v}")),
            );
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let name = format!("{subject:?}-{group_index}")
                .to_ascii_lowercase()
                .replace(|c: char| !c.is_ascii_alphanumeric(), "-");
            let webhook = match subject {
                Subject::Upstream => {
                    WebhookProcess::start(&self.plane, WebhookImpl::Upstream, &name, &args).await
                }
                Subject::Podcred => {
                    WebhookProcess::start(&self.plane, WebhookImpl::Podcred, &name, &args).await
                }
                Subject::Forgetful(forget) => {
                    let inner = WebhookImpl::Podcred.binary();
                    let inner = inner.to_str().expect("UTF-8 path");
                    WebhookProcess::start_binary(
                        &self.plane,
                        WebhookImpl::Podcred,
                        integration::workspace_bin("forgetful_webhook"),
                        &[
                            ("PODCRED_FORGET", forget),
                            ("PODCRED_FORGETFUL_INNER", inner),
                        ],
                        &name,
                        &args,
                    )
                    .await
                }
            };
            for probe in &self.probes {
                wait_until_mutated(&self.http, &webhook, probe).await;
            }
            for &index in group {
                outcomes[index] = admit(
                    &self.http,
                    &webhook,
                    &self.cases[index],
                    &format!("diff-{index}"),
                )
                .await;
            }
        }
        outcomes
    }

    /// Compares the pods `ours` made with upstream's, case by case.
    fn compare(&self, upstream: &[Outcome], ours: &[Outcome]) -> Report {
        let mut report = Report::default();
        for ((case, from_upstream), from_ours) in self.cases.iter().zip(upstream).zip(ours) {
            report.compared += 1;
            let (upstream_pod, ours_pod) = match (from_upstream, from_ours) {
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
            let mut u = normalise(upstream_pod);
            let mut o = normalise(ours_pod);
            unjitter(&mut u);
            unjitter(&mut o);
            let input = normalise(&case.pod);
            // Mutated = changed beyond serialisation artifacts (upstream rewrites the containers of a pod
            // that already has everything, which changes nothing that matters).
            if o != input {
                report.mutated += 1;
            }
            if u != input {
                report.upstream_mutated += 1;
            }
            let mut diffs = Vec::new();
            differences(&u, &o, String::new(), &mut diffs);
            if diffs.is_empty() {
                report.identical += 1;
            }
            for path in diffs {
                let at = |v: &Value| v.pointer(&path).cloned().unwrap_or(Value::Null);
                match improvement(&input, &u, &o, &path) {
                    Some(improvement) => report.improvements.push(Accepted {
                        case: case.name.clone(),
                        path: path.clone(),
                        reason: improvement.reason,
                        upstream: at(&u),
                        ours: at(&o),
                    }),
                    None => report.unexpected.push(format!(
                        "{}: {path}: upstream {} vs podcred {} (input {})",
                        case.name,
                        at(&u),
                        at(&o),
                        at(&input)
                    )),
                }
            }
        }
        report
    }

    fn summary(&self, subject: &str, report: &Report) -> String {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "# Differential test: upstream v0.6.17 vs {subject}\n\n{} admissions ({} mutation fixtures, {} generated, \
             seed {:#x}); {} mutated by {subject} ({} by upstream); {} resulting pods identical after normalisation.\n",
            report.compared,
            self.fixture_count,
            self.generated_count,
            self.seed,
            report.mutated,
            report.upstream_mutated,
            report.identical,
        );
        let _ = writeln!(
            text,
            "Fixtures not comparable (podcred-only): {:?}\n",
            self.skipped
        );
        let _ = writeln!(
            text,
            "## Accepted differences: documented improvements (podcred keeps the input's value)\n"
        );
        let mut by_pattern: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for accepted in &report.improvements {
            let pattern = IMPROVEMENTS
                .iter()
                .find(|i| matches_pattern(i.pattern, &accepted.path))
                .map_or("", |i| i.pattern);
            *by_pattern.entry((pattern, accepted.reason)).or_default() += 1;
        }
        let _ = writeln!(text, "| path | reason | occurrences |\n| --- | --- | --- |");
        for ((pattern, reason), count) in &by_pattern {
            let _ = writeln!(text, "| `{pattern}` | {reason} | {count} |");
        }
        let _ = writeln!(
            text,
            "\n| case | path | upstream | podcred |\n| --- | --- | --- | --- |"
        );
        for a in &report.improvements {
            let _ = writeln!(
                text,
                "| {} | `{}` | `{}` | `{}` |",
                a.case, a.path, a.upstream, a.ours
            );
        }
        let failures = report.failures();
        let _ = writeln!(text, "\n## Failures ({})\n", failures.len());
        for line in &failures {
            let _ = writeln!(text, "- {line}");
        }
        text
    }
}

/// A difference explained by a documented improvement.
struct Accepted {
    case: String,
    path: String,
    reason: &'static str,
    upstream: Value,
    ours: Value,
}

#[derive(Default)]
struct Report {
    compared: usize,
    /// Admissions whose pod our webhook changed.
    mutated: usize,
    upstream_mutated: usize,
    identical: usize,
    improvements: Vec<Accepted>,
    unexpected: Vec<String>,
}

impl Report {
    /// Why this run fails the differential (empty = it passes).
    fn failures(&self) -> Vec<String> {
        let mut failures = self.unexpected.clone();
        if self.mutated * 2 <= self.compared {
            failures.push(format!(
                "most admissions should mutate: {} of {}",
                self.mutated, self.compared
            ));
        }
        failures
    }
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn write_report(name: &str, text: &str) {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| integration::workspace_root().join("target"));
    let _ = std::fs::write(target.join(name), text);
}

#[tokio::test]
#[ignore = "needs peers: run make test"]
async fn upstream_and_podcred_produce_the_same_pods() {
    let self_check = std::env::var_os("PODCRED_DIFF_SELF_CHECK").is_some();
    let setup = Setup::new(
        env_number("PODCRED_DIFF_GENERATED", 1000),
        env_number("PODCRED_DIFF_SEED", 0x5EED_CAFE),
    )
    .await;
    let upstream = setup.outcomes(Subject::Upstream).await;
    let (subject, ours) = if self_check {
        (
            "upstream (self-check)",
            setup.outcomes(Subject::Upstream).await,
        )
    } else {
        ("podcred", setup.outcomes(Subject::Podcred).await)
    };
    let report = setup.compare(&upstream, &ours);
    let text = setup.summary(subject, &report);
    write_report("differential-report.md", &text);
    println!("{text}");

    let failures = report.failures();
    assert!(
        failures.is_empty(),
        "{} failures (see target/differential-report.md):\n{}",
        failures.len(),
        failures.join("\n")
    );
    if self_check {
        assert!(
            report.improvements.is_empty(),
            "upstream differs from itself"
        );
    }
}

/// The differential can fail: a stand-in that forgets one part of the mutation (env, a volume, a volume
/// mount, the token-expiration annotation) must fail it, and the same stand-in forgetting nothing must pass
/// (so the failures come from what was forgotten, not from the stand-in).
#[tokio::test]
#[ignore = "needs peers: run make test"]
async fn a_webhook_that_forgets_part_of_the_mutation_fails_the_differential() {
    let setup = Setup::new(
        env_number("PODCRED_DIFF_SELF_TEST_GENERATED", 150),
        env_number("PODCRED_DIFF_SEED", 0x5EED_CAFE),
    )
    .await;
    let upstream = setup.outcomes(Subject::Upstream).await;
    let mut text = String::new();

    let transparent = setup.compare(
        &upstream,
        &setup.outcomes(Subject::Forgetful("nothing")).await,
    );
    text.push_str(&setup.summary("forgetful_webhook forgetting nothing", &transparent));
    assert!(
        transparent.failures().is_empty(),
        "the stand-in itself changes the outcome:\n{}",
        transparent.failures().join("\n")
    );

    for (forget, symptom) in [
        ("env", "/env"),
        ("volume", "/spec/volumes"),
        ("volume-mount", "/volumeMounts"),
        ("token-annotation", "/serviceAccountToken/expirationSeconds"),
    ] {
        let report = setup.compare(&upstream, &setup.outcomes(Subject::Forgetful(forget)).await);
        let failures = report.failures();
        text.push_str(&setup.summary(&format!("forgetful_webhook forgetting {forget}"), &report));
        write_report("differential-self-test.md", &text);
        assert!(
            !failures.is_empty(),
            "a webhook forgetting {forget} passed the differential"
        );
        assert!(
            failures.iter().any(|f| f.contains(symptom)),
            "forgetting {forget}: no failure at {symptom}:\n{}",
            failures.join("\n")
        );
        println!(
            "forgetting {forget}: {} failures, e.g. {}",
            failures.len(),
            failures[0]
        );
    }
}
