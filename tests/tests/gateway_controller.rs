//! `gateway controller` against a real kube-apiserver (tests/src/kube.rs), running as its chart ServiceAccount's
//! user with only the chart's RBAC (deploy/helm/podcred, `gatewayController.enabled=true`) and the chart's own
//! arguments: upstream's Gateway API CRDs (v1.6.3, tests/peers/install-gateway-api-crds.sh) and our kgateway
//! Backend and GatewayParameters CRDs (deploy/crds/), the seed's GatewayParameters, Gateway, Backend and
//! HTTPRoute applied verbatim, the chart's GatewayClass (`kgateway` with our controller name).
//!
//! The harness has no kube-controller-manager; the provisioning test starts one with only the garbage
//! collector, so that deleting the Gateway really cascades through the owner references.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use integration::gateway::Gateway;
use integration::kube::{gateway_api_crds, yaml_values};
use integration::kube::{helm_template, peer_bin, ControlPlane};
use integration::serverless::ServerlessOffline;
use integration::{
    free_port, http_exchange, isolated_command, workspace_bin, workspace_root, ChildGuard,
};
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::discovery::{Discovery, Scope};
use kube::{Api, Client};
use serde_json::{json, Value};

const RELEASE: &str = "podcred-webhook";
const NAMESPACE: &str = "podcred-system";
/// The chart's names for the controller (ServiceAccount, roles, Lease) and the proxies' ClusterRole.
const CONTROLLER: &str = "podcred-webhook-gateway-controller";
const PROXY_ROLE: &str = "podcred-webhook-gateway-proxy";
const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/lambda-role";

/// The seed's GatewayParameters, verbatim (AWS_ACCOUNT_ID=123456789012, namespace kgateway-system).
const SEED_PARAMETERS: &str = r#"
apiVersion: gateway.kgateway.dev/v1alpha1
kind: GatewayParameters
metadata:
  name: http-lambda
  namespace: kgateway-system
spec:
  kube:
    serviceAccount:
      extraAnnotations:
        eks.amazonaws.com/role-arn: arn:aws:iam::123456789012:role/lambda-role
"#;
const SEED_RESPONSE: &str = r#"{"statusCode":200,"body":"Response from AWS Lambda. Here's the request you just sent me: {\"key1\":\"value1\",\"key2\":\"value2\"}"}"#;
const SEED_BODY: &str = r#"{"key1":"value1", "key2":"value2"}"#;

/// The API serving `apiVersion`/`kind` in `namespace` (None: cluster-scoped or all namespaces), retried while
/// a freshly created CRD is not yet served.
async fn api(
    client: &Client,
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let discovery = Discovery::new(client.clone()).run().await.ok();
        if let Some((resource, caps)) = discovery.and_then(|d| d.resolve_gvk(&gvk)) {
            return match (caps.scope, namespace) {
                (Scope::Namespaced, Some(ns)) => {
                    Api::namespaced_with(client.clone(), ns, &resource)
                }
                _ => Api::all_with(client.clone(), &resource),
            };
        }
        assert!(Instant::now() < deadline, "{gvk:?} is not served");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn create(client: &Client, object: Value) {
    let api = api(
        client,
        object["apiVersion"].as_str().expect("apiVersion"),
        object["kind"].as_str().expect("kind"),
        object["metadata"]["namespace"].as_str(),
    )
    .await;
    let what = format!("{} {}", object["kind"], object["metadata"]["name"]);
    let object: DynamicObject = serde_json::from_value(object).expect("object");
    api.create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("create {what}: {e}"));
}

async fn create_all(client: &Client, yaml: &str) {
    for object in yaml_values(yaml) {
        create(client, object).await;
    }
}

/// CRDs (Gateway API, Backend, GatewayParameters) and the namespaces the tests use.
async fn install_crds_and_namespaces(admin: &Client) {
    for file in gateway_api_crds() {
        create_all(admin, &std::fs::read_to_string(file).expect("CRD file")).await;
    }
    let root = workspace_root();
    for crd in [
        "deploy/crds/gateway.kgateway.dev_backends.yaml",
        "deploy/crds/gateway.kgateway.dev_gatewayparameters.yaml",
    ] {
        create_all(
            admin,
            &std::fs::read_to_string(root.join(crd)).expect("CRD"),
        )
        .await;
    }
    for ns in ["kgateway-system", NAMESPACE, "other-team"] {
        create(
            admin,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
        .await;
    }
}

/// Renders the chart with the gateway controller, creates its RBAC objects and GatewayClass for real, and
/// returns the controller container's arguments.
async fn install_chart_controller(admin: &Client) -> Vec<String> {
    let chart = workspace_root().join("deploy/helm/podcred");
    let rendered = helm_template(
        &chart,
        RELEASE,
        NAMESPACE,
        &["gatewayController.enabled=true", "sidecar.enabled=true"],
    );
    let mut args = None;
    for doc in yaml_values(&rendered) {
        let kind = doc["kind"].as_str().unwrap_or_default();
        let name = doc["metadata"]["name"].as_str().unwrap_or_default();
        if kind == "Deployment" && name == CONTROLLER {
            args = Some(
                doc["spec"]["template"]["spec"]["containers"][0]["args"]
                    .as_array()
                    .expect("controller args")
                    .iter()
                    .map(|a| a.as_str().expect("string arg").to_string())
                    .collect::<Vec<_>>(),
            );
        }
        // The controller's objects (its Deployment too: validated by the API server, its pods stay Pending
        // without a kubelet) and the proxies' ClusterRole; not the webhook's.
        let ours = name.starts_with(CONTROLLER) || name == PROXY_ROLE || kind == "GatewayClass";
        if ours
            && [
                "ServiceAccount",
                "ClusterRole",
                "ClusterRoleBinding",
                "Role",
                "RoleBinding",
                "GatewayClass",
                "Deployment",
            ]
            .contains(&kind)
        {
            create(admin, doc).await;
        }
    }
    args.expect("the chart renders the controller Deployment")
}

/// One `gateway controller` process with the chart's arguments, as the chart's ServiceAccount user.
struct Controller {
    admin: SocketAddr,
    log: PathBuf,
    guard: Option<ChildGuard>,
}

impl Controller {
    fn start(
        plane: &ControlPlane,
        chart_args: &[String],
        identity: &str,
        extra: &[&str],
    ) -> Controller {
        let kubeconfig = plane.user_kubeconfig(
            &format!("system:serviceaccount:{NAMESPACE}:{CONTROLLER}"),
            &[
                "system:serviceaccounts",
                &format!("system:serviceaccounts:{NAMESPACE}"),
            ],
        );
        let admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let log = plane.dir().join(format!("controller-{identity}.log"));
        let file = std::fs::File::create(&log).expect("controller log");
        let mut cmd = isolated_command(workspace_bin("gateway"));
        // The test's own values replace the chart's for the flags it sets.
        let overridden: Vec<&str> = extra
            .iter()
            .filter_map(|a| a.split_once('=').map(|(flag, _)| flag))
            .chain(["--admin-listen"])
            .collect();
        cmd.args(chart_args.iter().filter(|a| {
            !overridden
                .iter()
                .any(|flag| a.split_once('=').is_some_and(|(f, _)| f == *flag))
        }))
        .arg(format!("--admin-listen={admin}"))
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg(format!("--identity={identity}"))
        // The downward API's POD_NAMESPACE in a pod.
        .arg(format!("--lease-namespace={NAMESPACE}"))
        .args(extra)
        .env("RUST_LOG", "info,gateway=debug")
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log"))
        .stderr(file);
        let guard = ChildGuard::spawn(&format!("controller {identity}"), &mut cmd);
        Controller {
            admin,
            log,
            guard: Some(guard),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn get(&self, path: &str) -> (u16, String) {
        http_exchange(self.admin, &format!("GET {path} HTTP/1.1"), b"")
    }

    /// The value of an unlabelled metric (or a labelled series, `name{labels}`), 0 when absent.
    fn metric(&self, series: &str) -> f64 {
        let (_, body) = self.get("/metrics");
        body.lines()
            .find_map(|l| {
                l.strip_prefix(series)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0.0)
    }

    fn is_leader(&self) -> bool {
        self.metric("gateway_controller_leader") == 1.0
    }

    fn wait_ready(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(Ok(Some(status))) = self.guard.as_mut().map(|g| g.child_mut().try_wait()) {
                panic!("controller exited with {status}; log:\n{}", self.log());
            }
            if std::net::TcpStream::connect_timeout(&self.admin, Duration::from_millis(100)).is_ok()
                && self.get("/readyz").0 == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "controller not ready within {within:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL: no chance to release the Lease.
    fn kill(&mut self) {
        drop(self.guard.take());
    }
}

/// kube-controller-manager with only the garbage collector (owner references → cascading deletes).
fn start_garbage_collector(plane: &ControlPlane) -> ChildGuard {
    let bin = peer_bin("kube-controller-manager", "install-node.sh");
    let kubeconfig = plane.admin_kubeconfig();
    let log = std::fs::File::create(plane.dir().join("kube-controller-manager.log")).expect("log");
    let mut cmd = isolated_command(bin);
    cmd.args([
        format!("--kubeconfig={}", kubeconfig.display()),
        format!("--authentication-kubeconfig={}", kubeconfig.display()),
        format!("--authorization-kubeconfig={}", kubeconfig.display()),
        "--controllers=garbagecollector".into(),
        "--leader-elect=false".into(),
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={}", free_port()),
        format!("--cert-dir={}", plane.dir().join("kcm-pki").display()),
        "--v=1".into(),
    ])
    .stdin(Stdio::null())
    .stdout(log.try_clone().expect("log"))
    .stderr(log);
    ChildGuard::spawn("kube-controller-manager", &mut cmd)
}

/// Polls `check` until it returns Some, or panics with `what` and `context()`.
async fn eventually<T>(
    within: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{what} (not within {within:?})\n{}",
            context()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn get(api: &Api<DynamicObject>, name: &str) -> Option<Value> {
    api.get_opt(name)
        .await
        .expect("get")
        .map(|o| serde_json::to_value(o).expect("JSON"))
}

fn managers(object: &Value) -> Vec<(String, String)> {
    object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["manager"].as_str().unwrap_or_default().to_string(),
                m["operation"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn post(addr: SocketAddr, path: &str) -> (u16, String) {
    http_exchange(
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}",
            SEED_BODY.len()
        ),
        SEED_BODY.as_bytes(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs peers: run make test"]
async fn the_seeds_objects_get_a_provisioned_proxy_that_follows_edits_and_goes_with_the_gateway() {
    let sls = ServerlessOffline::start();
    let plane = ControlPlane::start().await;
    let _gc = start_garbage_collector(&plane);
    let admin = plane.client().await;
    install_crds_and_namespaces(&admin).await;
    // The README's controller way, deploy/examples/gateway-controller.yaml, is accepted as written (dry run).
    let example =
        std::fs::read_to_string(workspace_root().join("deploy/examples/gateway-controller.yaml"))
            .expect("deploy/examples/gateway-controller.yaml")
            .replace("${AWS_ACCOUNT_ID}", "111122223333")
            .replace("${AWS_LAMBDA_REGION}", "us-east-1");
    let unresolved = integration::webhook_cluster::dry_run_apply(&admin, &example).await;
    assert!(
        unresolved.is_empty(),
        "kinds the API server does not serve: {unresolved:?}"
    );
    let chart_args = install_chart_controller(&admin).await;
    assert_eq!(chart_args.first().map(String::as_str), Some("controller"));

    // The seed's objects, verbatim: GatewayParameters, the Gateway pointing at it, Backend, HTTPRoute.
    create_all(&admin, SEED_PARAMETERS).await;
    let seed = std::fs::read_to_string(workspace_root().join("gateway/tests/fixtures/seed.yaml"))
        .expect("seed");
    create_all(&admin, &seed).await;
    // Another implementation's class and Gateway: never provisioned.
    create(
        &admin,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": {"name": "other"}, "spec": {"controllerName": "example.com/other-gateway"}}),
    )
    .await;
    create(&admin, json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "theirs", "namespace": "other-team"},
        "spec": {"gatewayClassName": "other", "listeners": [{"name": "http", "protocol": "HTTP", "port": 80}]}})).await;

    let mut controller = Controller::start(&plane, &chart_args, "controller-0", &[]);
    controller.wait_ready(Duration::from_secs(30));

    let gateways = api(
        &admin,
        "gateway.networking.k8s.io/v1",
        "Gateway",
        Some("kgateway-system"),
    )
    .await;
    let gateway_uid = get(&gateways, "http").await.expect("the seed's Gateway")["metadata"]["uid"]
        .as_str()
        .expect("uid")
        .to_string();
    let sas = api(&admin, "v1", "ServiceAccount", Some("kgateway-system")).await;
    let deployments = api(&admin, "apps/v1", "Deployment", Some("kgateway-system")).await;
    let services = api(&admin, "v1", "Service", Some("kgateway-system")).await;
    let log = || controller.log();

    // ServiceAccount `http` with the seed's role annotation.
    let sa = eventually(
        Duration::from_secs(20),
        "ServiceAccount kgateway-system/http provisioned",
        async || get(&sas, "http").await,
        log,
    )
    .await;
    assert_eq!(
        sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        ROLE_ARN
    );
    // Deployment `http`: our image in cluster mode for this one Gateway, the sidecar requested.
    let deployment = eventually(
        Duration::from_secs(10),
        "Deployment kgateway-system/http provisioned",
        async || get(&deployments, "http").await,
        log,
    )
    .await;
    let pod = &deployment["spec"]["template"];
    let container = &pod["spec"]["containers"][0];
    assert_eq!(
        container["image"], "ghcr.io/podcred/gateway:0.1.0",
        "the chart's proxy image"
    );
    assert_eq!(
        container["args"],
        json!([
            "--from-cluster",
            "--gateway=kgateway-system/http",
            "--controller-name=podcred.dev/gateway",
            "--admin-listen=0.0.0.0:9091",
            "--log-format=json"
        ])
    );
    assert_eq!(container["ports"][0]["containerPort"], 8080);
    assert_eq!(pod["metadata"]["annotations"]["podcred.dev/inject"], "true");
    assert_eq!(pod["spec"]["serviceAccountName"], "http");
    assert_eq!(
        deployment["spec"]["replicas"], 1,
        "no replicas in GatewayParameters: Kubernetes' default"
    );
    // Service `http`: the listener's port.
    let service = eventually(
        Duration::from_secs(10),
        "Service kgateway-system/http provisioned",
        async || get(&services, "http").await,
        log,
    )
    .await;
    assert_eq!(service["spec"]["ports"][0]["port"], 8080);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], 8080);
    for object in [&sa, &deployment, &service] {
        assert_eq!(
            object["metadata"]["ownerReferences"],
            json!([{"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "name": "http",
                    "uid": gateway_uid, "controller": true}]),
            "{}",
            object["kind"]
        );
        assert!(
            managers(object).contains(&("podcred-gateway-controller".into(), "Apply".into())),
            "server-side applied by the controller's field manager: {:?}",
            managers(object)
        );
    }
    // The proxies' ClusterRole is bound to this ServiceAccount only.
    let bindings = api(
        &admin,
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
        None,
    )
    .await;
    let binding = eventually(
        Duration::from_secs(10),
        "proxy ClusterRoleBinding",
        async || get(&bindings, PROXY_ROLE).await,
        log,
    )
    .await;
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "http", "namespace": "kgateway-system"}])
    );
    // The leader writes Gateway API status: the Gateway is Accepted and Programmed, the route Accepted with its
    // references resolved, each at the object's generation.
    let gateways = api(
        &admin,
        "gateway.networking.k8s.io/v1",
        "Gateway",
        Some("kgateway-system"),
    )
    .await;
    let routes = api(
        &admin,
        "gateway.networking.k8s.io/v1",
        "HTTPRoute",
        Some("kgateway-system"),
    )
    .await;
    let condition = |object: &Value, path: &str, kind: &str| -> Option<(String, String, i64)> {
        object
            .pointer(path)?
            .as_array()?
            .iter()
            .find(|c| c["type"] == kind)
            .map(|c| {
                (
                    c["status"].as_str().unwrap_or("").to_owned(),
                    c["reason"].as_str().unwrap_or("").to_owned(),
                    c["observedGeneration"].as_i64().unwrap_or(-1),
                )
            })
    };
    for (api, name, path, kind, reason) in [
        (
            &gateways,
            "http",
            "/status/conditions",
            "Accepted",
            "Accepted",
        ),
        (
            &gateways,
            "http",
            "/status/conditions",
            "Programmed",
            "Programmed",
        ),
        (
            &routes,
            "lambda",
            "/status/parents/0/conditions",
            "Accepted",
            "Accepted",
        ),
        (
            &routes,
            "lambda",
            "/status/parents/0/conditions",
            "ResolvedRefs",
            "ResolvedRefs",
        ),
    ] {
        eventually(
            Duration::from_secs(15),
            &format!("{name}: {kind}=True/{reason} written by the controller"),
            async || {
                let object = get(api, name).await?;
                let generation = object["metadata"]["generation"].as_i64()?;
                (condition(&object, path, kind)? == ("True".into(), reason.into(), generation))
                    .then_some(())
            },
            || controller.log(),
        )
        .await;
    }

    // Another class's Gateway: nothing provisioned, no status.
    let theirs = api(&admin, "apps/v1", "Deployment", Some("other-team")).await;
    assert!(get(&theirs, "theirs").await.is_none());
    let their_gateway = get(
        &api(
            &admin,
            "gateway.networking.k8s.io/v1",
            "Gateway",
            Some("other-team"),
        )
        .await,
        "theirs",
    )
    .await
    .expect("their Gateway");
    assert!(
        condition(&their_gateway, "/status/conditions", "Accepted")
            .is_none_or(|(status, _, _)| status != "True"),
        "another class's Gateway got our status: {their_gateway}"
    );
    assert!(get(
        &api(&admin, "v1", "ServiceAccount", Some("other-team")).await,
        "theirs"
    )
    .await
    .is_none());

    // The provisioned proxy, run with the Deployment's own arguments as its ServiceAccount (the ClusterRole the
    // controller bound), serves the seed's curl: the Lambda endpoint is serverless-offline, static test keys
    // stand in for the sidecar's credentials (tests/tests/seed_e2e.rs covers the sidecar path).
    let proxy_kubeconfig = plane.user_kubeconfig(
        "system:serviceaccount:kgateway-system:http",
        &[
            "system:serviceaccounts",
            "system:serviceaccounts:kgateway-system",
        ],
    );
    let mut source: Vec<std::ffi::OsString> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("arg"))
        .filter(|a| !a.starts_with("--admin-listen=") && !a.starts_with("--log-format="))
        .map(Into::into)
        .collect();
    source.push(format!("--kubeconfig={}", proxy_kubeconfig.display()).into());
    let mut env = integration::aws_isolated_env();
    env.extend([
        ("AWS_ACCESS_KEY_ID", "AKIAPROVISIONTEST001".to_string()),
        (
            "AWS_SECRET_ACCESS_KEY",
            "provisionTestSecretNeverLogged000000000".to_string(),
        ),
        ("AWS_ENDPOINT_URL_LAMBDA", sls.endpoint()),
    ]);
    let proxy = Gateway::start_with_source(&source, &env, &[]);
    proxy.wait_ready(Duration::from_secs(20));
    let (status, body) = post(proxy.addr, "/echo");
    assert_eq!(
        (status, body.as_str()),
        (200, SEED_RESPONSE),
        "proxy log:\n{}",
        proxy.log()
    );
    drop(proxy);

    // Edit the GatewayParameters: the objects follow.
    let parameters = api(
        &admin,
        "gateway.kgateway.dev/v1alpha1",
        "GatewayParameters",
        Some("kgateway-system"),
    )
    .await;
    let patch = json!({"spec": {"kube": {
        "serviceAccount": {"extraAnnotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/other-role"}},
        "deployment": {"replicas": 3},
        "envoyContainer": {"image": {"tag": "0.2.0"}, "resources": {"limits": {"memory": "128Mi"}}},
        "podTemplate": {"extraAnnotations": {"example.com/team": "payments"}}
    }}});
    parameters
        .patch(
            "http-lambda",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .expect("patch the GatewayParameters");
    let started = Instant::now();
    eventually(
        Duration::from_secs(10),
        "the edited GatewayParameters re-applied",
        async || {
            let sa = get(&sas, "http").await?;
            let deployment = get(&deployments, "http").await?;
            let pod = &deployment["spec"]["template"];
            (sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
                == "arn:aws:iam::123456789012:role/other-role"
                && deployment["spec"]["replicas"] == 3
                && pod["spec"]["containers"][0]["image"] == "ghcr.io/podcred/gateway:0.2.0"
                && pod["spec"]["containers"][0]["resources"]["limits"]["memory"] == "128Mi"
                && pod["metadata"]["annotations"]["example.com/team"] == "payments"
                && pod["metadata"]["annotations"]["podcred.dev/inject"] == "true")
                .then_some(())
        },
        log,
    )
    .await;
    eprintln!(
        "GatewayParameters edit applied {:?} after the patch",
        started.elapsed()
    );

    // Add a listener to the Gateway: the Service gains its port.
    let listeners = json!({"spec": {"listeners": [
        {"protocol": "HTTP", "port": 8080, "name": "http", "allowedRoutes": {"namespaces": {"from": "All"}}},
        {"protocol": "HTTP", "port": 8081, "name": "http-alt"}]}});
    gateways
        .patch("http", &PatchParams::default(), &Patch::Merge(&listeners))
        .await
        .expect("patch the Gateway");
    eventually(
        Duration::from_secs(10),
        "the Service follows the Gateway's listeners",
        async || {
            let ports: Vec<Value> = get(&services, "http").await?["spec"]["ports"]
                .as_array()?
                .iter()
                .map(|p| p["port"].clone())
                .collect();
            (ports == [json!(8080), json!(8081)]).then_some(())
        },
        log,
    )
    .await;

    // Delete the Gateway: the garbage collector removes what it owned; the binding drops the ServiceAccount.
    gateways
        .delete("http", &DeleteParams::default())
        .await
        .expect("delete the Gateway");
    let started = Instant::now();
    eventually(
        Duration::from_secs(60),
        "owned objects deleted with the Gateway",
        async || {
            (get(&sas, "http").await.is_none()
                && get(&deployments, "http").await.is_none()
                && get(&services, "http").await.is_none())
            .then_some(())
        },
        || {
            format!(
                "{}\nkube-controller-manager log:\n{}",
                controller.log(),
                integration::kube::tail(&plane.dir().join("kube-controller-manager.log"), 30)
            )
        },
    )
    .await;
    eprintln!(
        "owned objects gone {:?} after deleting the Gateway",
        started.elapsed()
    );
    eventually(
        Duration::from_secs(10),
        "the proxy binding no longer names the deleted Gateway's ServiceAccount",
        async || {
            let binding = get(&bindings, PROXY_ROLE).await?;
            (binding["subjects"].as_array().is_none_or(Vec::is_empty)).then_some(())
        },
        log,
    )
    .await;

    let log = controller.log();
    assert!(
        !log.contains("cannot watch"),
        "a watch failed (RBAC or CRD):\n{log}"
    );
    assert!(!log.contains("cannot provision"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs peers: run make test"]
async fn two_replicas_elect_one_leader_and_the_other_takes_over_when_it_is_killed() {
    let plane = ControlPlane::start().await;
    let admin = plane.client().await;
    install_crds_and_namespaces(&admin).await;
    let chart_args = install_chart_controller(&admin).await;
    // Short timings so the takeover is quick (the chart's defaults are client-go's 15s/10s/2s).
    let fast = [
        "--lease-duration=3s",
        "--renew-deadline=2s",
        "--retry-period=250ms",
    ];
    let mut replicas = [
        Controller::start(&plane, &chart_args, "replica-a", &fast),
        Controller::start(&plane, &chart_args, "replica-b", &fast),
    ];
    for replica in &mut replicas {
        replica.wait_ready(Duration::from_secs(30));
    }
    let names = ["replica-a", "replica-b"];

    let leases = api(&admin, "coordination.k8s.io/v1", "Lease", Some(NAMESPACE)).await;
    let holder = async || -> Option<String> {
        get(&leases, CONTROLLER).await?["spec"]["holderIdentity"]
            .as_str()
            .map(str::to_string)
    };
    let logs = || {
        format!(
            "replica-a:\n{}\nreplica-b:\n{}",
            replicas[0].log(),
            replicas[1].log()
        )
    };
    // Exactly one leads, and it is the Lease's holder.
    let leader = eventually(
        Duration::from_secs(15),
        "exactly one replica leads and holds the Lease",
        async || {
            let holder = holder().await?;
            let leading: Vec<usize> = (0..2).filter(|&i| replicas[i].is_leader()).collect();
            match leading.as_slice() {
                [only] if names[*only] == holder => Some(*only),
                _ => None,
            }
        },
        logs,
    )
    .await;
    let follower = 1 - leader;

    // The leader provisions; the follower writes nothing.
    create_all(&admin, SEED_PARAMETERS).await;
    let seed = std::fs::read_to_string(workspace_root().join("gateway/tests/fixtures/seed.yaml"))
        .expect("seed");
    create_all(&admin, &seed).await;
    let deployments = api(&admin, "apps/v1", "Deployment", Some("kgateway-system")).await;
    eventually(
        Duration::from_secs(15),
        "the leader provisions the seed's Gateway",
        async || get(&deployments, "http").await,
        logs,
    )
    .await;
    let applies = r#"gateway_controller_applies_total{kind="Deployment",result="ok"}"#;
    assert!(
        replicas[leader].metric(applies) >= 1.0,
        "{}",
        replicas[leader].log()
    );
    assert_eq!(
        replicas[follower].metric(applies),
        0.0,
        "the follower applied something:\n{}",
        replicas[follower].log()
    );
    assert!(!replicas[follower].is_leader());
    // One status writer: the leader.
    eventually(
        Duration::from_secs(15),
        "the leader writes status",
        async || {
            replicas[leader]
                .log()
                .contains("status written")
                .then_some(())
        },
        logs,
    )
    .await;
    assert!(
        !replicas[follower].log().contains("status written"),
        "the follower wrote status:\n{}",
        replicas[follower].log()
    );

    // Kill the leader without letting it release the Lease: the follower takes over once the Lease expires,
    // and provisions the next Gateway.
    let transitions_before = get(&leases, CONTROLLER).await.expect("lease")["spec"]
        ["leaseTransitions"]
        .as_i64()
        .unwrap_or(0);
    replicas[leader].kill();
    let killed = Instant::now();
    let survivor = &replicas[follower];
    let logs = || format!("{}:\n{}", names[follower], survivor.log());
    eventually(
        Duration::from_secs(20),
        "the follower takes over the Lease",
        async || {
            (holder().await.as_deref() == Some(names[follower]) && survivor.is_leader())
                .then_some(())
        },
        logs,
    )
    .await;
    let took = killed.elapsed();
    eprintln!(
        "{} led {took:?} after {} was killed (lease duration 3s)",
        names[follower], names[leader]
    );
    // Safety, not speed: the Lease of a leader that stopped renewing is not taken before it can have expired.
    assert!(
        took >= Duration::from_secs(2),
        "took over a Lease that could not have expired yet: {took:?}"
    );
    let transitions = get(&leases, CONTROLLER).await.expect("lease")["spec"]["leaseTransitions"]
        .as_i64()
        .unwrap_or(0);
    assert_eq!(transitions, transitions_before + 1);

    create(&admin, json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "second", "namespace": "kgateway-system"},
        "spec": {"gatewayClassName": "kgateway", "listeners": [{"name": "http", "protocol": "HTTP", "port": 8080}]}})).await;
    eventually(
        Duration::from_secs(15),
        "the new leader provisions a new Gateway",
        async || get(&deployments, "second").await,
        logs,
    )
    .await;
    assert!(survivor.metric(applies) >= 1.0);
}
