//! The deployed shape on a real node (tests/src/node.rs): the images of `make images` imported into
//! containerd, the Helm chart installed with them, and the seed's flow as pods — the kubelet projects the
//! token, the native credproxy sidecar starts first, the gateway signs Lambda Invoke calls with its
//! credentials. STS is the moto wrapper (SigV4/IAM checks, web-identity checks) and Lambda the seed's Node.js
//! `echo` in serverless-offline, both on the host at the node's bridge address.
//!
//! One node per test binary run: the steps share it (a node costs ~30 s and ~1 GiB), in order, each
//! asserting what the issue asks: install; the seed's curl; the STS endpoint reaching the sidecar from the
//! app's env and from the chart's `sidecar.env`; admissions during a webhook rolling restart; a killed
//! sidecar; the probes the kubelet runs.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use integration::moto::{Moto, MotoOptions, ACCOUNT};
use integration::node::{
    container_log, image_archives, running_pods, seed_curl, wait_for, Node, SEED_RESPONSE,
};
use integration::serverless::ServerlessOffline;
use integration::workspace_root;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

/// The response the seed documents, byte for byte.
const RELEASE: &str = "podcred-webhook";
const SYSTEM_NAMESPACE: &str = "podcred-system";
const GATEWAY_NAMESPACE: &str = "podcred-gateway";
const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(180);

/// `podcred-whoami` (tests/src/bin) as an image on the same base, stripped: `ghcr.io/podcred/podcred-whoami`.
fn whoami_image(dir: &std::path::Path) -> PathBuf {
    let binary = dir.join("podcred-whoami");
    let status = Command::new("strip")
        .arg("-o")
        .arg(&binary)
        .arg(integration::workspace_bin("podcred-whoami"))
        .status()
        .expect("run strip");
    assert!(status.success());
    let status = Command::new("python3")
        .arg(workspace_root().join("deploy/images/build-images.py"))
        .arg("--bin-dir")
        .arg(dir)
        .arg("--out")
        .arg(dir)
        .args(["--tag", env!("CARGO_PKG_VERSION"), "podcred-whoami"])
        .arg("--debs")
        .arg(integration::cache_dir().join("debs"))
        .status()
        .expect("run build-images.py");
    assert!(status.success());
    dir.join("podcred-whoami.tar")
}

/// Runs `podcred-whoami` in a pod of namespace `sdk` as ServiceAccount `sdk` (IRSA, or with the credproxy
/// sidecar when `sidecar`), STS at `sts`; returns the pod (after it succeeded) and the ARN it printed.
async fn run_whoami(client: &Client, name: &str, sidecar: bool, sts: &str) -> (Pod, String) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "sdk");
    let annotations = if sidecar {
        json!({"podcred.dev/inject": "true"})
    } else {
        json!({})
    };
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "serviceAccountName": "sdk",
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "app",
                "image": format!("ghcr.io/podcred/podcred-whoami:{}", env!("CARGO_PKG_VERSION")),
                "imagePullPolicy": "Never",
                "env": [{"name": "AWS_ENDPOINT_URL_STS", "value": sts}, {"name": "AWS_REGION", "value": "us-east-1"}],
                "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                                    "capabilities": {"drop": ["ALL"]}}
            }]
        }
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create whoami pod");
    let finished = wait_for(
        Duration::from_secs(120),
        &format!("pod {name} to finish"),
        || async {
            let pod = pods.get(name).await.map_err(|e| e.to_string())?;
            match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
                Some("Succeeded") | Some("Failed") => Ok(pod),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let log = container_log(client, "sdk", name, "app").await;
    assert_eq!(
        finished.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded"),
        "{name}: {log}"
    );
    (finished, log.trim().to_string())
}

/// Upstream's webhook binary (tests/peers/install-upstream-webhook.sh) as `/webhook` on the same base:
/// `ghcr.io/podcred-upstream/webhook:v0.6.17`.
fn upstream_webhook_image(dir: &std::path::Path) -> PathBuf {
    let bin_dir = dir.join("upstream");
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::fs::copy(
        integration::kube::WebhookImpl::Upstream.binary(),
        bin_dir.join("webhook"),
    )
    .expect("copy the upstream webhook binary");
    let status = Command::new("python3")
        .arg(workspace_root().join("deploy/images/build-images.py"))
        .arg("--bin-dir")
        .arg(&bin_dir)
        .arg("--out")
        .arg(&bin_dir)
        .args([
            "--registry",
            "ghcr.io/podcred-upstream",
            "--tag",
            "v0.6.17",
            "webhook",
        ])
        .arg("--debs")
        .arg(integration::cache_dir().join("debs"))
        .status()
        .expect("run build-images.py");
    assert!(status.success());
    bin_dir.join("webhook.tar")
}

/// deploy/examples/gateway.yaml as a user applies it (`envsubst`), plus what this node needs: local images
/// (`imagePullPolicy: Never`), Lambda at serverless-offline, and — when `sts_endpoint` is given — the app's
/// own `AWS_ENDPOINT_URL_STS`, which the webhook must carry into the sidecar.
fn gateway_manifests(lambda_endpoint: &str, sts_endpoint: Option<&str>) -> String {
    let text = std::fs::read_to_string(workspace_root().join("deploy/examples/gateway.yaml"))
        .expect("read deploy/examples/gateway.yaml")
        .replace("${AWS_ACCOUNT_ID}", ACCOUNT)
        .replace("${AWS_LAMBDA_REGION}", "us-east-1");
    let mut out = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(&text) {
        let mut value: serde_json::Value =
            serde::Deserialize::deserialize(document).expect("example YAML");
        if value["kind"] == "Deployment" {
            let container = &mut value["spec"]["template"]["spec"]["containers"][0];
            container["imagePullPolicy"] = json!("Never");
            let env = container["env"].as_array_mut().expect("gateway env");
            env.push(json!({"name": "AWS_ENDPOINT_URL_LAMBDA", "value": lambda_endpoint}));
            if let Some(sts) = sts_endpoint {
                env.push(json!({"name": "AWS_ENDPOINT_URL_STS", "value": sts}));
            }
        }
        out.push(serde_yaml_ng::to_string(&value).expect("YAML"));
    }
    out.join("---\n")
}

async fn wait_rollout(client: &Client, namespace: &str, name: &str, what: &str) -> Deployment {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let started = Instant::now();
    let deployment = wait_for(ROLLOUT_TIMEOUT, what, || async {
        let d = api.get(name).await.map_err(|e| e.to_string())?;
        let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let generation = d.metadata.generation.unwrap_or(0);
        let status = d.status.clone().unwrap_or_default();
        let done = status.observed_generation.unwrap_or(0) >= generation
            && status.updated_replicas.unwrap_or(0) == wanted
            && status.ready_replicas.unwrap_or(0) == wanted
            && status.replicas.unwrap_or(0) == wanted;
        if done {
            Ok(d)
        } else {
            let summary = pod_summary(&pods).await;
            Err(format!("status {status:?}; pods: {summary}"))
        }
    })
    .await;
    eprintln!("{what}: {:.1} s", started.elapsed().as_secs_f64());
    deployment
}

/// Phase and container states of every pod (for failure messages).
async fn pod_summary(pods: &Api<Pod>) -> String {
    let list = pods
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    list.iter()
        .map(|p| {
            let status = p.status.clone().unwrap_or_default();
            let states: Vec<String> = status
                .init_container_statuses
                .unwrap_or_default()
                .into_iter()
                .chain(status.container_statuses.unwrap_or_default())
                .map(|c| {
                    format!(
                        "{}: ready={} restarts={} {:?}",
                        c.name, c.ready, c.restart_count, c.state
                    )
                })
                .collect();
            format!(
                "\n  {} {:?} {:?}",
                p.metadata.name.clone().unwrap_or_default(),
                status.phase,
                states
            )
        })
        .collect()
}

/// Waits until the webhook's Service routes only to pods of its current ReplicaSet: after a settings change
/// the old pods keep admitting (with the old settings) while they drain (preStop), so pods that depend on the
/// new settings are created after this.
async fn wait_old_webhook_pods_gone(client: &Client) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), SYSTEM_NAMESPACE);
    let endpoints: Api<k8s_openapi::api::core::v1::Endpoints> =
        Api::namespaced(client.clone(), SYSTEM_NAMESPACE);
    let started = Instant::now();
    wait_for(
        ROLLOUT_TIMEOUT,
        "old webhook pods gone from the Service",
        || async {
            let list = pods
                .list(
                    &ListParams::default().labels(&format!("app.kubernetes.io/instance={RELEASE}")),
                )
                .await
                .map_err(|e| e.to_string())?
                .items;
            if list.len() != 2 || list.iter().any(|p| p.metadata.deletion_timestamp.is_some()) {
                return Err(format!("{} webhook pods, some terminating", list.len()));
            }
            let mut pod_ips: Vec<String> = list
                .iter()
                .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
                .collect();
            let routed = endpoints.get(RELEASE).await.map_err(|e| e.to_string())?;
            let mut routed_ips: Vec<String> = routed
                .subsets
                .unwrap_or_default()
                .into_iter()
                .flat_map(|s| s.addresses.unwrap_or_default())
                .map(|a| a.ip)
                .collect();
            pod_ips.sort();
            routed_ips.sort();
            if pod_ips == routed_ips {
                Ok(())
            } else {
                Err(format!("pods {pod_ips:?}, endpoints {routed_ips:?}"))
            }
        },
    )
    .await;
    eprintln!(
        "old webhook pods drained: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

fn env_value(container: &Container, name: &str) -> Option<String> {
    container
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)
        .and_then(|e| e.value.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs peers: run make test"]
async fn the_chart_and_the_seeds_flow_run_as_pods_on_a_real_node() {
    let scratch = tempfile::tempdir().unwrap();
    let mut images = image_archives();
    images.push(whoami_image(scratch.path()));
    let node = Node::start(&images).await;
    let client = node.client().await;
    let host = node.host_ip();

    // 1. helm install of the chart with the local images, without cert-manager (the chart's own PKI).
    let started = Instant::now();
    let [(host_key, host_value), (port_key, port_value)] = node.in_cluster_env();
    let chart = workspace_root().join("deploy/helm/podcred");
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
        "--wait",
        "--timeout",
        "180s",
    ]);
    let webhook = wait_rollout(&client, SYSTEM_NAMESPACE, RELEASE, "webhook rollout").await;
    assert_eq!(webhook.status.unwrap().ready_replicas, Some(2));
    eprintln!("helm install: {:.1} s", started.elapsed().as_secs_f64());
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), SYSTEM_NAMESPACE);
    assert!(
        pdbs.get_opt(RELEASE).await.unwrap().is_some(),
        "PDB {RELEASE} missing"
    );
    // The API server reaches the webhook through its Service (endpoint IPs, aggregator routing) once the
    // endpoints are published, a moment after the pods are Ready: with failurePolicy Fail a pod is only
    // admitted when the call succeeds. Creating workloads before that makes their ReplicaSets back off.
    let started = Instant::now();
    let default_pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let probe_pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "admission-check"},
        "spec": {"containers": [{"name": "app", "image": "ghcr.io/podcred/gateway:0.1.0"}]}
    }))
    .unwrap();
    wait_for(
        Duration::from_secs(60),
        "the first admission through the webhook's Service",
        || async {
            default_pods
                .create(&dry_run, &probe_pod)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        },
    )
    .await;
    eprintln!(
        "webhook reachable through its Service after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let configs: Api<k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration> =
        Api::all(client.clone());
    let registered = configs.list(&ListParams::default()).await.unwrap().items;
    let hook = registered
        .iter()
        .flat_map(|c| c.webhooks.clone().unwrap_or_default())
        .find(|w| w.client_config.service.is_some())
        .expect("the chart registers the webhook through its Service");
    assert!(hook.client_config.url.is_none(), "{hook:?}");

    // 2. The seed's flow as pods: STS and Lambda on the host, reached at the bridge address.
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
    let started = Instant::now();
    node.create_yaml(&gateway_manifests(&sls.endpoint(), Some(&moto.endpoint())))
        .await;
    wait_rollout(
        &client,
        GATEWAY_NAMESPACE,
        "http",
        "gateway rollout (app's STS endpoint)",
    )
    .await;
    eprintln!(
        "seed flow pods ready: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let selector = "app.kubernetes.io/name=http-gateway";
    let gateways = running_pods(&client, GATEWAY_NAMESPACE, selector).await;
    assert_eq!(gateways.len(), 2);
    for pod in &gateways {
        let name = pod.metadata.name.clone().unwrap();
        let spec = pod.spec.clone().unwrap();
        // The native sidecar: first init container, restartPolicy Always, the STS endpoint carried over.
        let sidecar = &spec.init_containers.as_ref().expect("init containers")[0];
        assert_eq!(sidecar.name, "credproxy");
        assert_eq!(sidecar.restart_policy.as_deref(), Some("Always"));
        assert_eq!(
            env_value(sidecar, "AWS_ENDPOINT_URL_STS"),
            Some(moto.endpoint())
        );
        assert_eq!(
            env_value(sidecar, "AWS_ROLE_ARN").as_deref(),
            Some(format!("arn:aws:iam::{ACCOUNT}:role/lambda-role").as_str())
        );
        let app = &spec.containers[0];
        assert!(
            env_value(app, "AWS_ROLE_ARN").is_none(),
            "only the sidecar gets the role"
        );
        // The sidecar became ready (startup probe) before the gateway container started.
        let status = pod.status.clone().unwrap();
        let sidecar_started = status.init_container_statuses.unwrap()[0]
            .state
            .clone()
            .and_then(|s| s.running)
            .and_then(|r| r.started_at)
            .expect("credproxy running");
        let app_started = status.container_statuses.unwrap()[0]
            .state
            .clone()
            .and_then(|s| s.running)
            .and_then(|r| r.started_at)
            .expect("gateway running");
        assert!(
            app_started.0 >= sidecar_started.0,
            "{name}: gateway started before credproxy"
        );

        let ip = status.pod_ip.expect("pod IP");
        let body = seed_curl(&ip).unwrap_or_else(|e| {
            panic!(
                "{name}: {e}\nmoto log tail:\n{}",
                tail_text(&moto.log(), 20)
            )
        });
        assert_eq!(body, SEED_RESPONSE);
        // The credentials came from moto's STS through credproxy: temporary (ASIA) keys.
        let log = container_log(&client, GATEWAY_NAMESPACE, &name, "gateway").await;
        assert!(log.contains("ASIA"), "{name}: gateway log:\n{log}");
    }

    // 3. The STS endpoint from the chart (`sidecar.env`) instead of the app's env, applied by a rolling
    //    restart of the webhook during which pods are admitted continuously (failurePolicy Fail).
    let admissions = AdmissionProbe::start(client.clone()).await;
    let started = Instant::now();
    node.helm(&[
        "upgrade",
        RELEASE,
        &chart.display().to_string(),
        "--namespace",
        SYSTEM_NAMESPACE,
        "--reuse-values",
        "--set-string",
        &format!("sidecar.env.AWS_ENDPOINT_URL_STS={}", moto.endpoint()),
        "--wait",
        "--timeout",
        "180s",
    ]);
    wait_rollout(
        &client,
        SYSTEM_NAMESPACE,
        RELEASE,
        "webhook rolling restart",
    )
    .await;
    wait_old_webhook_pods_gone(&client).await;
    let (admitted, failed, unmutated) = admissions.stop().await;
    eprintln!(
        "webhook rolling restart ({:.1} s): {admitted} pods admitted, {failed} failed admissions, {unmutated} unmutated",
        started.elapsed().as_secs_f64()
    );
    assert!(
        admitted >= 10,
        "too few admissions during the restart: {admitted}"
    );
    assert_eq!(
        (failed, unmutated),
        (0, 0),
        "admissions failed during the webhook restart"
    );

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), GATEWAY_NAMESPACE);
    let without_app_sts = gateway_manifests(&sls.endpoint(), None);
    let deployment_doc = without_app_sts
        .split("---\n")
        .find(|d| d.contains("kind: Deployment"))
        .expect("Deployment document");
    let deployment: Deployment = serde_yaml_ng::from_str(deployment_doc).expect("Deployment");
    deployments
        .replace("http", &PostParams::default(), &{
            let mut d = deployment;
            d.metadata.resource_version = deployments
                .get("http")
                .await
                .unwrap()
                .metadata
                .resource_version;
            d
        })
        .await
        .expect("replace gateway Deployment");
    wait_rollout(
        &client,
        GATEWAY_NAMESPACE,
        "http",
        "gateway rollout (chart's sidecar.env)",
    )
    .await;
    for pod in running_pods(&client, GATEWAY_NAMESPACE, selector).await {
        let spec = pod.spec.clone().unwrap();
        assert!(env_value(&spec.containers[0], "AWS_ENDPOINT_URL_STS").is_none());
        let sidecar = &spec.init_containers.unwrap()[0];
        assert_eq!(
            env_value(sidecar, "AWS_ENDPOINT_URL_STS"),
            Some(moto.endpoint())
        );
        let ip = pod.status.unwrap().pod_ip.unwrap();
        assert_eq!(seed_curl(&ip).unwrap(), SEED_RESPONSE);
    }

    // 4. The credproxy sidecar killed: the kubelet restarts it, the app's auth token stays the same, and
    //    the seed's curl keeps working.
    let pod = running_pods(&client, GATEWAY_NAMESPACE, selector)
        .await
        .remove(0);
    let pod_name = pod.metadata.name.clone().unwrap();
    let uid = pod.metadata.uid.clone().unwrap();
    let ip = pod.status.clone().unwrap().pod_ip.unwrap();
    let token_file = node
        .run_dir()
        .join("node/kubelet/pods")
        .join(&uid)
        .join("volumes/kubernetes.io~empty-dir/podcred-auth/token");
    let token_before = std::fs::read(&token_file).expect("auth token on the emptyDir");
    let sidecar_status = pod.status.clone().unwrap().init_container_statuses.unwrap()[0].clone();
    let container_id = sidecar_status
        .container_id
        .clone()
        .unwrap()
        .trim_start_matches("containerd://")
        .to_string();
    node.ctr(&["tasks", "kill", "--signal", "SIGKILL", &container_id]);
    let killed_at = Instant::now();
    let pods: Api<Pod> = Api::namespaced(client.clone(), GATEWAY_NAMESPACE);
    let (mut failures, mut longest_outage, mut outage_start) = (0usize, Duration::ZERO, None);
    let restarted = loop {
        match seed_curl(&ip) {
            Ok(_) => {
                if let Some(start) = outage_start.take() {
                    longest_outage = longest_outage.max(Instant::now() - start);
                }
            }
            Err(_) => {
                failures += 1;
                outage_start.get_or_insert_with(Instant::now);
            }
        }
        let current = pods.get(&pod_name).await.unwrap();
        let status = current.status.unwrap().init_container_statuses.unwrap()[0].clone();
        if status.restart_count > sidecar_status.restart_count && status.ready {
            break killed_at.elapsed();
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(90),
            "credproxy not restarted: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(seed_curl(&ip).unwrap(), SEED_RESPONSE);
    let token_after = std::fs::read(&token_file).expect("auth token after the restart");
    assert!(
        token_before == token_after,
        "the restarted credproxy replaced the app's auth token"
    );
    eprintln!(
        "credproxy killed: restarted and ready after {:.1} s; {failures} failed requests, longest outage {:.1} s",
        restarted.as_secs_f64(),
        longest_outage.as_secs_f64()
    );
    assert!(
        longest_outage <= restarted,
        "requests failed for longer than the restart"
    );

    // 6. The sidecar's startup probe gates the app container: while STS does not answer the gateway
    //    container is not started; once an STS answers (moto started late on the pod's STS port), it is.
    let late_port = integration::free_port();
    let late_sts = format!("http://{host}:{late_port}");
    let manifests = gateway_manifests(&sls.endpoint(), Some(&late_sts));
    let template: Deployment = serde_yaml_ng::from_str(
        manifests
            .split("---\n")
            .find(|d| d.contains("kind: Deployment"))
            .unwrap(),
    )
    .unwrap();
    let mut gated: Pod = Pod {
        metadata: template.spec.clone().unwrap().template.metadata.unwrap(),
        spec: template.spec.unwrap().template.spec,
        status: None,
    };
    gated.metadata.name = Some("gated".into());
    // Not the Deployment's labels: its ReplicaSet would adopt (and delete) the pod.
    gated.metadata.labels = Some([("app".to_string(), "gated".to_string())].into());
    pods.create(&PostParams::default(), &gated)
        .await
        .expect("create pod gated");
    let gate_started = Instant::now();
    let mut sidecar_running_since: Option<Instant> = None;
    loop {
        let pod = pods.get("gated").await.unwrap();
        let status = pod.status.clone().unwrap_or_default();
        let sidecar_running = status
            .init_container_statuses
            .unwrap_or_default()
            .first()
            .is_some_and(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()));
        let app_running = status
            .container_statuses
            .unwrap_or_default()
            .first()
            .is_some_and(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()));
        assert!(
            !app_running,
            "the gateway started while its sidecar had no credentials"
        );
        if sidecar_running {
            let since = *sidecar_running_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= Duration::from_secs(5) {
                break;
            }
        }
        assert!(
            gate_started.elapsed() < Duration::from_secs(90),
            "credproxy of pod gated never started"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let late_moto = Moto::start(MotoOptions {
        wrapped: true,
        verify_web_identity: true,
        port: Some(late_port),
        host: Some(host),
    });
    late_moto.create_role("lambda-role", Some(&allow_invoke));
    let sts_up = Instant::now();
    let ip = wait_for(
        Duration::from_secs(90),
        "pod gated Ready once STS answers",
        || async {
            let pod = pods.get("gated").await.map_err(|e| e.to_string())?;
            let status = pod.status.unwrap_or_default();
            let ready = status
                .conditions
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            match (ready, status.pod_ip) {
                (true, Some(ip)) => Ok(ip),
                _ => Err("not ready".to_string()),
            }
        },
    )
    .await;
    assert_eq!(seed_curl(&ip).unwrap(), SEED_RESPONSE);
    eprintln!(
        "startup gate: gateway held back {:.1} s without STS, started {:.1} s after STS came up",
        sts_up.duration_since(gate_started).as_secs_f64(),
        sts_up.elapsed().as_secs_f64()
    );

    // 7. A real SDK in a real pod: aws-config's default chain, `sts get-caller-identity` against the moto
    //    wrapper (SigV4 checked), under plain IRSA (the SDK exchanges the projected token itself) and with the
    //    credproxy sidecar (the SDK reads the container-credentials endpoint).
    node.create_yaml(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: sdk}}\n---\napiVersion: v1\nkind: ServiceAccount\n\
         metadata:\n  name: sdk\n  namespace: sdk\n  annotations:\n    eks.amazonaws.com/role-arn: \
         arn:aws:iam::{ACCOUNT}:role/sdk-role\n"
    ))
    .await;
    moto.create_role("sdk-role", None);
    let expected_arn = format!("arn:aws:sts::{ACCOUNT}:assumed-role/sdk-role/");
    let (irsa_pod, irsa_arn) = run_whoami(&client, "whoami-irsa", false, &moto.endpoint()).await;
    let app = &irsa_pod.spec.as_ref().unwrap().containers[0];
    assert!(
        env_value(app, "AWS_ROLE_ARN").is_some(),
        "IRSA pod not mutated"
    );
    assert!(irsa_arn.starts_with(&expected_arn), "IRSA: {irsa_arn}");
    let (sidecar_pod, sidecar_arn) =
        run_whoami(&client, "whoami-sidecar", true, &moto.endpoint()).await;
    let spec = sidecar_pod.spec.as_ref().unwrap();
    assert!(env_value(&spec.containers[0], "AWS_ROLE_ARN").is_none());
    assert!(env_value(&spec.containers[0], "AWS_CONTAINER_CREDENTIALS_FULL_URI").is_some());
    assert_eq!(spec.init_containers.as_ref().unwrap()[0].name, "credproxy");
    assert!(
        sidecar_arn.starts_with(&expected_arn),
        "sidecar: {sidecar_arn}"
    );
    eprintln!("SDK app: IRSA -> {irsa_arn}; sidecar -> {sidecar_arn}");

    // 8. The drop-in claim: the same chart with upstream's webhook image (v0.6.17 from the Go module proxy, on
    //    the same base, binary at /webhook as in upstream's image) gives the IRSA pod the same AWS env and
    //    the same identity. Upstream has no /readyz, no --log-format, no sidecar and answers v1beta1 only.
    let upstream = upstream_webhook_image(scratch.path());
    node.import_image(&upstream);
    node.helm(&[
        "upgrade",
        RELEASE,
        &chart.display().to_string(),
        "--namespace",
        SYSTEM_NAMESPACE,
        "--reuse-values",
        "--set",
        "image.registry=ghcr.io",
        "--set",
        "image.repository=podcred-upstream/webhook",
        "--set",
        "image.tag=v0.6.17",
        "--set",
        "sidecar.enabled=false",
        "--set",
        "config.logFormat=",
        "--set",
        "readinessProbe.httpGet.path=/healthz",
        "--set",
        "mutatingWebhook.admissionReviewVersions={v1beta1}",
        "--wait",
        "--timeout",
        "180s",
    ]);
    wait_rollout(
        &client,
        SYSTEM_NAMESPACE,
        RELEASE,
        "upstream webhook rollout",
    )
    .await;
    wait_old_webhook_pods_gone(&client).await;
    let (upstream_pod, upstream_arn) =
        run_whoami(&client, "whoami-irsa-upstream", false, &moto.endpoint()).await;
    assert!(
        upstream_arn.starts_with(&expected_arn),
        "upstream IRSA: {upstream_arn}"
    );
    let aws_env = |pod: &Pod| -> Vec<(String, Option<String>)> {
        pod.spec.as_ref().unwrap().containers[0]
            .env
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.name.starts_with("AWS_"))
            .map(|e| (e.name, e.value))
            .collect()
    };
    assert_eq!(
        aws_env(&upstream_pod),
        aws_env(&irsa_pod),
        "upstream vs podcred IRSA env"
    );
    eprintln!("upstream webhook image with the chart: IRSA -> {upstream_arn}");

    // 5. Every chart and example workload's probes pass as the kubelet runs them: all containers ready and
    //    never restarted by a failing liveness probe (the one deliberate kill aside).
    for namespace in [SYSTEM_NAMESPACE, GATEWAY_NAMESPACE] {
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        for pod in pods.list(&ListParams::default()).await.unwrap().items {
            let name = pod.metadata.name.clone().unwrap_or_default();
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let status = pod.status.unwrap();
            for c in status
                .init_container_statuses
                .unwrap_or_default()
                .into_iter()
                .chain(status.container_statuses.unwrap_or_default())
            {
                assert!(
                    c.ready,
                    "{namespace}/{name}/{} not ready: {:?}",
                    c.name, c.state
                );
                let allowed = u32::from(name == pod_name && c.name == "credproxy");
                assert!(
                    c.restart_count as u32 <= allowed,
                    "{namespace}/{name}/{} restarted {} times",
                    c.name,
                    c.restart_count
                );
            }
        }
    }

    admissions_namespace_cleanup(&client).await;
    node.shutdown().await;
}

fn tail_text(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

const PROBE_NAMESPACE: &str = "admission-probe";

async fn admissions_namespace_cleanup(client: &Client) {
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let _ = namespaces
        .delete(PROBE_NAMESPACE, &kube::api::DeleteParams::default())
        .await;
}

/// Creates pods (server-side dry run: admitted and mutated, never stored or run) one after another until
/// stopped, counting admissions, failures, and pods the webhook did not mutate.
struct AdmissionProbe {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(usize, usize, usize)>,
}

impl AdmissionProbe {
    async fn start(client: Client) -> Self {
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        let _ = namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": PROBE_NAMESPACE}})).unwrap(),
            )
            .await;
        let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(client.clone(), PROBE_NAMESPACE);
        let _ = accounts
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "probe", "annotations": {
                    "eks.amazonaws.com/role-arn": format!("arn:aws:iam::{ACCOUNT}:role/probe")}}}))
                .unwrap(),
            )
            .await;
        let stop = Arc::new(AtomicBool::new(false));
        let admitted = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let pods: Api<Pod> = Api::namespaced(client, PROBE_NAMESPACE);
                let params = PostParams {
                    dry_run: true,
                    ..PostParams::default()
                };
                let pod: Pod = serde_json::from_value(json!({
                    "metadata": {"generateName": "probe-"},
                    "spec": {"serviceAccountName": "probe", "automountServiceAccountToken": false,
                             "containers": [{"name": "app", "image": "ghcr.io/podcred/gateway:0.1.0"}]}
                }))
                .unwrap();
                let (mut failed, mut unmutated) = (0, 0);
                while !stop.load(Ordering::SeqCst) {
                    match pods.create(&params, &pod).await {
                        Ok(created) => {
                            admitted.fetch_add(1, Ordering::SeqCst);
                            let mutated = created.spec.unwrap().containers[0]
                                .env
                                .clone()
                                .unwrap_or_default()
                                .iter()
                                .any(|e| e.name == "AWS_ROLE_ARN");
                            if !mutated {
                                unmutated += 1;
                            }
                        }
                        Err(e) => {
                            eprintln!("admission failed: {e}");
                            failed += 1;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                (admitted.load(Ordering::SeqCst), failed, unmutated)
            }
        });
        Self { stop, task }
    }

    async fn stop(self) -> (usize, usize, usize) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("admission probe task")
    }
}
