//! The kube-apiserver end-to-end tests' shared ground (`tests/tests/kube_*.rs`): a control plane with the
//! webhook under test registered as the chart registers it ([`Cluster`]), object creation helpers, and accessors
//! for the pods the API server stored.
//!
//! `PODCRED_E2E_WEBHOOK=upstream` puts the upstream webhook in place of ours ([`webhook_under_test`]).

use crate::kube::{ControlPlane, Registration, WebhookImpl, WebhookProcess};
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub const ROLE: &str = "arn:aws:iam::111122223333:role/s3-reader";

pub const IRSA_TOKEN_FILE: &str = "/var/run/secrets/eks.amazonaws.com/serviceaccount/token";

pub fn webhook_under_test() -> WebhookImpl {
    match std::env::var("PODCRED_E2E_WEBHOOK").as_deref() {
        Ok("upstream") => WebhookImpl::Upstream,
        _ => WebhookImpl::Podcred,
    }
}

pub async fn create_namespace(client: &Client, name: &str) {
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

/// A ServiceAccount annotated with [`ROLE`] only (what most tests need).
pub async fn create_role_annotated_service_account(
    client: &Client,
    namespace: &str,
    name: &str,
) -> ServiceAccount {
    create_service_account(
        client,
        namespace,
        name,
        &[("eks.amazonaws.com/role-arn", ROLE)],
    )
    .await
}

pub async fn create_service_account(
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
pub fn pod_json(name: &str, service_account: &str, spec_extra: Value) -> Value {
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

pub async fn create_pod(client: &Client, namespace: &str, pod: &Value, dry_run: bool) -> Value {
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

pub fn containers<'a>(pod: &'a Value, field: &str) -> Vec<&'a Value> {
    pod["spec"][field]
        .as_array()
        .map(|list| list.iter().collect())
        .unwrap_or_default()
}

pub fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    containers(pod, "containers")
        .into_iter()
        .chain(containers(pod, "initContainers"))
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name} in {pod:#}"))
}

pub fn env(container: &Value) -> Vec<(String, String)> {
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

pub fn env_value(container: &Value, name: &str) -> Option<String> {
    env(container)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
}

pub fn volume<'a>(pod: &'a Value, name: &str) -> Option<&'a Value> {
    pod["spec"]["volumes"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == name)
}

pub fn mount<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["volumeMounts"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == name)
}

pub fn is_irsa_mutated(pod: &Value) -> bool {
    containers(pod, "containers")
        .iter()
        .all(|c| env_value(c, "AWS_ROLE_ARN").is_some())
}

/// Calls `attempt` every `interval` until it returns a value; fails with `failure()` once `timeout` has passed.
pub async fn retry_until<T>(
    timeout: Duration,
    interval: Duration,
    mut attempt: impl AsyncFnMut() -> Option<T>,
    failure: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = attempt().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{}", failure());
        tokio::time::sleep(interval).await;
    }
}

/// Dry-runs `pod` until the webhook mutates it (IRSA), failing with `failure()` after `timeout`.
pub async fn dry_run_until_mutated(
    client: &Client,
    namespace: &str,
    pod: &Value,
    timeout: Duration,
    failure: impl Fn() -> String,
) {
    retry_until(
        timeout,
        Duration::from_millis(200),
        async || is_irsa_mutated(&create_pod(client, namespace, pod, true).await).then_some(()),
        failure,
    )
    .await
}

/// A control plane with the webhook under test registered as the chart registers it.
pub struct Cluster {
    pub plane: ControlPlane,
    pub client: Client,
    pub webhook: WebhookProcess,
}

impl Cluster {
    pub async fn start(extra_args: &[&str]) -> Self {
        Self::start_with(extra_args, |_| {}).await
    }

    /// Like [`Cluster::start`], with a chance to change the registration (review versions, policies).
    pub async fn start_with(
        extra_args: &[&str],
        customise: impl FnOnce(&mut Registration),
    ) -> Self {
        let started = Instant::now();
        let plane = ControlPlane::start().await;
        eprintln!("control plane ready in {:?}", started.elapsed());
        let client = plane.client().await;
        // Tests create a ServiceAccount and then a pod right away; under load the watch can deliver the SA after
        // the pod's admission. A grace period (served by the webhook's direct lookup) makes that deterministic,
        // unless the test sets its own.
        let mut args: Vec<&str> = extra_args.to_vec();
        if !args
            .iter()
            .any(|a| a.starts_with("--service-account-lookup-grace-period"))
        {
            args.push("--service-account-lookup-grace-period=3s");
        }
        let webhook = WebhookProcess::start(&plane, webhook_under_test(), "webhook", &args).await;
        let mut registration = Registration::for_webhook("podcred-e2e", &webhook);
        customise(&mut registration);
        registration.apply(&client).await;
        let cluster = Self {
            plane,
            client,
            webhook,
        };
        cluster.wait_until_registration_is_live().await;
        eprintln!("webhook registered and live after {:?}", started.elapsed());
        cluster
    }

    /// The API server picks up new webhook configurations asynchronously: dry-run a pod for a role-annotated
    /// ServiceAccount until it comes back mutated.
    pub async fn wait_until_registration_is_live(&self) {
        create_namespace(&self.client, "e2e-probe").await;
        create_role_annotated_service_account(&self.client, "e2e-probe", "probe").await;
        let api: Api<Pod> = Api::namespaced(self.client.clone(), "e2e-probe");
        let pod: Pod = serde_json::from_value(pod_json("probe", "probe", json!({}))).expect("pod");
        let params = PostParams {
            dry_run: true,
            ..Default::default()
        };
        // Unlike `create_pod`, a refused dry run is retried: the API server may not reach the webhook yet.
        retry_until(
            Duration::from_secs(30),
            Duration::from_millis(200),
            async || {
                let pod = api.create(&params, &pod).await.ok()?;
                is_irsa_mutated(&serde_json::to_value(pod).expect("json")).then_some(())
            },
            || {
                format!(
                    "webhook registration not live after 30 s; webhook log:\n{}",
                    self.webhook.log()
                )
            },
        )
        .await;
    }
}

/// Creates every object of a multi-document YAML with server-side dry-run (`dryRun=All`): the API server
/// runs defaulting, validation and admission but stores nothing (Namespaces excepted). Returns the kinds it could not resolve
/// (CRDs such as cert-manager's that this API server does not have).
pub async fn dry_run_apply(client: &Client, yaml: &str) -> Vec<String> {
    use kube::api::DynamicObject;
    use kube::discovery::Discovery;

    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .expect("API discovery");
    let mut unresolved = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(yaml) {
        let value: Value = serde::Deserialize::deserialize(document).expect("rendered YAML parses");
        if value.is_null() {
            continue;
        }
        let gvk = gvk_of(&value);
        let kind = gvk.kind.as_str();
        let Some((resource, capabilities)) = discovery.resolve_gvk(&gvk) else {
            unresolved.push(format!("{}/{kind}", gvk.api_version()));
            continue;
        };
        let object: DynamicObject = serde_json::from_value(value.clone()).expect("object");
        let name = object.metadata.name.clone().unwrap_or_default();
        let api = dynamic_api(client, &resource, &capabilities, &object);
        // Namespaces are created for real: dry-run objects inside them need them to exist.
        let params = PostParams {
            dry_run: kind != "Namespace",
            ..Default::default()
        };
        if let Err(error) = api.create(&params, &object).await {
            let exists = matches!(&error, kube::Error::Api(s) if s.code == 409);
            assert!(
                exists && kind == "Namespace",
                "API server rejected {kind} {name}: {error}"
            );
        }
    }
    unresolved
}

/// The group/version/kind of a manifest object.
pub fn gvk_of(value: &Value) -> kube::api::GroupVersionKind {
    let api_version = value["apiVersion"].as_str().expect("apiVersion");
    let kind = value["kind"].as_str().expect("kind");
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    kube::api::GroupVersionKind::gvk(group, version, kind)
}

/// The API that serves `object` (namespaced ones in their namespace, `default` when it has none).
pub fn dynamic_api(
    client: &Client,
    resource: &kube::api::ApiResource,
    capabilities: &kube::discovery::ApiCapabilities,
    object: &kube::api::DynamicObject,
) -> Api<kube::api::DynamicObject> {
    match capabilities.scope {
        kube::discovery::Scope::Namespaced => Api::namespaced_with(
            client.clone(),
            object.metadata.namespace.as_deref().unwrap_or("default"),
            resource,
        ),
        kube::discovery::Scope::Cluster => Api::all_with(client.clone(), resource),
    }
}

/// Creates every object of a multi-document YAML for real (RBAC set-up).
pub async fn create_for_real(client: &Client, yaml: &str) {
    use kube::api::DynamicObject;
    use kube::discovery::Discovery;
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .expect("API discovery");
    for document in serde_yaml_ng::Deserializer::from_str(yaml) {
        let value: Value = serde::Deserialize::deserialize(document).expect("YAML");
        if value.is_null() {
            continue;
        }
        let gvk = gvk_of(&value);
        let (resource, capabilities) = discovery.resolve_gvk(&gvk).expect("known kind");
        let object: DynamicObject = serde_json::from_value(value).expect("object");
        let api = dynamic_api(client, &resource, &capabilities, &object);
        api.create(&PostParams::default(), &object)
            .await
            .unwrap_or_else(|e| panic!("create {gvk:?}: {e}"));
    }
}

/// The documents of a multi-document YAML text, as JSON values.
pub fn yaml_documents(text: &str) -> impl Iterator<Item = Value> + '_ {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| -> Value { serde::Deserialize::deserialize(doc).expect("YAML") })
}

pub fn jwt_claims(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("JWT has a payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("JWT payload is base64url");
    serde_json::from_slice(&bytes).expect("JWT payload is JSON")
}
