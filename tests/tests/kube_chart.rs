//! The Helm chart against a real kube-apiserver: every rendered manifest and example is accepted, and the
//! chart's RBAC is all the webhook needs.

use integration::kube::{ControlPlane, Registration, WebhookImpl, WebhookProcess};
use integration::webhook_cluster::*;
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
#[ignore = "needs peers: run make test"]
async fn rendered_chart_manifests_and_examples_are_accepted_by_the_api_server() {
    let plane = ControlPlane::start().await;
    let client = plane.client().await;
    let chart = integration::workspace_root().join("deploy/helm/podcred");
    create_namespace(&client, "podcred-system").await;

    let lint = std::process::Command::new(integration::kube::peer_bin("helm", "install-kube.sh"))
        .args(["lint", "--strict"])
        .arg(&chart)
        .output()
        .expect("run helm lint");
    assert!(
        lint.status.success(),
        "helm lint --strict: {}",
        String::from_utf8_lossy(&lint.stdout)
    );

    // Everything enabled, self-signed PKI (no cert-manager needed).
    let full = integration::kube::helm_template(
        &chart,
        "podcred-webhook",
        "podcred-system",
        &[
            "pki.certManager.enabled=false",
            "sidecar.enabled=true",
            "config.containerCredentials.enabled=true",
            "config.containerCredentials.identities[0].namespace=apps",
            "config.containerCredentials.identities[0].serviceAccount=worker",
            "config.podIdentityWebhookMap.enabled=true",
            "config.podIdentityWebhookMap.data.default/sa.RoleARN=arn:aws:iam::111122223333:role/r",
            "podAntiAffinity=hard",
            "mutatingWebhook.failurePolicy=Fail",
        ],
    );
    assert_eq!(dry_run_apply(&client, &full).await, Vec::<String>::new());
    for expected in [
        "kind: Deployment",
        "kind: PodDisruptionBudget",
        "kind: MutatingWebhookConfiguration",
        "kind: ClusterRole",
        "kind: Role",
        "kind: Secret",
        "reinvocationPolicy: IfNeeded",
        "--watch-config-map=true",
        "--sidecar-image=",
    ] {
        assert!(full.contains(expected), "rendered chart lacks {expected}");
    }

    // The Deployment's arguments start our webhook (paths, ports and namespace localised).
    if webhook_under_test() == WebhookImpl::Podcred {
        let args = chart_webhook_args_without_identities(&plane, &full);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let webhook =
            WebhookProcess::start(&plane, WebhookImpl::Podcred, "chart-args", &args).await;
        let http = webhook.https_client();
        retry_until(
            Duration::from_secs(30),
            Duration::from_millis(200),
            async || {
                http.get(format!("https://127.0.0.1:{}/readyz", webhook.port))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
                    .then_some(())
            },
            || {
                format!(
                    "webhook with the chart's arguments {args:?} not ready; log:\n{}",
                    webhook.log()
                )
            },
        )
        .await;
    }

    // The committed plain manifests are the chart's default rendering, and all but cert-manager's objects
    // (CRDs this API server does not have) are accepted.
    let committed = std::fs::read_to_string(
        integration::workspace_root().join("deploy/manifests/podcred-webhook.yaml"),
    )
    .expect("deploy/manifests/podcred-webhook.yaml");
    let default_render =
        integration::kube::helm_template(&chart, "podcred-webhook", "podcred-system", &[]);
    let strip = |text: &str| -> String {
        text.lines()
            .filter(|l| !l.starts_with('#') && *l != "---")
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        strip(&committed).ends_with(&strip(&default_render)),
        "deploy/manifests/podcred-webhook.yaml is stale: run `bash deploy/render-manifests.sh`"
    );
    let mut unresolved = dry_run_apply(&client, &committed).await;
    unresolved.sort();
    assert_eq!(
        unresolved,
        vec![
            "cert-manager.io/v1/Certificate".to_owned(),
            "cert-manager.io/v1/Issuer".to_owned()
        ]
    );

    // The gateway example, with the seed's variables substituted.
    let example =
        std::fs::read_to_string(integration::workspace_root().join("deploy/examples/gateway.yaml"))
            .expect("deploy/examples/gateway.yaml")
            .replace("${AWS_ACCOUNT_ID}", "111122223333")
            .replace("${AWS_LAMBDA_REGION}", "us-east-1");
    assert_eq!(dry_run_apply(&client, &example).await, Vec::<String>::new());

    // The routes the example mounts into the gateway (the seed's manifests) pass the gateway's own check.
    let routes = yaml_documents(&example)
        .find(|doc| doc["kind"] == "ConfigMap")
        .expect("routes ConfigMap")["data"]["routes.yaml"]
        .as_str()
        .expect("routes.yaml")
        .to_owned();
    let routes_file = plane.dir().join("routes.yaml");
    std::fs::write(&routes_file, routes).expect("write routes");
    let check = integration::isolated_command(integration::workspace_bin("gateway"))
        .arg("--check")
        .arg("--config")
        .arg(&routes_file)
        .output()
        .expect("run gateway --check");
    assert!(
        check.status.success(),
        "gateway --check rejects the example's routes: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}

#[tokio::test]
#[ignore = "needs peers: run make test"]
async fn the_charts_rbac_is_all_the_webhook_needs() {
    if webhook_under_test() == WebhookImpl::Upstream {
        eprintln!("skipped: runs the chart's arguments, which include podcred flags");
        return;
    }
    let plane = ControlPlane::start().await;
    let client = plane.client().await;
    create_namespace(&client, "podcred-system").await;
    let chart = integration::workspace_root().join("deploy/helm/podcred");
    let rendered = integration::kube::helm_template(
        &chart,
        "podcred-webhook",
        "podcred-system",
        &[
            "pki.certManager.enabled=false",
            "config.podIdentityWebhookMap.enabled=true",
        ],
    );
    // Create the chart's RBAC objects for real.
    let rbac: String = yaml_documents(&rendered)
        .filter(|doc| {
            [
                "ClusterRole",
                "ClusterRoleBinding",
                "Role",
                "RoleBinding",
                "ServiceAccount",
            ]
            .contains(&doc["kind"].as_str().unwrap_or_default())
        })
        .map(|doc| format!("---\n{}", serde_yaml_ng::to_string(&doc).expect("YAML")))
        .collect();
    create_for_real(&client, &rbac).await;

    // The webhook authenticates as its ServiceAccount's user name (a client certificate here).
    let kubeconfig = plane.user_kubeconfig(
        "system:serviceaccount:podcred-system:podcred-webhook",
        &[
            "system:serviceaccounts",
            "system:serviceaccounts:podcred-system",
        ],
    );
    let args = chart_webhook_args_without_identities(&plane, &rendered);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let webhook = WebhookProcess::start_with_kubeconfig(
        &plane,
        &kubeconfig,
        WebhookImpl::Podcred,
        "rbac-scoped",
        &args,
    )
    .await;
    Registration::for_webhook("podcred-rbac", &webhook)
        .apply(&client)
        .await;
    create_namespace(&client, "apps").await;
    // Created right before the pod: served through the grace-period GET (needs `get`), or the watch.
    create_role_annotated_service_account(&client, "apps", "reader").await;
    dry_run_until_mutated(
        &client,
        "apps",
        &pod_json("p", "reader", json!({})),
        Duration::from_secs(30),
        || {
            format!(
                "webhook with the chart's RBAC did not mutate; log:\n{}",
                webhook.log()
            )
        },
    )
    .await;
    let log = webhook.log();
    assert!(
        !log.to_ascii_lowercase().contains("forbidden"),
        "the chart's RBAC is missing a permission:\n{log}"
    );
}

/// [`chart_webhook_args`] with an empty container-credentials file in the control plane's directory.
fn chart_webhook_args_without_identities(plane: &ControlPlane, rendered: &str) -> Vec<String> {
    let identities = plane.dir().join("identities.json");
    std::fs::write(&identities, r#"{"identities":[]}"#).expect("identities file");
    chart_webhook_args(rendered, &identities)
}

/// The webhook container's arguments from a rendered chart, minus what [`WebhookProcess`] sets itself, with
/// the container-credentials file pointed at `identities`.
fn chart_webhook_args(rendered: &str, identities: &std::path::Path) -> Vec<String> {
    let deployment = yaml_documents(rendered)
        .find(|doc| doc["kind"] == "Deployment")
        .expect("a Deployment");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["command"], json!(["/webhook"]));
    container["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .filter(|arg| {
            let flag = arg.split('=').next().unwrap_or(arg);
            ![
                "--port",
                "--metrics-port",
                "--tls-cert",
                "--tls-key",
                "--namespace",
                "--in-cluster",
                "--logtostderr",
            ]
            .contains(&flag)
        })
        .map(|arg| {
            if arg.starts_with("--watch-container-credentials-config=") {
                format!(
                    "--watch-container-credentials-config={}",
                    identities.display()
                )
            } else {
                arg.to_owned()
            }
        })
        .collect()
}
