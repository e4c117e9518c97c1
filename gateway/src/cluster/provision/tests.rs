use serde_json::{json, Value};

use super::*;

fn defaults() -> ProxyDefaults {
    ProxyDefaults {
        image: Image {
            registry: Some("ghcr.io".into()),
            repository: Some("podcred/gateway".into()),
            tag: Some("0.1.0".into()),
            digest: None,
            pull_policy: Some("IfNotPresent".into()),
        },
        controller_name: "podcred.dev/gateway".into(),
        sidecar_annotation: "podcred.dev/inject".into(),
    }
}

/// The seed's Gateway, as the API server returns it.
fn seed_gateway() -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "http", "namespace": "kgateway-system", "uid": "u-1"},
        "spec": {
            "gatewayClassName": "kgateway",
            "infrastructure": {"parametersRef": {"name": "http-lambda", "group": "gateway.kgateway.dev", "kind": "GatewayParameters"}},
            "listeners": [{"protocol": "HTTP", "port": 8080, "name": "http", "allowedRoutes": {"namespaces": {"from": "All"}}}]
        }
    })
}

fn seed_parameters() -> Value {
    json!({"apiVersion": "gateway.kgateway.dev/v1alpha1", "kind": "GatewayParameters",
        "metadata": {"name": "http-lambda", "namespace": "kgateway-system"},
        "spec": {"kube": {"serviceAccount": {"extraAnnotations": {
            "eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/lambda-role"}}}}})
}

fn by_kind<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

#[test]
fn the_seeds_gateway_gets_a_service_account_with_the_role_a_deployment_and_a_service() {
    let gateway = seed_gateway();
    assert_eq!(parameters_ref(&gateway), Ok(Some("http-lambda".into())));
    let params = decode_parameters(&seed_parameters()).expect("decodes");
    let objects = desired_objects(&gateway, Some(&params), &defaults()).expect("provisions");
    assert_eq!(objects.len(), 3);
    for object in &objects {
        assert_eq!(object["metadata"]["name"], "http");
        assert_eq!(object["metadata"]["namespace"], "kgateway-system");
        assert_eq!(
            object["metadata"]["ownerReferences"],
            json!([{"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "name": "http", "uid": "u-1", "controller": true}])
        );
        assert_eq!(object["metadata"]["labels"][GATEWAY_NAME_LABEL], "http");
    }
    let sa = by_kind(&objects, "ServiceAccount");
    assert_eq!(
        sa["metadata"]["annotations"],
        json!({"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/lambda-role"})
    );
    let deployment = by_kind(&objects, "Deployment");
    assert!(
        deployment["spec"].get("replicas").is_none(),
        "unset replicas stay unowned"
    );
    let pod = &deployment["spec"]["template"];
    assert_eq!(pod["metadata"]["annotations"]["podcred.dev/inject"], "true");
    assert_eq!(pod["spec"]["serviceAccountName"], "http");
    let container = &pod["spec"]["containers"][0];
    assert_eq!(container["image"], "ghcr.io/podcred/gateway:0.1.0");
    assert_eq!(container["imagePullPolicy"], "IfNotPresent");
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
    assert_eq!(
        container["ports"][0],
        json!({"name": "http", "containerPort": 8080, "protocol": "TCP"})
    );
    assert_eq!(
        deployment["spec"]["selector"]["matchLabels"],
        Value::Object(selector_labels("http"))
    );
    let service = by_kind(&objects, "Service");
    assert_eq!(service["spec"]["type"], "LoadBalancer");
    assert_eq!(
        service["spec"]["ports"],
        json!([{"name": "http", "port": 8080, "targetPort": 8080, "protocol": "TCP"}])
    );
}

#[test]
fn parameters_set_replicas_image_resources_pod_metadata_and_service() {
    let params = decode_parameters(&json!({"spec": {"kube": {
        "deployment": {"replicas": 3},
        "envoyContainer": {
            "image": {"registry": "registry.example", "tag": "v2", "pullPolicy": "Always"},
            "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "128Mi"}},
            "env": [{"name": "RUST_LOG", "value": "debug"}]
        },
        "podTemplate": {"extraLabels": {"team": "a"}, "extraAnnotations": {"podcred.dev/inject": "false", "x": "y"},
                        "nodeSelector": {"pool": "edge"}},
        "service": {"type": "NodePort", "ports": [{"port": 8080, "nodePort": 30080}], "extraLabels": {"svc": "1"}},
        "istio": {"istioProxyContainer": {}}
    }}}))
    .expect("decodes, unknown kgateway fields ignored");
    let objects = desired_objects(&seed_gateway(), Some(&params), &defaults()).expect("provisions");
    let deployment = by_kind(&objects, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 3);
    let pod = &deployment["spec"]["template"];
    assert_eq!(pod["metadata"]["labels"]["team"], "a");
    assert_eq!(
        pod["metadata"]["annotations"]["podcred.dev/inject"], "false",
        "an explicit opt-out wins"
    );
    assert_eq!(pod["metadata"]["annotations"]["x"], "y");
    assert_eq!(pod["spec"]["nodeSelector"], json!({"pool": "edge"}));
    let container = &pod["spec"]["containers"][0];
    // Each image field overrides the default on its own (kgateway's rule).
    assert_eq!(container["image"], "registry.example/podcred/gateway:v2");
    assert_eq!(container["imagePullPolicy"], "Always");
    assert_eq!(container["resources"]["limits"]["memory"], "128Mi");
    assert_eq!(
        container["env"],
        json!([{"name": "RUST_LOG", "value": "debug"}])
    );
    let service = by_kind(&objects, "Service");
    assert_eq!(service["spec"]["type"], "NodePort");
    assert_eq!(service["spec"]["ports"][0]["nodePort"], 30080);
    assert_eq!(service["metadata"]["labels"]["svc"], "1");
}

#[test]
fn image_references_compose_as_kgateway_does() {
    let image = |registry: Option<&str>, tag: Option<&str>, digest: Option<&str>| Image {
        registry: registry.map(Into::into),
        repository: Some("podcred/gateway".into()),
        tag: tag.map(Into::into),
        digest: digest.map(Into::into),
        pull_policy: None,
    };
    assert_eq!(
        image(Some("r.io"), Some("1"), None).reference(),
        "r.io/podcred/gateway:1"
    );
    assert_eq!(
        image(None, Some("1"), None).reference(),
        "podcred/gateway:1"
    );
    assert_eq!(
        image(Some("r.io"), Some("1"), Some("sha256:ab")).reference(),
        "r.io/podcred/gateway:1@sha256:ab"
    );
    assert_eq!(
        image(Some("r.io"), None, Some("sha256:ab")).reference(),
        "r.io/podcred/gateway@sha256:ab"
    );
}

#[test]
fn listener_ports_are_http_only_deduplicated_and_named_validly() {
    let mut gateway = seed_gateway();
    gateway["spec"]["listeners"] = json!([
        {"protocol": "HTTP", "port": 8080, "name": "http"},
        {"protocol": "HTTP", "port": 8080, "name": "again", "hostname": "a.example"},
        {"protocol": "HTTPS", "port": 8443, "name": "tls"},
        {"protocol": "HTTP", "port": 9000, "name": "Not_A_Port_Name"}
    ]);
    let objects = desired_objects(&gateway, None, &defaults()).expect("provisions");
    let service = by_kind(&objects, "Service");
    let ports: Vec<(&str, u64)> = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["port"].as_u64().unwrap()))
        .collect();
    assert_eq!(ports, [("http", 8080), ("http-9000", 9000)]);

    gateway["spec"]["listeners"] = json!([{"protocol": "HTTPS", "port": 8443, "name": "tls"}]);
    assert_eq!(
        desired_objects(&gateway, None, &defaults()).unwrap_err(),
        "spec.listeners: no HTTP listener (the podcred gateway serves HTTP)"
    );
}

#[test]
fn wrong_parameters_are_named_by_field_without_quoting_values() {
    let error =
        decode_parameters(&json!({"spec": {"kube": {"deployment": {"replicas": "secret-ish"}}}}))
            .unwrap_err();
    assert!(
        error.starts_with("spec.kube.deployment.replicas: invalid type"),
        "{error}"
    );
    assert!(!error.contains("secret-ish"), "{error}");

    let mut gateway = seed_gateway();
    gateway["spec"]["infrastructure"]["parametersRef"] =
        json!({"name": "p", "group": "example.com", "kind": "Params"});
    assert_eq!(
        parameters_ref(&gateway).unwrap_err(),
        "spec.infrastructure.parametersRef: example.com/Params is not supported (only gateway.kgateway.dev/GatewayParameters)"
    );
    assert_eq!(parameters_ref(&json!({"spec": {}})), Ok(None));
}

#[test]
fn gateway_infrastructure_labels_and_annotations_reach_every_object() {
    let mut gateway = seed_gateway();
    gateway["spec"]["infrastructure"]["labels"] = json!({"cost-center": "42"});
    gateway["spec"]["infrastructure"]["annotations"] = json!({"note": "n"});
    let objects = desired_objects(&gateway, None, &defaults()).expect("provisions");
    for object in &objects {
        assert_eq!(
            object["metadata"]["labels"]["cost-center"], "42",
            "{}",
            object["kind"]
        );
        assert_eq!(
            object["metadata"]["annotations"]["note"], "n",
            "{}",
            object["kind"]
        );
    }
}
