//! `gateway --from-cluster --write-status` against a real kube-apiserver (tests/src/kube.rs): the Gateway API
//! CRDs from upstream (tests/peers/install-gateway-api-crds.sh, v1.6.3 standard channel) and our kgateway
//! `Backend` CRD (deploy/crds/), the gateway running as a ServiceAccount user bound to
//! deploy/rbac/gateway-from-cluster.yaml and deploy/rbac/gateway-status-writer.yaml only, the seed's Gateway and
//! HTTPRoute applied verbatim, the Lambda runtime serverless-offline (the seed's `echo`). Statuses are read
//! back from the API server and polled for, never waited for by time.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use integration::gateway::Gateway;
use integration::kube::ControlPlane;
use integration::kube::{gateway_api_crds, yaml_values};
use integration::serverless::ServerlessOffline;
use integration::{http_exchange, workspace_root};
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
    for object in yaml_values(yaml) {
        create(client, object).await;
    }
}

/// POST `path` with `Host: host`: (status, body).
fn post_to_host(addr: SocketAddr, path: &str, host: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return (0, String::new());
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{SEED_BODY}",
        SEED_BODY.len()
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut raw = String::new();
    let _ = stream.read_to_string(&mut raw);
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (
        status,
        raw.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default(),
    )
}

/// Polls `POST path` with `Host: host` until it answers `status`.
fn wait_for_host_status(gateway: &Gateway, path: &str, host: &str, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (got, body) = post_to_host(gateway.addr, path, host);
        if got == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "POST {path} (Host {host}): still {got} {body} (wanted {status})\ngateway log:\n{}",
            gateway.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The object as the API server holds it now.
async fn get(
    client: &Client,
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
) -> Value {
    let mut probe = json!({"apiVersion": api_version, "kind": kind, "metadata": {}});
    if let Some(ns) = namespace {
        probe["metadata"]["namespace"] = json!(ns);
    }
    let api = api_for(client, &probe).await;
    let object = api
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("get {kind} {name}: {e}"));
    serde_json::to_value(object).expect("object JSON")
}

async fn gateway_api(client: &Client, kind: &str, namespace: Option<&str>, name: &str) -> Value {
    get(
        client,
        "gateway.networking.k8s.io/v1",
        kind,
        namespace,
        name,
    )
    .await
}

/// The condition `kind` of a `conditions` array: (status, reason, message, observedGeneration).
fn condition(conditions: &Value, kind: &str) -> Option<(String, String, String, i64)> {
    conditions
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["reason"].as_str().unwrap_or_default().to_string(),
                c["message"].as_str().unwrap_or_default().to_string(),
                c["observedGeneration"].as_i64().unwrap_or(-1),
            )
        })
}

/// Our entry in a route's `status.parents` for the parentRef naming `gateway`.
fn our_parent<'a>(route: &'a Value, gateway: &str) -> Option<&'a Value> {
    route["status"]["parents"]
        .as_array()?
        .iter()
        .find(|p| p["controllerName"] == "podcred.dev/gateway" && p["parentRef"]["name"] == gateway)
}

/// Polls the HTTPRoute until our entry for `gateway` has `condition_type` with `status`/`reason` for the
/// route's current generation; returns that condition's message.
async fn wait_for_route_condition(
    client: &Client,
    gateway: &Gateway,
    (namespace, name): (&str, &str),
    parent: &str,
    condition_type: &str,
    (status, reason): (&str, &str),
) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let route = gateway_api(client, "HTTPRoute", Some(namespace), name).await;
        let generation = route["metadata"]["generation"].as_i64().unwrap_or(0);
        let got =
            our_parent(&route, parent).and_then(|p| condition(&p["conditions"], condition_type));
        if let Some((s, r, message, observed)) = &got {
            if s == status && r == reason && *observed == generation {
                return message.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "HTTPRoute {namespace}/{name} parent {parent}: {condition_type} is {got:?}, wanted {status}/{reason} at generation {generation}\nstatus: {:#}\ngateway log:\n{}",
            route["status"],
            gateway.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates the CRDs, the namespaces, the gateway's RBAC (reader and status writer) and our GatewayClass
/// `kgateway` plus another implementation's class `other`.
async fn prepare(admin: &Client, namespaces: &[&str]) {
    let root = workspace_root();
    for file in &gateway_api_crds() {
        create_all(admin, &std::fs::read_to_string(file).expect("CRD file")).await;
    }
    let backend_crd =
        std::fs::read_to_string(root.join("deploy/crds/gateway.kgateway.dev_backends.yaml"))
            .expect("Backend CRD");
    create_all(admin, &backend_crd).await;
    for ns in namespaces.iter().chain(&["podcred-system"]) {
        create(
            admin,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
        .await;
    }
    for file in ["gateway-from-cluster.yaml", "gateway-status-writer.yaml"] {
        let rbac = std::fs::read_to_string(root.join("deploy/rbac").join(file)).expect("RBAC");
        create_all(admin, &rbac).await;
    }
    create(
        admin,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": {"name": "kgateway"}, "spec": {"controllerName": "podcred.dev/gateway"}}),
    )
    .await;
    create(
        admin,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": {"name": "other"}, "spec": {"controllerName": "example.com/other-gateway"}}),
    )
    .await;
}

/// A Secret with the test's static keys and an AWS Backend for the `echo` function on serverless-offline.
async fn create_echo_backend(admin: &Client, sls: &ServerlessOffline, namespace: &str, name: &str) {
    create(
        admin,
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
               "metadata": {"name": format!("{name}-keys"), "namespace": namespace},
               "stringData": {"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}}),
    )
    .await;
    create(
        admin,
        json!({"apiVersion": "gateway.kgateway.dev/v1alpha1", "kind": "Backend",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"type": "AWS", "aws": {"region": "us-east-1", "accountId": "123456789012",
                 "auth": {"type": "Secret", "secretRef": {"name": format!("{name}-keys")}},
                 "lambda": {"functionName": "echo", "endpointURL": sls.endpoint()}}}}),
    )
    .await;
}

/// The gateway in cluster mode, writing status, as the ServiceAccount user with only deploy/rbac's
/// permissions.
fn start_gateway(plane: &ControlPlane) -> Gateway {
    let kubeconfig = plane.user_kubeconfig(GATEWAY_USER, &["system:serviceaccounts"]);
    let source = [
        "--from-cluster".into(),
        "--write-status".into(),
        "--kubeconfig".into(),
        kubeconfig.into_os_string(),
    ];
    let gateway = Gateway::start_with_source(&source, &integration::aws_isolated_env(), &[]);
    gateway.wait_ready(Duration::from_secs(20));
    gateway
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

/// Counts lines of the gateway log containing `text`.
fn log_count(gateway: &Gateway, text: &str) -> usize {
    gateway.log().matches(text).count()
}

/// Waits until the gateway has logged `text` at least `count` times.
fn wait_for_log_count(gateway: &Gateway, text: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while log_count(gateway, text) < count {
        assert!(
            Instant::now() < deadline,
            "{text:?} logged fewer than {count} times:\n{}",
            gateway.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn resource_version(object: &Value) -> String {
    object["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs peers: run make test"]
async fn the_seeds_objects_applied_to_the_cluster_are_served_with_status_and_edits_follow() {
    let sls = ServerlessOffline::start();
    let mut plane = ControlPlane::start().await;
    let admin = plane.client().await;
    let root = workspace_root();
    prepare(&admin, &["kgateway-system", "other-team"]).await;

    // The seed's objects: Gateway and HTTPRoute verbatim; the Backend with endpointURL (serverless-offline)
    // and static keys from a Secret.
    let seed = yaml_values(
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
    // A second route on the seed's Gateway, to its own Backend: it keeps working when the seed's breaks.
    create_echo_backend(&admin, &sls, "kgateway-system", "other").await;
    create(&admin, json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "other", "namespace": "kgateway-system"},
        "spec": {"parentRefs": [{"name": "http"}],
                 "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/other"}}],
                            "backendRefs": [{"name": "other", "group": "gateway.kgateway.dev", "kind": "Backend"}]}]}})).await;

    // Another class's Gateway, its route and Backend: not ours, never served, no status from us.
    create(&admin, json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "theirs", "namespace": "other-team"},
        "spec": {"gatewayClassName": "other", "listeners": [{"name": "http", "protocol": "HTTP", "port": 80}]}})).await;
    // Servable as it stands (static keys, a working endpoint): only its class keeps it out.
    create_echo_backend(&admin, &sls, "other-team", "theirs").await;
    create(&admin, json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "theirs", "namespace": "other-team"},
        "spec": {"parentRefs": [{"name": "theirs"}],
                 "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/theirs"}}],
                            "backendRefs": [{"name": "theirs", "group": "gateway.kgateway.dev", "kind": "Backend"}]}]}})).await;
    let theirs_before = gateway_api(&admin, "Gateway", Some("other-team"), "theirs").await;
    let their_class_before = gateway_api(&admin, "GatewayClass", None, "other").await;

    let gateway = start_gateway(&plane);

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

    // Status, as Gateway API implementations write it.
    wait_for_route_condition(
        &admin,
        &gateway,
        ("kgateway-system", "lambda"),
        "http",
        "Accepted",
        ("True", "Accepted"),
    )
    .await;
    wait_for_route_condition(
        &admin,
        &gateway,
        ("kgateway-system", "lambda"),
        "http",
        "ResolvedRefs",
        ("True", "ResolvedRefs"),
    )
    .await;
    let class = gateway_api(&admin, "GatewayClass", None, "kgateway").await;
    assert_eq!(
        condition(&class["status"]["conditions"], "Accepted").map(|c| (c.0, c.1)),
        Some(("True".into(), "Accepted".into())),
        "{:#}",
        class["status"]
    );
    let gw = gateway_api(&admin, "Gateway", Some("kgateway-system"), "http").await;
    let generation = gw["metadata"]["generation"].as_i64().expect("generation");
    for (kind, reason) in [("Accepted", "Accepted"), ("Programmed", "Programmed")] {
        let got = condition(&gw["status"]["conditions"], kind);
        assert_eq!(
            got.map(|c| (c.0, c.1, c.3)),
            Some(("True".into(), reason.into(), generation)),
            "{:#}",
            gw["status"]
        );
    }
    let listener = &gw["status"]["listeners"][0];
    assert_eq!(listener["name"], "http");
    assert_eq!(listener["attachedRoutes"], 2, "{listener:#}");
    assert_eq!(
        listener["supportedKinds"],
        json!([{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}])
    );
    for (kind, status, reason) in [
        ("Accepted", "True", "Accepted"),
        ("Programmed", "True", "Programmed"),
        ("ResolvedRefs", "True", "ResolvedRefs"),
        ("Conflicted", "False", "NoConflicts"),
    ] {
        assert_eq!(
            condition(&listener["conditions"], kind).map(|c| (c.0, c.1)),
            Some((status.into(), reason.into())),
            "{listener:#}"
        );
    }
    // Another class: untouched (the CRD's defaults, the same resourceVersion), and no entry on its route.
    let theirs = gateway_api(&admin, "Gateway", Some("other-team"), "theirs").await;
    assert_eq!(theirs["status"], theirs_before["status"]);
    assert_eq!(resource_version(&theirs), resource_version(&theirs_before));
    let their_class = gateway_api(&admin, "GatewayClass", None, "other").await;
    assert_eq!(
        resource_version(&their_class),
        resource_version(&their_class_before)
    );
    let their_route = gateway_api(&admin, "HTTPRoute", Some("other-team"), "theirs").await;
    assert!(
        their_route["status"]["parents"]
            .as_array()
            .is_none_or(|p| p.is_empty()),
        "{their_route:#}"
    );

    // A resync writes nothing: two changes that recompile (a label on the routes' Namespace) leave every
    // status — and so every resourceVersion — as it was. The second change is waited for so that the
    // first change's status round has finished.
    let watched = [
        gateway_api(&admin, "GatewayClass", None, "kgateway").await,
        gateway_api(&admin, "Gateway", Some("kgateway-system"), "http").await,
        gateway_api(&admin, "HTTPRoute", Some("kgateway-system"), "lambda").await,
        gateway_api(&admin, "HTTPRoute", Some("kgateway-system"), "other").await,
    ];
    let writes = log_count(&gateway, "status written");
    let changes = log_count(&gateway, "cluster configuration changed");
    let namespaces: Api<DynamicObject> = api_for(
        &admin,
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {}}),
    )
    .await;
    for (round, value) in ["one", "two"].into_iter().enumerate() {
        let label = json!({"metadata": {"labels": {"resync": value}}});
        namespaces
            .patch(
                "kgateway-system",
                &PatchParams::default(),
                &Patch::Merge(&label),
            )
            .await
            .expect("label the namespace");
        wait_for_log_count(
            &gateway,
            "cluster configuration changed",
            changes + round + 1,
        );
    }
    assert_eq!(
        log_count(&gateway, "status written"),
        writes,
        "a resync wrote status:\n{}",
        gateway.log()
    );
    for before in &watched {
        let kind = before["kind"].as_str().unwrap_or_default();
        let name = before["metadata"]["name"].as_str().unwrap_or_default();
        let now = gateway_api(&admin, kind, before["metadata"]["namespace"].as_str(), name).await;
        assert_eq!(
            resource_version(&now),
            resource_version(before),
            "{kind} {name} was written on resync"
        );
    }

    // Edit the route's path: the new path is served within a few seconds, the old one 404s, and the status
    // follows the new generation.
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
    wait_for_route_condition(
        &admin,
        &gateway,
        ("kgateway-system", "lambda"),
        "http",
        "Accepted",
        ("True", "Accepted"),
    )
    .await;

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

    // A filter type podcred does not implement: the route is not served, its status says why (and the log).
    let mut mirrored = filtered.clone();
    mirrored["spec"]["rules"][0]["filters"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "mirror", "port": 80}}}));
    routes
        .patch("lambda", &PatchParams::default(), &Patch::Merge(&mirrored))
        .await
        .expect("the API server accepts RequestMirror");
    wait_for_route_condition(
        &admin,
        &gateway,
        ("kgateway-system", "lambda"),
        "http",
        "Accepted",
        ("False", "UnsupportedValue"),
    )
    .await;
    let expected = "spec.rules[0].filters[1].type: \"RequestMirror\" is not a supported filter type (supported: RequestHeaderModifier, ResponseHeaderModifier, RequestRedirect, URLRewrite)";
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gateway.log().contains(expected) {
        assert!(
            Instant::now() < deadline,
            "the unsupported filter was not logged within 5 s; log:\n{}",
            gateway.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_for_status(&gateway, "/old/x", 404, Duration::from_secs(2));
    routes
        .patch("lambda", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch the HTTPRoute back");
    wait_for_status(&gateway, "/old/x", 404, Duration::from_secs(2));

    // Delete the Backend: the route's path answers 500 (Gateway API), its status says why, the other route
    // keeps working.
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
    let message = wait_for_route_condition(
        &admin,
        &gateway,
        ("kgateway-system", "lambda"),
        "http",
        "ResolvedRefs",
        ("False", "BackendNotFound"),
    )
    .await;
    assert_eq!(
        message,
        "spec.rules[0].backendRefs[0].name: Backend kgateway-system/lambda not found in the cluster"
    );
    wait_for_route_condition(
        &admin,
        &gateway,
        ("kgateway-system", "lambda"),
        "http",
        "Accepted",
        ("True", "Accepted"),
    )
    .await;
    wait_for_status(&gateway, "/echo2", 500, Duration::from_secs(5));
    let (status, body) = post(gateway.addr, "/other");
    assert_eq!(
        (status, body.as_str()),
        (200, SEED_RESPONSE),
        "the other route keeps working"
    );
    assert_eq!(post(gateway.addr, "/theirs").0, 404);
    let log = gateway.log();
    assert!(
        log.contains("not served: HTTPRoute kgateway-system/lambda: spec.rules[0].backendRefs[0].name: Backend kgateway-system/lambda not found in the cluster"),
        "the problem is logged naming object and field:\n{log}"
    );

    // The API server goes away: the gateway keeps serving; it comes back: the watches resume without a
    // restart of the gateway, and the next edit (the Backend back, the route moved again) is followed.
    assert!(
        !log.contains("cannot watch") && !log.contains("status write failed"),
        "a watch or a status write failed before the outage (RBAC or CRD):\n{log}"
    );
    plane.stop_apiserver();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        post(gateway.addr, "/other").0,
        200,
        "serving while the API server is down"
    );
    plane.start_apiserver().await;
    let backend = yaml_values(
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
    wait_for_route_condition(
        &admin,
        &gateway,
        ("kgateway-system", "lambda"),
        "http",
        "ResolvedRefs",
        ("True", "ResolvedRefs"),
    )
    .await;

    let log = gateway.log();
    assert!(
        !log.contains(SECRET_KEY),
        "the Secret's value is in the log:\n{log}"
    );
    assert!(log.contains("watch resumed"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs peers: run make test"]
async fn listeners_admit_routes_by_namespace_and_hostname_and_reference_grants_permit_backends() {
    let sls = ServerlessOffline::start();
    let plane = ControlPlane::start().await;
    let admin = plane.client().await;
    prepare(&admin, &["lambdas", "apps"]).await;
    create_echo_backend(&admin, &sls, "lambdas", "echo").await;
    // Listener `same` admits routes from its own namespace only (Gateway API's default) for
    // same.example.com; listener `all` admits every namespace for *.example.org.
    create(
        &admin,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": "lambdas"},
        "spec": {"gatewayClassName": "kgateway", "listeners": [
            {"name": "same", "protocol": "HTTP", "port": 8080, "hostname": "same.example.com"},
            {"name": "all", "protocol": "HTTP", "port": 8080, "hostname": "*.example.org",
             "allowedRoutes": {"namespaces": {"from": "All"}}}]}}),
    )
    .await;
    let route = |namespace: &str, name: &str, section: &str, hostnames: Value, path: &str| {
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"parentRefs": [{"name": "gw", "namespace": "lambdas", "sectionName": section}],
                     "hostnames": hostnames,
                     "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": path}}],
                                "backendRefs": [{"name": "echo", "namespace": "lambdas",
                                                 "group": "gateway.kgateway.dev", "kind": "Backend"}]}]}})
    };
    // From another namespace through `all`, to the Backend in `lambdas`: no ReferenceGrant yet.
    create(
        &admin,
        route("apps", "cross", "all", json!(["api.example.org"]), "/cross"),
    )
    .await;
    // From another namespace through `same`: not admitted.
    create(
        &admin,
        route("apps", "blocked", "same", json!([]), "/blocked"),
    )
    .await;
    // Same namespace through `same`, but no hostname in common.
    create(
        &admin,
        route(
            "lambdas",
            "wrong-host",
            "same",
            json!(["other.example.net"]),
            "/wrong-host",
        ),
    )
    .await;
    // Same namespace through `same`, the listener's hostname: served.
    create(
        &admin,
        route("lambdas", "local", "same", json!([]), "/local"),
    )
    .await;

    let gateway = start_gateway(&plane);
    wait_for_host_status(&gateway, "/local", "same.example.com", 200);
    assert_eq!(
        post_to_host(gateway.addr, "/local", "elsewhere.example.com").0,
        404,
        "only the listener's hostname"
    );

    let message = wait_for_route_condition(
        &admin,
        &gateway,
        ("apps", "cross"),
        "gw",
        "ResolvedRefs",
        ("False", "RefNotPermitted"),
    )
    .await;
    assert!(
        message.contains("no ReferenceGrant in lambdas permits HTTPRoutes from apps"),
        "{message}"
    );
    wait_for_route_condition(
        &admin,
        &gateway,
        ("apps", "cross"),
        "gw",
        "Accepted",
        ("True", "Accepted"),
    )
    .await;
    assert_eq!(
        post_to_host(gateway.addr, "/cross", "api.example.org").0,
        500,
        "not permitted: 500"
    );

    let message = wait_for_route_condition(
        &admin,
        &gateway,
        ("apps", "blocked"),
        "gw",
        "Accepted",
        ("False", "NotAllowedByListeners"),
    )
    .await;
    assert!(
        message.contains("do not admit HTTPRoutes from namespace apps"),
        "{message}"
    );
    assert_eq!(
        post_to_host(gateway.addr, "/blocked", "same.example.com").0,
        404
    );

    let message = wait_for_route_condition(
        &admin,
        &gateway,
        ("lambdas", "wrong-host"),
        "gw",
        "Accepted",
        ("False", "NoMatchingListenerHostname"),
    )
    .await;
    assert!(message.contains("other.example.net"), "{message}");
    assert_eq!(
        post_to_host(gateway.addr, "/wrong-host", "other.example.net").0,
        404
    );

    // The grant: the cross-namespace reference is served, its status resolves.
    create(&admin, json!({"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
        "metadata": {"name": "apps-to-echo", "namespace": "lambdas"},
        "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "apps"}],
                 "to": [{"group": "gateway.kgateway.dev", "kind": "Backend", "name": "echo"}]}})).await;
    wait_for_host_status(&gateway, "/cross", "api.example.org", 200);
    assert_eq!(
        post_to_host(gateway.addr, "/cross", "api.example.org").1,
        SEED_RESPONSE
    );
    wait_for_route_condition(
        &admin,
        &gateway,
        ("apps", "cross"),
        "gw",
        "ResolvedRefs",
        ("True", "ResolvedRefs"),
    )
    .await;

    // Each listener counts the routes attached through it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let gw = gateway_api(&admin, "Gateway", Some("lambdas"), "gw").await;
        let counts: Vec<(Value, Value)> = gw["status"]["listeners"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| (l["name"].clone(), l["attachedRoutes"].clone()))
            .collect();
        if counts == [(json!("same"), json!(1)), (json!("all"), json!(1))] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "attachedRoutes: {counts:?}\n{:#}",
            gw["status"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = gateway.log();
    assert!(!log.contains("status write failed"), "{log}");
    assert!(
        !log.contains(SECRET_KEY),
        "the Secret's value is in the log:\n{log}"
    );
}
