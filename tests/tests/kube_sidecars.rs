//! The credproxy sidecar as the webhook injects it, validated by a real kube-apiserver, and a TokenRequest
//! token from that API server exchanged for STS credentials (moto) through credproxy.

use integration::kube::WebhookImpl;
use integration::webhook_cluster::*;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::PostParams;
use kube::Api;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[tokio::test]
#[ignore = "needs peers: run make test"]
async fn injected_credproxy_sidecars_pass_api_server_validation() {
    if webhook_under_test() == WebhookImpl::Upstream {
        eprintln!("skipped: sidecar injection is a podcred extension");
        return;
    }
    let image = "ghcr.io/podcred/credproxy:e2e";
    let cluster = Cluster::start(&[
        &format!("--sidecar-image={image}"),
        "--aws-default-region=eu-central-1",
    ])
    .await;
    let client = &cluster.client;
    create_namespace(client, "sidecar").await;
    create_role_annotated_service_account(client, "sidecar", "lambda-invoker").await;
    let mut pod = pod_json(
        "gateway",
        "lambda-invoker",
        json!({
            "initContainers": [{"name": "migrate", "image": "busybox"}],
            "securityContext": {"runAsUser": 1000, "runAsNonRoot": true},
        }),
    );
    pod["metadata"]["annotations"] = json!({"podcred.dev/inject": "true"});
    let stored = create_pod(client, "sidecar", &pod, false).await;

    let init = containers(&stored, "initContainers");
    let sidecar = init
        .iter()
        .find(|c| c["name"] == "credproxy")
        .unwrap_or_else(|| panic!("no credproxy init container: {stored:#}"));
    assert_eq!(sidecar["image"], image);
    assert_eq!(sidecar["restartPolicy"], "Always", "native sidecar");
    assert_eq!(sidecar["startupProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(sidecar["startupProbe"]["httpGet"]["port"], 9912);
    assert_eq!(env_value(sidecar, "AWS_ROLE_ARN").as_deref(), Some(ROLE));
    assert_eq!(
        env_value(sidecar, "AWS_WEB_IDENTITY_TOKEN_FILE").as_deref(),
        Some(IRSA_TOKEN_FILE)
    );
    assert!(mount(sidecar, "aws-iam-token").is_some());
    let args: Vec<&str> = sidecar["args"]
        .as_array()
        .expect("sidecar args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(args.contains(&"--listen=127.0.0.1:9911"), "{args:?}");
    assert!(
        args.contains(&"--auth-token-file=/var/run/podcred/auth/token"),
        "{args:?}"
    );
    let security = &sidecar["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["runAsNonRoot"], true);
    // The sidecar must start before the init containers that may need credentials.
    assert_eq!(init[0]["name"], "credproxy", "sidecar first: {init:#?}");

    for name in ["app", "migrate"] {
        let c = container(&stored, name);
        assert_eq!(
            env_value(c, "AWS_CONTAINER_CREDENTIALS_FULL_URI").as_deref(),
            Some("http://127.0.0.1:9911/v1/credentials"),
            "{name}"
        );
        assert_eq!(
            env_value(c, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE").as_deref(),
            Some("/var/run/podcred/auth/token"),
            "{name}"
        );
        assert_eq!(
            env_value(c, "AWS_ROLE_ARN"),
            None,
            "{name}: no IRSA variables"
        );
        assert!(
            mount(c, "aws-iam-token").is_none(),
            "{name}: no token mount"
        );
        let auth = mount(c, "podcred-auth").unwrap_or_else(|| panic!("{name}: auth mount"));
        assert_eq!(auth["readOnly"], true);
        assert_eq!(auth["mountPath"], "/var/run/podcred/auth");
    }
    assert_eq!(
        volume(&stored, "podcred-auth").expect("auth volume")["emptyDir"]["medium"],
        "Memory"
    );

    // Re-admission (e.g. a reinvocation) does not add a second sidecar: dry-run the stored spec again.
    let mut again = pod.clone();
    again["metadata"]["name"] = json!("gateway-again");
    again["spec"] = stored["spec"].clone();
    let again = create_pod(client, "sidecar", &again, true).await;
    let sidecars = containers(&again, "initContainers")
        .iter()
        .filter(|c| c["name"] == "credproxy")
        .count();
    assert_eq!(sidecars, 1);
}

#[tokio::test]
#[ignore = "needs peers: run make test"]
async fn container_mode_sidecars_are_accepted_too() {
    if webhook_under_test() == WebhookImpl::Upstream {
        eprintln!("skipped: sidecar injection is a podcred extension");
        return;
    }
    let cluster = Cluster::start(&[
        "--sidecar-image=ghcr.io/podcred/credproxy:e2e",
        "--sidecar-mode=container",
    ])
    .await;
    let client = &cluster.client;
    create_namespace(client, "sidecar-container").await;
    // Injection requested on the ServiceAccount instead of the pod.
    create_service_account(
        client,
        "sidecar-container",
        "invoker",
        &[
            ("eks.amazonaws.com/role-arn", ROLE),
            ("podcred.dev/inject", "true"),
        ],
    )
    .await;
    let stored = create_pod(
        client,
        "sidecar-container",
        &pod_json("app", "invoker", json!({})),
        false,
    )
    .await;
    let sidecar = container(&stored, "credproxy");
    assert!(containers(&stored, "containers")
        .iter()
        .any(|c| c["name"] == "credproxy"));
    assert!(sidecar.get("restartPolicy").is_none());
    assert_eq!(
        env_value(
            container(&stored, "app"),
            "AWS_CONTAINER_CREDENTIALS_FULL_URI"
        )
        .as_deref(),
        Some("http://127.0.0.1:9911/v1/credentials")
    );
}

/// Rewrites a container's paths and listeners for a local run: files go under `dir`, listeners get free
/// loopback ports. Returns (args, env, credentials port, auth token file).
fn localise_credproxy(
    container: &Value,
    dir: &std::path::Path,
    token_file: &std::path::Path,
) -> (Vec<String>, Vec<(String, String)>, u16, std::path::PathBuf) {
    let port = integration::free_port();
    let auth_token_file = dir.join("auth-token");
    let mut args: Vec<String> = container["args"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|arg| {
                    let (flag, _) = arg.split_once('=').unwrap_or((arg, ""));
                    match flag {
                        "--listen" => format!("--listen=127.0.0.1:{port}"),
                        "--metrics-listen" => {
                            format!("--metrics-listen=127.0.0.1:{}", integration::free_port())
                        }
                        "--auth-token-file" => {
                            format!("--auth-token-file={}", auth_token_file.display())
                        }
                        _ => arg.to_owned(),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    if !args.iter().any(|a| a.starts_with("--listen=")) {
        // IRSA mode (no sidecar): run credproxy as the standalone endpoint with the same variables.
        args.push(format!("--listen=127.0.0.1:{port}"));
        args.push(format!(
            "--metrics-listen=127.0.0.1:{}",
            integration::free_port()
        ));
        args.push(format!("--auth-token-file={}", auth_token_file.display()));
    }
    let env = env(container)
        .into_iter()
        .map(|(name, value)| {
            if name == "AWS_WEB_IDENTITY_TOKEN_FILE" {
                (name, token_file.display().to_string())
            } else {
                (name, value)
            }
        })
        .collect();
    (args, env, port, auth_token_file)
}

#[tokio::test]
#[ignore = "needs peers: run make test"]
async fn a_token_request_token_gets_sts_credentials_through_credproxy() {
    use integration::moto::Moto;
    let moto = Moto::start_wrapped(true);
    let role = moto.create_role("e2e-gateway", None);
    let ours = webhook_under_test() == WebhookImpl::Podcred;
    let mut args = vec!["--aws-default-region=us-east-1".to_owned()];
    if ours {
        args.push("--sidecar-image=ghcr.io/podcred/credproxy:e2e".into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let cluster = Cluster::start(&args).await;
    let client = &cluster.client;
    create_namespace(client, "chain").await;
    create_service_account(
        client,
        "chain",
        "gateway",
        &[
            ("eks.amazonaws.com/role-arn", &role),
            ("eks.amazonaws.com/sts-regional-endpoints", "true"),
        ],
    )
    .await;
    let mut pod = pod_json("gateway", "gateway", json!({}));
    pod["metadata"]["annotations"] = json!({"podcred.dev/inject": "true"});
    let stored = create_pod(client, "chain", &pod, false).await;

    // The container that holds the web identity: the credproxy sidecar (ours) or the app (IRSA).
    let holder = if ours {
        container(&stored, "credproxy")
    } else {
        container(&stored, "app")
    };
    assert_eq!(
        env_value(holder, "AWS_ROLE_ARN").as_deref(),
        Some(role.as_str())
    );
    let projection = &volume(&stored, "aws-iam-token").expect("token volume")["projected"]
        ["sources"][0]["serviceAccountToken"];

    // What the kubelet does for the projected volume: a pod-bound TokenRequest.
    let sa: Api<ServiceAccount> = Api::namespaced(client.clone(), "chain");
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![projection["audience"]
                .as_str()
                .expect("audience")
                .to_owned()],
            expiration_seconds: projection["expirationSeconds"].as_i64(),
            bound_object_ref: Some(k8s_openapi::api::authentication::v1::BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: stored["metadata"]["name"].as_str().map(str::to_owned),
                uid: stored["metadata"]["uid"].as_str().map(str::to_owned),
            }),
        },
        ..Default::default()
    };
    let token = sa
        .create_token_request("gateway", &PostParams::default(), &request)
        .await
        .expect("TokenRequest")
        .status
        .expect("token")
        .token;
    assert_eq!(jwt_claims(&token)["aud"], json!(["sts.amazonaws.com"]));
    let dir = tempfile::tempdir().expect("temp dir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, &token).expect("write token");

    let (args, env, port, auth_token_file) = localise_credproxy(holder, dir.path(), &token_file);
    let mut command = integration::isolated_command(integration::workspace_bin("credproxy"));
    command
        .args(&args)
        .envs(env)
        .env("AWS_ENDPOINT_URL_STS", moto.endpoint())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("credproxy.log")).expect("log"));
    let mut credproxy = integration::ChildGuard::spawn("credproxy", &mut command);

    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let credentials: Value = loop {
        credproxy.assert_running();
        if let Ok(auth) = std::fs::read_to_string(&auth_token_file) {
            let response = http
                .get(format!("http://127.0.0.1:{port}/v1/credentials"))
                .header("Authorization", auth)
                .send()
                .await;
            if let Ok(response) = response {
                if response.status() == 200 {
                    break response.json().await.expect("credentials JSON");
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no credentials within 30 s; credproxy log:\n{}\nmoto log:\n{}",
            std::fs::read_to_string(dir.path().join("credproxy.log")).unwrap_or_default(),
            moto.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let access_key = credentials["AccessKeyId"].as_str().expect("AccessKeyId");
    assert!(access_key.starts_with("ASIA"), "{access_key}");

    // The credentials are the role's: STS (signature-checking moto) says who they belong to.
    let identity = moto.boto3(&format!(
        "c = boto3.client('sts', endpoint_url=endpoint, aws_access_key_id={access_key:?}, \
         aws_secret_access_key={:?}, aws_session_token={:?})\nprint(c.get_caller_identity()['Arn'])",
        credentials["SecretAccessKey"].as_str().expect("secret"),
        credentials["Token"].as_str().expect("session token"),
    ));
    let arn = String::from_utf8_lossy(&identity.stdout);
    assert!(
        arn.contains("assumed-role/e2e-gateway/"),
        "caller identity {arn}"
    );
}
