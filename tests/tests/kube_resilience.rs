//! The webhook against a real kube-apiserver when either side restarts: the failure policy while the webhook is
//! down, and the ServiceAccount cache across an API server restart.

use integration::webhook_cluster::*;
use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use kube::Api;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
#[ignore = "needs peers: run make test"]
async fn a_restarted_webhook_serves_again_and_fail_policy_blocks_while_down() {
    let mut cluster = Cluster::start(&[]).await;
    create_namespace(&cluster.client, "restart").await;
    create_role_annotated_service_account(&cluster.client, "restart", "s3-reader").await;
    cluster.webhook.stop();
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), "restart");
    let pod: Pod =
        serde_json::from_value(pod_json("while-down", "s3-reader", json!({}))).expect("pod");
    let refused = api.create(&PostParams::default(), &pod).await;
    let message = format!("{refused:?}");
    assert!(
        refused.is_err() && message.contains("failed calling webhook"),
        "failurePolicy Fail must refuse pods while the webhook is down: {message}"
    );

    cluster.webhook.restart().await;
    create_role_annotated_service_account(&cluster.client, "restart", "after-restart").await;
    dry_run_until_mutated(
        &cluster.client,
        "restart",
        &pod_json("after", "after-restart", json!({})),
        Duration::from_secs(30),
        || {
            format!(
                "restarted webhook did not mutate within 30 s; log:\n{}",
                cluster.webhook.log()
            )
        },
    )
    .await;
}

#[tokio::test]
#[ignore = "needs peers: run make test"]
async fn the_cache_recovers_when_the_api_server_restarts_mid_watch() {
    // Grace period 0: a pod is only mutated if the ServiceAccount arrived through the watch.
    let mut cluster = Cluster::start(&["--service-account-lookup-grace-period=0s"]).await;
    create_namespace(&cluster.client, "rewatch").await;
    create_role_annotated_service_account(&cluster.client, "rewatch", "before").await;

    cluster.plane.restart_apiserver().await;
    let client = cluster.plane.client().await;
    create_service_account(
        &client,
        "rewatch",
        "after",
        &[(
            "eks.amazonaws.com/role-arn",
            "arn:aws:iam::111122223333:role/after",
        )],
    )
    .await;
    let after = pod_json("after", "after", json!({}));
    retry_until(
        Duration::from_secs(60),
        Duration::from_millis(500),
        async || {
            let stored = create_pod(&client, "rewatch", &after, true).await;
            (env_value(container(&stored, "app"), "AWS_ROLE_ARN").as_deref()
                == Some("arn:aws:iam::111122223333:role/after"))
            .then_some(())
        },
        || {
            format!(
                "the webhook's ServiceAccount watch did not recover within 60 s after the API server \
                 restarted; webhook log:\n{}",
                cluster.webhook.log()
            )
        },
    )
    .await;
    // Entries cached before the restart are still served.
    let before = create_pod(
        &client,
        "rewatch",
        &pod_json("before", "before", json!({})),
        true,
    )
    .await;
    assert!(is_irsa_mutated(&before));
}
