//! End-to-end tests against a real kube-apiserver + etcd (tests/peers/install-kube.sh): our webhook is
//! registered with a MutatingWebhookConfiguration (url clientConfig, caBundle from the certs crate) and the
//! tests create ServiceAccounts and Pods through the API and check the pods the API server stored.
//!
//! `PODCRED_E2E_WEBHOOK=upstream` runs the same suite against the upstream webhook (tests that need our
//! extensions are skipped then, with a message), which shows where both agree.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use integration::kube::{ControlPlane, Registration, WebhookImpl, WebhookProcess};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};

const ROLE: &str = "arn:aws:iam::111122223333:role/s3-reader";
const IRSA_TOKEN_FILE: &str = "/var/run/secrets/eks.amazonaws.com/serviceaccount/token";

fn webhook_under_test() -> WebhookImpl {
    match std::env::var("PODCRED_E2E_WEBHOOK").as_deref() {
        Ok("upstream") => WebhookImpl::Upstream,
        _ => WebhookImpl::Podcred,
    }
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
    api.create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
}

async fn create_service_account(
    client: &Client,
    namespace: &str,
    name: &str,
    annotations: &[(&str, &str)],
) -> ServiceAccount {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.into()),
            annotations: Some(
                annotations
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Default::default()
        },
        ..Default::default()
    };
    api.create(&PostParams::default(), &sa)
        .await
        .unwrap_or_else(|e| panic!("create service account {namespace}/{name}: {e}"))
}

/// A pod as JSON (so tests can use fields regardless of our Rust types).
fn pod_json(name: &str, service_account: &str, spec_extra: Value) -> Value {
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "serviceAccountName": service_account,
            "containers": [{"name": "app", "image": "public.ecr.aws/docker/library/busybox:1.36"}],
        }
    });
    if let (Some(spec), Value::Object(extra)) = (pod["spec"].as_object_mut(), spec_extra) {
        spec.extend(extra);
    }
    pod
}

async fn create_pod(client: &Client, namespace: &str, pod: &Value, dry_run: bool) -> Value {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pod: Pod = serde_json::from_value(pod.clone()).expect("pod JSON is a Pod");
    let params = PostParams {
        dry_run,
        ..Default::default()
    };
    let stored = api
        .create(&params, &pod)
        .await
        .unwrap_or_else(|e| panic!("create pod in {namespace}: {e}"));
    serde_json::to_value(stored).expect("pod to JSON")
}

fn containers<'a>(pod: &'a Value, field: &str) -> Vec<&'a Value> {
    pod["spec"][field]
        .as_array()
        .map(|list| list.iter().collect())
        .unwrap_or_default()
}

fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    containers(pod, "containers")
        .into_iter()
        .chain(containers(pod, "initContainers"))
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name} in {pod:#}"))
}

fn env(container: &Value) -> Vec<(String, String)> {
    container["env"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|e| {
                    (
                        e["name"].as_str().unwrap_or_default().to_owned(),
                        e["value"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn env_value(container: &Value, name: &str) -> Option<String> {
    env(container)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
}

fn volume<'a>(pod: &'a Value, name: &str) -> Option<&'a Value> {
    pod["spec"]["volumes"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == name)
}

fn mount<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["volumeMounts"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == name)
}

fn is_irsa_mutated(pod: &Value) -> bool {
    containers(pod, "containers")
        .iter()
        .all(|c| env_value(c, "AWS_ROLE_ARN").is_some())
}

/// A control plane with the webhook under test registered as the chart registers it.
struct Cluster {
    plane: ControlPlane,
    client: Client,
    webhook: WebhookProcess,
}

impl Cluster {
    async fn start(extra_args: &[&str]) -> Self {
        let plane = ControlPlane::start().await;
        let client = plane.client().await;
        let webhook = WebhookProcess::start(&plane, webhook_under_test(), "webhook", extra_args).await;
        Registration::for_webhook("podcred-e2e", &webhook)
            .apply(&client)
            .await;
        let cluster = Self {
            plane,
            client,
            webhook,
        };
        cluster.wait_until_registration_is_live().await;
        cluster
    }

    /// The API server picks up new webhook configurations asynchronously: dry-run a pod for a role-annotated
    /// ServiceAccount until it comes back mutated.
    async fn wait_until_registration_is_live(&self) {
        create_namespace(&self.client, "e2e-probe").await;
        create_service_account(
            &self.client,
            "e2e-probe",
            "probe",
            &[("eks.amazonaws.com/role-arn", ROLE)],
        )
        .await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let api: Api<Pod> = Api::namespaced(self.client.clone(), "e2e-probe");
            let pod: Pod =
                serde_json::from_value(pod_json("probe", "probe", json!({}))).expect("pod");
            let params = PostParams {
                dry_run: true,
                ..Default::default()
            };
            if let Ok(pod) = api.create(&params, &pod).await {
                if is_irsa_mutated(&serde_json::to_value(pod).expect("json")) {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "webhook registration not live after 30 s; webhook log:\n{}",
                self.webhook.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test]
#[ignore = "needs peers: run make test"]
async fn control_plane_stores_pods_and_issues_service_account_tokens() {
    let plane = ControlPlane::start().await;
    let client = plane.client().await;
    create_namespace(&client, "peer-check").await;
    create_service_account(&client, "peer-check", "reader", &[]).await;
    let stored = create_pod(
        &client,
        "peer-check",
        &pod_json("plain", "reader", json!({})),
        false,
    )
    .await;
    assert_eq!(stored["spec"]["serviceAccountName"], "reader");
    assert_eq!(stored["status"]["phase"], "Pending");

    let sa: Api<ServiceAccount> = Api::namespaced(client.clone(), "peer-check");
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec!["sts.amazonaws.com".into()],
            expiration_seconds: Some(3600),
            bound_object_ref: None,
        },
        ..Default::default()
    };
    let issued = sa
        .create_token_request("reader", &PostParams::default(), &request)
        .await
        .expect("TokenRequest");
    let token = issued.status.expect("token status").token;
    let claims = jwt_claims(&token);
    assert_eq!(claims["aud"], json!(["sts.amazonaws.com"]));
    assert_eq!(claims["sub"], "system:serviceaccount:peer-check:reader");
    assert_eq!(
        claims["iss"],
        "https://kubernetes.default.svc.cluster.local"
    );
}

fn jwt_claims(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("JWT has a payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("JWT payload is base64url");
    serde_json::from_slice(&bytes).expect("JWT payload is JSON")
}
