//! The seed's flow with a provisioned proxy, on a real node (tests/src/node.rs): the images of `make images`
//! imported into containerd, the chart installed with the webhook, the credproxy sidecar and the gateway
//! controller (a pod, from the gateway image), the CRDs installed (Gateway API v1.6.3, our Backend and
//! GatewayParameters), then only `kubectl apply` of the seed's objects — and the seed's curl against the pod of
//! `deployment/http` that the controller provisioned. STS is the moto wrapper (web-identity checks), Lambda the
//! seed's Node.js `echo` in serverless-offline, both on the host at the node's bridge address.
//!
//! What differs from the seed's text, because this node is not AWS: the GatewayParameters also give the proxy
//! `AWS_ENDPOINT_URL_LAMBDA` (serverless-offline) and the API server's address, both through kgateway's
//! `kube.envoyContainer.env`; the chart gives the sidecar moto's STS endpoint (`sidecar.env`) and the proxies
//! `imagePullPolicy: Never` (local images).

use std::time::{Duration, Instant};

use integration::kube::{gateway_api_crds, yaml_values};
use integration::moto::{Moto, MotoOptions, ACCOUNT};
use integration::node::{
    container_log, create_object, image_archives, running_pods, seed_curl, wait_for, Node,
    SEED_RESPONSE,
};
use integration::serverless::ServerlessOffline;
use integration::workspace_root;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{DynamicObject, ListParams};
use kube::{Api, Client};
use serde_json::{json, Value};

const RELEASE: &str = "podcred-webhook";
const SYSTEM_NAMESPACE: &str = "podcred-system";
const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(180);

/// Creates `object`, retrying while its kind is not served yet (a CRD created a moment ago).
async fn apply(client: &Client, object: Value) {
    let api_version = object["apiVersion"]
        .as_str()
        .expect("apiVersion")
        .to_string();
    let kind = object["kind"].as_str().expect("kind").to_string();
    let (group, version) = api_version
        .rsplit_once('/')
        .unwrap_or(("", api_version.as_str()));
    let gvk = kube::api::GroupVersionKind::gvk(group, version, &kind);
    wait_for(
        Duration::from_secs(30),
        &format!("{kind} served"),
        || async {
            kube::discovery::pinned_kind(client, &gvk)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        },
    )
    .await;
    let object: DynamicObject = serde_json::from_value(object).expect("object");
    create_object(client, object).await;
}

async fn pod_summary(client: &Client, namespace: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods.list(&ListParams::default()).await;
    let Ok(list) = list else {
        return "(cannot list pods)".into();
    };
    list.items
        .iter()
        .map(|p| {
            let status = p.status.clone().unwrap_or_default();
            let states: Vec<String> = status
                .init_container_statuses
                .unwrap_or_default()
                .into_iter()
                .chain(status.container_statuses.unwrap_or_default())
                .map(|c| format!("{}={:?}", c.name, c.state))
                .collect();
            format!(
                "{} {:?} {}",
                p.metadata.name.clone().unwrap_or_default(),
                status.phase,
                states.join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn wait_rollout(client: &Client, namespace: &str, name: &str, what: &str) {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let started = Instant::now();
    wait_for(ROLLOUT_TIMEOUT, what, || async {
        let d = api.get(name).await.map_err(|e| e.to_string())?;
        let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let status = d.status.clone().unwrap_or_default();
        if status.ready_replicas.unwrap_or(0) == wanted && status.replicas.unwrap_or(0) == wanted {
            Ok(())
        } else {
            Err(format!(
                "status {status:?}; pods:\n{}",
                pod_summary(client, namespace).await
            ))
        }
    })
    .await;
    eprintln!("{what}: {:.1} s", started.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs peers: run make test"]
async fn kubectl_apply_of_the_seeds_objects_gives_a_provisioned_proxy_that_answers_the_seeds_curl()
{
    let mut crds = gateway_api_crds();
    let node = Node::start(&image_archives()).await;
    let client = node.client().await;
    let host = node.host_ip();
    let moto = Moto::start(MotoOptions {
        wrapped: true,
        verify_web_identity: true,
        port: None,
        host: Some(host),
    });
    let allow_invoke = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": "*"}]});
    moto.create_role("lambda-role", Some(&allow_invoke));
    let sls = ServerlessOffline::start_on(host);

    // CRDs: upstream's Gateway API and ours.
    crds.push(workspace_root().join("deploy/crds/gateway.kgateway.dev_backends.yaml"));
    crds.push(workspace_root().join("deploy/crds/gateway.kgateway.dev_gatewayparameters.yaml"));
    for file in crds {
        for crd in yaml_values(&std::fs::read_to_string(file).expect("CRD")) {
            apply(&client, crd).await;
        }
    }

    // The chart: webhook with the sidecar (moto's STS for it), the gateway controller and GatewayClass kgateway.
    let [(host_key, host_value), (port_key, port_value)] = node.in_cluster_env();
    let chart = workspace_root().join("deploy/helm/podcred");
    let started = Instant::now();
    node.helm(&[
        "install",
        RELEASE,
        &chart.display().to_string(),
        "--namespace",
        SYSTEM_NAMESPACE,
        "--create-namespace",
        "--set",
        "pki.certManager.enabled=false",
        "--set",
        "image.pullPolicy=Never",
        "--set",
        "sidecar.enabled=true",
        "--set",
        "sidecar.image.pullPolicy=Never",
        "--set-string",
        &format!("sidecar.env.AWS_ENDPOINT_URL_STS={}", moto.endpoint()),
        "--set",
        "mutatingWebhook.failurePolicy=Fail",
        "--set",
        &format!("config.extraEnv[0].name={host_key}"),
        "--set-string",
        &format!("config.extraEnv[0].value={host_value}"),
        "--set",
        &format!("config.extraEnv[1].name={port_key}"),
        "--set-string",
        &format!("config.extraEnv[1].value={port_value}"),
        "--set",
        "gatewayController.enabled=true",
        "--set",
        "gatewayController.image.pullPolicy=Never",
        "--set",
        &format!("gatewayController.extraEnv[0].name={host_key}"),
        "--set-string",
        &format!("gatewayController.extraEnv[0].value={host_value}"),
        "--set",
        &format!("gatewayController.extraEnv[1].name={port_key}"),
        "--set-string",
        &format!("gatewayController.extraEnv[1].value={port_value}"),
        "--wait",
        "--timeout",
        "180s",
    ]);
    wait_rollout(&client, SYSTEM_NAMESPACE, RELEASE, "webhook rollout").await;
    let controller = format!("{RELEASE}-gateway-controller");
    wait_rollout(&client, SYSTEM_NAMESPACE, &controller, "controller rollout").await;
    eprintln!("helm install: {:.1} s", started.elapsed().as_secs_f64());
    // With failurePolicy Fail a pod is only admitted once the API server reaches the webhook's Service.
    let probe: Pod = serde_json::from_value(json!({
        "metadata": {"name": "admission-check"},
        "spec": {"containers": [{"name": "app", "image": "ghcr.io/podcred/gateway:0.1.0"}]}
    }))
    .expect("pod");
    let default_pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let dry_run = kube::api::PostParams {
        dry_run: true,
        ..kube::api::PostParams::default()
    };
    wait_for(
        Duration::from_secs(60),
        "the first admission through the webhook",
        || async {
            default_pods
                .create(&dry_run, &probe)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        },
    )
    .await;

    // `kubectl apply` of the seed's objects (AWS_ACCOUNT_ID = moto's account, namespace kgateway-system).
    apply(
        &client,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kgateway-system"}}),
    )
    .await;
    let parameters = format!(
        r#"
apiVersion: gateway.kgateway.dev/v1alpha1
kind: GatewayParameters
metadata:
  name: http-lambda
  namespace: kgateway-system
spec:
  kube:
    serviceAccount:
      extraAnnotations:
        eks.amazonaws.com/role-arn: arn:aws:iam::{ACCOUNT}:role/lambda-role
    envoyContainer:
      env:
      - name: AWS_ENDPOINT_URL_LAMBDA
        value: {lambda}
      - name: {host_key}
        value: "{host_value}"
      - name: {port_key}
        value: "{port_value}"
"#,
        lambda = sls.endpoint()
    );
    let seed = std::fs::read_to_string(workspace_root().join("gateway/tests/fixtures/seed.yaml"))
        .expect("seed")
        .replace("123456789012", ACCOUNT);
    let started = Instant::now();
    for object in yaml_values(&parameters)
        .into_iter()
        .chain(yaml_values(&seed))
    {
        apply(&client, object).await;
    }

    // The controller provisions `http`; the pods get the credproxy sidecar; the seed's curl answers.
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "kgateway-system");
    let sa = wait_for(
        Duration::from_secs(60),
        "ServiceAccount kgateway-system/http",
        || async {
            sas.get_opt("http")
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| "not yet".to_string())
        },
    )
    .await;
    assert_eq!(
        sa.metadata
            .annotations
            .unwrap_or_default()
            .get("eks.amazonaws.com/role-arn")
            .map(String::as_str),
        Some(format!("arn:aws:iam::{ACCOUNT}:role/lambda-role").as_str())
    );
    wait_rollout(
        &client,
        "kgateway-system",
        "http",
        "provisioned proxy rollout",
    )
    .await;
    eprintln!(
        "seed objects applied → proxy ready: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let pods = running_pods(
        &client,
        "kgateway-system",
        "gateway.networking.k8s.io/gateway-name=http",
    )
    .await;
    assert_eq!(
        pods.len(),
        1,
        "{}",
        pod_summary(&client, "kgateway-system").await
    );
    let pod = &pods[0];
    let name = pod.metadata.name.clone().expect("name");
    let spec = pod.spec.clone().expect("spec");
    let sidecar = &spec.init_containers.as_ref().expect("init containers")[0];
    assert_eq!(
        sidecar.name, "credproxy",
        "the webhook added the sidecar the pod asked for"
    );
    assert_eq!(spec.service_account_name.as_deref(), Some("http"));
    let ip = pod.status.clone().and_then(|s| s.pod_ip).expect("pod IP");
    let body = wait_for(
        Duration::from_secs(30),
        "the seed's curl through the provisioned proxy",
        || async { seed_curl(&ip) },
    )
    .await;
    assert_eq!(body, SEED_RESPONSE);
    // Credentials came from moto's STS through credproxy: temporary (ASIA) keys.
    let log = container_log(&client, "kgateway-system", &name, "gateway").await;
    assert!(log.contains("ASIA"), "gateway log:\n{log}");
    let controller_pods = running_pods(
        &client,
        SYSTEM_NAMESPACE,
        &format!("app.kubernetes.io/name={controller}"),
    )
    .await;
    assert_eq!(controller_pods.len(), 2, "two controller replicas");
    node.shutdown().await;
}
