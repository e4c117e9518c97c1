//! `gateway --from-cluster` against a real kube-apiserver (tests/src/kube.rs): the Gateway API CRDs from
//! upstream (tests/peers/install-gateway-api-crds.sh, v1.6.3 standard channel) and our kgateway `Backend` CRD
//! (deploy/crds/), the gateway running as a ServiceAccount user bound to deploy/rbac/gateway-from-cluster.yaml
//! only, the seed's Gateway and HTTPRoute applied verbatim, the Lambda runtime serverless-offline (the seed's
//! `echo`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use integration::gateway::Gateway;
use integration::kube::ControlPlane;
use integration::serverless::ServerlessOffline;
use integration::{cache_dir, http_exchange, require_peer, workspace_root};
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::discovery::{Discovery, Scope};
use kube::{Api, Client};
use serde_json::{json, Value};

/// The response the seed documents, byte for byte.
const SEED_RESPONSE: &str = r#"{"statusCode":200,"body":"Response from AWS Lambda. Here's the request you just sent me: {\"key1\":\"value1\",\"key2\":\"value2\"}"}"#;
const SEED_BODY: &str = r#"{"key1":"value1", "key2":"value2"}"#;
/// The static keys of the test's Secret; the secret key must never appear in the gateway's log.
const ACCESS_KEY: &str = "AKIACLUSTERTEST00001";
const SECRET_KEY: &str = "clusterTestSecretKeyNeverLogged0123456789";
/// The ServiceAccount of deploy/rbac/gateway-from-cluster.yaml, as the API server names its user.
const GATEWAY_USER: &str = "system:serviceaccount:podcred-system:podcred-gateway";

fn gateway_api_crds() -> Vec<PathBuf> {
    let dir = require_peer(
        cache_dir().join("gateway-api/v1.6.3"),
        "install-gateway-api-crds.sh",
    );
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read the Gateway API CRD dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files
            .iter()
            .any(|p| p.ends_with("gateway.networking.k8s.io_httproutes.yaml")),
        "{files:?}"
    );
    files
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn gvk_of(value: &Value) -> kube::api::GroupVersionKind {
    let api_version = value["apiVersion"].as_str().expect("apiVersion");
    let kind = value["kind"].as_str().expect("kind");
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    kube::api::GroupVersionKind::gvk(group, version, kind)
}

/// The API serving `object`'s kind, retried while a freshly created CRD is not yet served.
async fn api_for(client: &Client, object: &Value) -> Api<DynamicObject> {
    let gvk = gvk_of(object);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Right after a CRD is created its group can be listed before its version is served (404).
        let discovery = Discovery::new(client.clone()).run().await.ok();
        if let Some((resource, caps)) = discovery.and_then(|d| d.resolve_gvk(&gvk)) {
            return match caps.scope {
                Scope::Namespaced => Api::namespaced_with(
                    client.clone(),
                    object["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or("default"),
                    &resource,
                ),
                Scope::Cluster => Api::all_with(client.clone(), &resource),
            };
        }
        assert!(Instant::now() < deadline, "{gvk:?} is not served");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn create(client: &Client, object: Value) {
    let api = api_for(client, &object).await;
    let what = format!("{} {}", object["kind"], object["metadata"]["name"]);
    let object: DynamicObject = serde_json::from_value(object).expect("object");
    api.create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("create {what}: {e}"));
}

async fn create_all(client: &Client, yaml: &str) {
    for object in documents(yaml) {
        create(client, object).await;
    }
}

/// POST `path` with the seed's body: (status, body).
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

/// Polls until `post(path)` answers `status`; returns how long it took.
fn wait_for_status(gateway: &Gateway, path: &str, status: u16, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let (got, body) = post(gateway.addr, path);
        if got == status {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "POST {path}: still {got} {body} after {within:?} (wanted {status})\ngateway log:\n{}",
            gateway.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs peers: run make test"]
async fn the_seeds_objects_applied_to_the_cluster_are_served_and_edits_follow() {
    let crds = gateway_api_crds();
    let sls = ServerlessOffline::start();
    let mut plane = ControlPlane::start().await;
    let admin = plane.client().await;
    let root = workspace_root();

    // CRDs: upstream's Gateway API (standard channel) and our Backend.
    for file in &crds {
        create_all(&admin, &std::fs::read_to_string(file).expect("CRD file")).await;
    }
    let backend_crd =
        std::fs::read_to_string(root.join("deploy/crds/gateway.kgateway.dev_backends.yaml"))
            .expect("Backend CRD");
    create_all(&admin, &backend_crd).await;

    for ns in ["kgateway-system", "podcred-system", "other-team"] {
        create(
            &admin,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
        .await;
    }
    let rbac =
        std::fs::read_to_string(root.join("deploy/rbac/gateway-from-cluster.yaml")).expect("RBAC");
    create_all(&admin, &rbac).await;

    // The seed's GatewayClass name, with our controller; and another implementation's class.
    create(
        &admin,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": {"name": "kgateway"}, "spec": {"controllerName": "podcred.dev/gateway"}}),
    )
    .await;
    create(
        &admin,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": {"name": "other"}, "spec": {"controllerName": "example.com/other-gateway"}}),
    )
    .await;

    // The seed's objects: Gateway and HTTPRoute verbatim; the Backend with endpointURL (serverless-offline)
    // and static keys from a Secret.
    let seed = documents(
        &std::fs::read_to_string(root.join("gateway/tests/fixtures/seed.yaml")).expect("seed"),
    );
    create(
        &admin,
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
               "metadata": {"name": "lambda-keys", "namespace": "kgateway-system"},
               "stringData": {"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}}),
    )
    .await;
    for mut object in seed {
        if object["kind"] == "Backend" {
            object["spec"]["aws"]["lambda"]["endpointURL"] = json!(sls.endpoint());
            object["spec"]["aws"]["auth"] =
                json!({"type": "Secret", "secretRef": {"name": "lambda-keys"}});
        }
        create(&admin, object).await;
    }

    // Another class's Gateway, its route and Backend: not ours, never served.
    create(&admin, json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "theirs", "namespace": "other-team"},
        "spec": {"gatewayClassName": "other", "listeners": [{"name": "http", "protocol": "HTTP", "port": 80}]}})).await;
    // Servable as it stands (static keys, a working endpoint): only its class keeps it out.
    create(
        &admin,
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "their-keys", "namespace": "other-team"},
        "stringData": {"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}}),
    )
    .await;
    create(
        &admin,
        json!({"apiVersion": "gateway.kgateway.dev/v1alpha1", "kind": "Backend",
        "metadata": {"name": "theirs", "namespace": "other-team"},
        "spec": {"type": "AWS", "aws": {"region": "us-east-1", "accountId": "123456789012",
                 "auth": {"type": "Secret", "secretRef": {"name": "their-keys"}},
                 "lambda": {"functionName": "echo", "endpointURL": sls.endpoint()}}}}),
    )
    .await;
    create(&admin, json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "theirs", "namespace": "other-team"},
        "spec": {"parentRefs": [{"name": "theirs"}],
                 "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/theirs"}}],
                            "backendRefs": [{"name": "theirs", "group": "gateway.kgateway.dev", "kind": "Backend"}]}]}})).await;

    // The gateway, as the ServiceAccount user with only deploy/rbac's permissions.
    let kubeconfig = plane.user_kubeconfig(GATEWAY_USER, &["system:serviceaccounts"]);
    let source = [
        "--from-cluster".into(),
        "--kubeconfig".into(),
        kubeconfig.into_os_string(),
    ];
    let gateway = Gateway::start_with_source(&source, &integration::aws_isolated_env(), &[]);
    gateway.wait_ready(Duration::from_secs(20));

    // The seed's curl, the seed's documented answer.
    let (status, body) = post(gateway.addr, "/echo");
    assert_eq!(
        (status, body.as_str()),
        (200, SEED_RESPONSE),
        "log:\n{}",
        gateway.log()
    );
    let (status, body) = post(gateway.addr, "/theirs");
    assert_eq!(
        status, 404,
        "another class's route must not be served: {body}"
    );

    // Edit the route's path: the new path is served within a few seconds, the old one 404s.
    let routes: Api<DynamicObject> = api_for(
        &admin,
        &json!({"apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute", "metadata": {"namespace": "kgateway-system"}}),
    )
    .await;
    let patch = json!({"spec": {"rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/echo2"}}],
        "backendRefs": [{"name": "lambda", "namespace": "kgateway-system", "group": "gateway.kgateway.dev", "kind": "Backend"}]}]}});
    routes
        .patch("lambda", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch the HTTPRoute");
    let took = wait_for_status(&gateway, "/echo2", 200, Duration::from_secs(2));
    eprintln!("the edited path was served {took:?} after the patch");
    assert_eq!(post(gateway.addr, "/echo2").1, SEED_RESPONSE);
    assert_eq!(post(gateway.addr, "/echo").0, 404, "the old path is gone");

    // Filters through the API server (its CRD validates them and defaults the redirect's statusCode; the
    // compiler of file mode serves them): a response header on the seed's rule, and a redirect rule.
    let backend_ref = json!({"name": "lambda", "namespace": "kgateway-system", "group": "gateway.kgateway.dev", "kind": "Backend"});
    let seed_rule = json!({"matches": [{"path": {"type": "PathPrefix", "value": "/echo2"}}],
        "filters": [{"type": "ResponseHeaderModifier",
            "responseHeaderModifier": {"set": [{"name": "x-filtered", "value": "from-the-cluster"}]}}],
        "backendRefs": [backend_ref]});
    let redirect_rule = json!({"matches": [{"path": {"type": "PathPrefix", "value": "/old"}}],
        "filters": [{"type": "RequestRedirect",
            "requestRedirect": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/echo2"}}}]});
    let filtered = json!({"spec": {"rules": [seed_rule, redirect_rule]}});
    routes
        .patch("lambda", &PatchParams::default(), &Patch::Merge(&filtered))
        .await
        .expect("patch the HTTPRoute with filters");
    wait_for_status(&gateway, "/old/x", 302, Duration::from_secs(2));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let redirected = client.get(gateway.url("/old/x?q=1")).send().await.unwrap();
    assert_eq!(redirected.status(), 302, "the CRD's default statusCode");
    // The seed's Gateway listens on 8080: that is the Location's port.
    assert_eq!(
        redirected.headers()["location"],
        "http://127.0.0.1:8080/echo2/x?q=1"
    );
    let filtered_reply = client
        .post(gateway.url("/echo2"))
        .header("content-type", "application/json")
        .body(SEED_BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(filtered_reply.headers()["x-filtered"], "from-the-cluster");
    assert_eq!(filtered_reply.text().await.unwrap(), SEED_RESPONSE);

    // A filter type podcred does not implement: rejected with the field named, the last good one serves.
    let mut mirrored = filtered.clone();
    mirrored["spec"]["rules"][0]["filters"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "mirror", "port": 80}}}));
    routes
        .patch("lambda", &PatchParams::default(), &Patch::Merge(&mirrored))
        .await
        .expect("the API server accepts RequestMirror");
    let expected = "HTTPRoute kgateway-system/lambda: spec.rules[0].filters[1].type: \"RequestMirror\" is not a supported filter type (supported: RequestHeaderModifier, ResponseHeaderModifier, RequestRedirect, URLRewrite)";
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gateway.log().contains(expected) {
        assert!(
            Instant::now() < deadline,
            "no rejection logged within 5 s; log:\n{}",
            gateway.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        post(gateway.addr, "/old/x").0,
        302,
        "the last good configuration serves"
    );
    routes
        .patch("lambda", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch the HTTPRoute back");
    wait_for_status(&gateway, "/old/x", 404, Duration::from_secs(2));

    // Delete the Backend: the configuration is rejected, the problem is logged, the last good one serves.
    let backends: Api<DynamicObject> = api_for(
        &admin,
        &json!({"apiVersion": "gateway.kgateway.dev/v1alpha1",
        "kind": "Backend", "metadata": {"namespace": "kgateway-system"}}),
    )
    .await;
    backends
        .delete("lambda", &DeleteParams::default())
        .await
        .expect("delete the Backend");
    let expected = "cluster configuration rejected (the last good one keeps serving): HTTPRoute kgateway-system/lambda: spec.rules[0].backendRefs[0].name: Backend kgateway-system/lambda not found in the cluster";
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gateway.log().contains(expected) {
        assert!(
            Instant::now() < deadline,
            "no rejection logged within 5 s; log:\n{}",
            gateway.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, body) = post(gateway.addr, "/echo2");
    assert_eq!(
        (status, body.as_str()),
        (200, SEED_RESPONSE),
        "the last good configuration keeps serving"
    );
    assert_eq!(post(gateway.addr, "/theirs").0, 404);

    // The API server goes away: the gateway keeps serving; it comes back: the watches resume without a
    // restart of the gateway, and the next edit (the Backend back, the route moved again) is followed.
    let log = gateway.log();
    assert!(
        !log.contains("cannot watch"),
        "a watch failed before the outage (RBAC or CRD):\n{log}"
    );
    plane.stop_apiserver();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        post(gateway.addr, "/echo2").0,
        200,
        "serving while the API server is down"
    );
    plane.start_apiserver().await;
    let backend = documents(
        &std::fs::read_to_string(root.join("gateway/tests/fixtures/seed.yaml")).expect("seed"),
    )
    .into_iter()
    .find(|o| o["kind"] == "Backend")
    .map(|mut b| {
        b["spec"]["aws"]["lambda"]["endpointURL"] = json!(sls.endpoint());
        b["spec"]["aws"]["auth"] = json!({"type": "Secret", "secretRef": {"name": "lambda-keys"}});
        b
    })
    .expect("the seed's Backend");
    create(&admin, backend).await;
    let mut patch = patch;
    patch["spec"]["rules"][0]["matches"][0]["path"]["value"] = json!("/echo3");
    routes
        .patch("lambda", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch the HTTPRoute after the restart");
    let took = wait_for_status(&gateway, "/echo3", 200, Duration::from_secs(15));
    eprintln!("after the API server restart, the edited path was served {took:?} after the patch");
    assert_eq!(post(gateway.addr, "/echo3").1, SEED_RESPONSE);
    assert_eq!(post(gateway.addr, "/echo2").0, 404);

    let log = gateway.log();
    assert!(
        !log.contains(SECRET_KEY),
        "the Secret's value is in the log:\n{log}"
    );
    assert!(log.contains("watch resumed"), "{log}");
}
