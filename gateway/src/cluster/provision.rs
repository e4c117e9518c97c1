//! What the controller provisions for one Gateway, as kgateway does: a ServiceAccount, a Deployment and a
//! Service named after the Gateway, in its namespace, owned by it. Pure: JSON in (the Gateway and, when its
//! `spec.infrastructure.parametersRef` names one, the `GatewayParameters` spec), server-side-apply bodies out.
//!
//! Contract:
//! - Every object carries an `ownerReference` to the Gateway (`controller: true`), so deleting the Gateway
//!   deletes them (the garbage collector's job), and the labels in [`selector_labels`].
//! - Only the fields set here are sent, so with server-side apply the controller owns exactly these fields: a
//!   field dropped from `GatewayParameters` (an annotation, `replicas`) is removed from the object, and fields
//!   set by others (an HPA's `replicas` when GatewayParameters sets none) are left alone.
//! - `GatewayParameters` (gateway.kgateway.dev/v1alpha1) fields read, with kgateway's names
//!   (<https://github.com/kgateway-dev/kgateway/blob/main/api/v1alpha1/gateway_parameters_types.go>):
//!   `kube.serviceAccount.{extraLabels,extraAnnotations}`; `kube.deployment.{replicas,strategy}`;
//!   `kube.envoyContainer.{image,resources,env,securityContext}` (the proxy container: ours runs the podcred
//!   gateway instead of Envoy); `kube.podTemplate.{extraLabels,extraAnnotations,securityContext,
//!   imagePullSecrets,nodeSelector,affinity,tolerations,terminationGracePeriodSeconds,
//!   topologySpreadConstraints}`; `kube.service.{type,clusterIP,extraLabels,extraAnnotations,ports[].nodePort,
//!   externalTrafficPolicy}`. Other fields are accepted and ignored.
//! - The pod asks for the credproxy sidecar with the webhook's annotation (`podcred.dev/inject: "true"` by
//!   default; a `podTemplate.extraAnnotations` entry for the same key wins, e.g. `"false"` to opt out).
//! - The proxy container runs `gateway --from-cluster --gateway NS/NAME --controller-name …` and listens on
//!   the Gateway's HTTP listener port; the Service exposes every HTTP listener port.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::select::GATEWAY_API_GROUP;

/// kgateway's group, where `GatewayParameters` lives.
pub const PARAMETERS_GROUP: &str = "gateway.kgateway.dev";
/// The kind `spec.infrastructure.parametersRef` must name.
pub const PARAMETERS_KIND: &str = "GatewayParameters";
/// Label on every provisioned object: the Gateway it belongs to (Gateway API's well-known label).
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";
/// The proxy's admin port (`/healthz`, `/readyz`, `/metrics`) inside the pod.
pub const PROXY_ADMIN_PORT: u16 = 9091;

/// A container image, kgateway's `Image` type: each field overrides the controller's default on its own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    pub registry: Option<String>,
    pub repository: Option<String>,
    pub tag: Option<String>,
    pub digest: Option<String>,
    pub pull_policy: Option<String>,
}

impl Image {
    /// `self`'s fields where set, else `defaults`'.
    fn over(&self, defaults: &Image) -> Image {
        let pick = |a: &Option<String>, b: &Option<String>| a.clone().or_else(|| b.clone());
        Image {
            registry: pick(&self.registry, &defaults.registry),
            repository: pick(&self.repository, &defaults.repository),
            tag: pick(&self.tag, &defaults.tag),
            digest: pick(&self.digest, &defaults.digest),
            pull_policy: pick(&self.pull_policy, &defaults.pull_policy),
        }
    }

    /// `registry/repository[:tag][@digest]`, as kgateway composes it.
    pub fn reference(&self) -> String {
        let mut reference = match self.registry.as_deref().filter(|r| !r.is_empty()) {
            Some(registry) => format!("{registry}/{}", self.repository.as_deref().unwrap_or("")),
            None => self.repository.clone().unwrap_or_default(),
        };
        if let Some(tag) = self.tag.as_deref().filter(|t| !t.is_empty()) {
            reference.push(':');
            reference.push_str(tag);
        }
        if let Some(digest) = self.digest.as_deref().filter(|d| !d.is_empty()) {
            reference.push('@');
            reference.push_str(digest);
        }
        reference
    }
}

/// What the controller puts in every proxy unless `GatewayParameters` says otherwise.
#[derive(Debug, Clone)]
pub struct ProxyDefaults {
    /// The podcred gateway image.
    pub image: Image,
    /// `--controller-name` passed to the proxies (the class they serve).
    pub controller_name: String,
    /// The pod annotation that asks the podcred webhook for the credproxy sidecar.
    pub sidecar_annotation: String,
}

/// `GatewayParameters.spec`, the fields podcred reads (others are ignored, as the CRD preserves them).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParametersSpec {
    #[serde(default)]
    pub kube: Option<KubeSpec>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeSpec {
    pub deployment: Option<DeploymentSpec>,
    pub envoy_container: Option<ContainerSpec>,
    pub pod_template: Option<PodSpec>,
    pub service: Option<ServiceSpec>,
    pub service_account: Option<ServiceAccountSpec>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentSpec {
    pub replicas: Option<i32>,
    pub strategy: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerSpec {
    pub image: Option<Image>,
    pub resources: Option<Value>,
    pub env: Option<Vec<Value>>,
    pub security_context: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(default)]
    pub extra_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub extra_annotations: BTreeMap<String, String>,
    pub security_context: Option<Value>,
    pub image_pull_secrets: Option<Vec<Value>>,
    pub node_selector: Option<BTreeMap<String, String>>,
    pub affinity: Option<Value>,
    pub tolerations: Option<Vec<Value>>,
    pub termination_grace_period_seconds: Option<i64>,
    pub topology_spread_constraints: Option<Vec<Value>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    #[serde(rename = "type")]
    pub service_type: Option<String>,
    #[serde(rename = "clusterIP")]
    pub cluster_ip: Option<String>,
    #[serde(default)]
    pub extra_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub extra_annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub ports: Vec<ServicePort>,
    pub external_traffic_policy: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    pub port: u16,
    pub node_port: Option<u16>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountSpec {
    #[serde(default)]
    pub extra_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub extra_annotations: BTreeMap<String, String>,
}

/// The `GatewayParameters` a Gateway names in `spec.infrastructure.parametersRef` (same namespace, as Gateway
/// API's `LocalParametersReference` says): `Ok(None)` when it names none.
pub fn parameters_ref(gateway: &Value) -> Result<Option<String>, String> {
    let Some(reference) = gateway.pointer("/spec/infrastructure/parametersRef") else {
        return Ok(None);
    };
    let group = reference.get("group").and_then(Value::as_str).unwrap_or("");
    let kind = reference.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = reference.get("name").and_then(Value::as_str).unwrap_or("");
    if group != PARAMETERS_GROUP || kind != PARAMETERS_KIND {
        return Err(format!(
            "spec.infrastructure.parametersRef: {group}/{kind} is not supported (only {PARAMETERS_GROUP}/{PARAMETERS_KIND})"
        ));
    }
    Ok(Some(name.to_string()))
}

/// Decodes a `GatewayParameters` object's `spec`; the error names the field (`spec.kube.deployment.replicas:
/// invalid type …`) and never quotes values.
pub fn decode_parameters(object: &Value) -> Result<ParametersSpec, String> {
    let spec = object.get("spec").cloned().unwrap_or(Value::Null);
    if spec.is_null() {
        return Ok(ParametersSpec::default());
    }
    serde_path_to_error::deserialize::<_, ParametersSpec>(spec).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde_json's messages quote offending strings (`invalid type: string "x", expected i32`): keep the
        // kind of error and what was expected, never the value.
        let kind = inner.split(':').next().unwrap_or("invalid").trim();
        match inner.rsplit_once(", expected ") {
            Some((_, expected)) => format!("spec.{path}: {kind}, expected {expected}"),
            None => format!("spec.{path}: {kind}"),
        }
    })
}

/// The labels that select the proxy's pods (and mark every provisioned object).
pub fn selector_labels(gateway_name: &str) -> Map<String, Value> {
    let mut labels = Map::new();
    labels.insert("app.kubernetes.io/name".into(), json!(gateway_name));
    labels.insert("app.kubernetes.io/instance".into(), json!(gateway_name));
    labels.insert(GATEWAY_NAME_LABEL.into(), json!(gateway_name));
    labels
}

/// One HTTP listener of the Gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerPort {
    pub name: String,
    pub port: u16,
}

/// The Gateway's HTTP listeners, one per port (the first listener named for a port names it).
pub fn http_listener_ports(gateway: &Value) -> Vec<ListenerPort> {
    let mut ports: Vec<ListenerPort> = Vec::new();
    let listeners = gateway
        .pointer("/spec/listeners")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for listener in listeners {
        if listener.get("protocol").and_then(Value::as_str) != Some("HTTP") {
            continue;
        }
        let Some(port) = listener
            .get("port")
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        if ports.iter().any(|p| p.port == port) {
            continue;
        }
        let name = listener
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("http")
            .to_string();
        ports.push(ListenerPort { name, port });
    }
    ports
}

/// ServiceAccount, Deployment and Service for `gateway` (a Gateway object as the API server sends it), with
/// `parameters` the decoded `GatewayParameters` it references (if any). Errors name the Gateway field.
pub fn desired_objects(
    gateway: &Value,
    parameters: Option<&ParametersSpec>,
    defaults: &ProxyDefaults,
) -> Result<Vec<Value>, String> {
    let str_at = |pointer: &str| gateway.pointer(pointer).and_then(Value::as_str);
    let name = str_at("/metadata/name").ok_or("metadata.name is missing")?;
    let namespace = str_at("/metadata/namespace").ok_or("metadata.namespace is missing")?;
    let uid = str_at("/metadata/uid").ok_or("metadata.uid is missing")?;
    let ports = http_listener_ports(gateway);
    if ports.is_empty() {
        return Err("spec.listeners: no HTTP listener (the podcred gateway serves HTTP)".into());
    }

    let empty = KubeSpec::default();
    let kube = parameters.and_then(|p| p.kube.as_ref()).unwrap_or(&empty);
    let owner = json!([{
        "apiVersion": format!("{GATEWAY_API_GROUP}/v1"),
        "kind": "Gateway",
        "name": name,
        "uid": uid,
        "controller": true,
    }]);
    // Gateway API's spec.infrastructure.{labels,annotations} go on every generated object.
    let infrastructure = |field: &str| -> Map<String, Value> {
        gateway
            .pointer(&format!("/spec/infrastructure/{field}"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let base_labels = {
        let mut labels = infrastructure("labels");
        labels.extend(selector_labels(name));
        labels
    };
    let base_annotations = infrastructure("annotations");
    let metadata = |extra_labels: &BTreeMap<String, String>,
                    extra_annotations: &BTreeMap<String, String>| {
        let mut labels = base_labels.clone();
        labels.extend(extra_labels.iter().map(|(k, v)| (k.clone(), json!(v))));
        let mut annotations = base_annotations.clone();
        annotations.extend(extra_annotations.iter().map(|(k, v)| (k.clone(), json!(v))));
        let mut metadata = json!({
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": owner,
        });
        if !annotations.is_empty() {
            metadata["annotations"] = Value::Object(annotations);
        }
        metadata
    };

    let sa = kube.service_account.clone().unwrap_or_default();
    let service_account = json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(&sa.extra_labels, &sa.extra_annotations),
    });

    let pod = kube.pod_template.clone().unwrap_or_default();
    let container_spec = kube.envoy_container.clone().unwrap_or_default();
    let image = container_spec
        .image
        .clone()
        .unwrap_or_default()
        .over(&defaults.image);
    let mut container = json!({
        "name": "gateway",
        "image": image.reference(),
        "args": [
            "--from-cluster",
            format!("--gateway={namespace}/{name}"),
            format!("--controller-name={}", defaults.controller_name),
            format!("--admin-listen=0.0.0.0:{PROXY_ADMIN_PORT}"),
            "--log-format=json",
        ],
        "ports": ports.iter().map(|p| json!({"name": port_name(&p.name, p.port), "containerPort": p.port, "protocol": "TCP"}))
            .chain([json!({"name": "admin", "containerPort": PROXY_ADMIN_PORT, "protocol": "TCP"})])
            .collect::<Vec<_>>(),
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": PROXY_ADMIN_PORT}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": PROXY_ADMIN_PORT}, "periodSeconds": 10, "failureThreshold": 6},
        "securityContext": container_spec.security_context.clone().unwrap_or_else(|| json!({
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "runAsNonRoot": true,
            "capabilities": {"drop": ["ALL"]},
        })),
    });
    if let Some(policy) = &image.pull_policy {
        container["imagePullPolicy"] = json!(policy);
    }
    if let Some(resources) = &container_spec.resources {
        container["resources"] = resources.clone();
    }
    if let Some(env) = &container_spec.env {
        container["env"] = json!(env);
    }
    let mut pod_labels = selector_labels(name);
    pod_labels.extend(pod.extra_labels.iter().map(|(k, v)| (k.clone(), json!(v))));
    let mut pod_annotations = Map::new();
    pod_annotations.insert(defaults.sidecar_annotation.clone(), json!("true"));
    pod_annotations.extend(
        pod.extra_annotations
            .iter()
            .map(|(k, v)| (k.clone(), json!(v))),
    );
    let mut pod_spec = json!({
        "serviceAccountName": name,
        "containers": [container],
        "securityContext": pod.security_context.clone().unwrap_or_else(|| json!({
            "runAsNonRoot": true,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
        })),
    });
    let optional = [
        (
            "imagePullSecrets",
            pod.image_pull_secrets.as_ref().map(|v| json!(v)),
        ),
        ("nodeSelector", pod.node_selector.as_ref().map(|v| json!(v))),
        ("affinity", pod.affinity.clone()),
        ("tolerations", pod.tolerations.as_ref().map(|v| json!(v))),
        (
            "terminationGracePeriodSeconds",
            pod.termination_grace_period_seconds.map(|v| json!(v)),
        ),
        (
            "topologySpreadConstraints",
            pod.topology_spread_constraints.as_ref().map(|v| json!(v)),
        ),
    ];
    for (field, value) in optional {
        if let Some(value) = value {
            pod_spec[field] = value;
        }
    }
    let deployment_params = kube.deployment.clone().unwrap_or_default();
    let mut deployment_spec = json!({
        "selector": {"matchLabels": selector_labels(name)},
        "template": {
            "metadata": {"labels": pod_labels, "annotations": pod_annotations},
            "spec": pod_spec,
        },
    });
    if let Some(replicas) = deployment_params.replicas {
        deployment_spec["replicas"] = json!(replicas);
    }
    if let Some(strategy) = deployment_params.strategy {
        deployment_spec["strategy"] = strategy;
    }
    let no_extra = BTreeMap::new();
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(&no_extra, &no_extra),
        "spec": deployment_spec,
    });

    let service_params = kube.service.clone().unwrap_or_default();
    let service_ports: Vec<Value> = ports
        .iter()
        .map(|p| {
            let mut port = json!({
                "name": port_name(&p.name, p.port),
                "port": p.port,
                "targetPort": p.port,
                "protocol": "TCP",
            });
            if let Some(node_port) = service_params
                .ports
                .iter()
                .find(|sp| sp.port == p.port)
                .and_then(|sp| sp.node_port)
            {
                port["nodePort"] = json!(node_port);
            }
            port
        })
        .collect();
    let mut service_spec = json!({
        // kgateway's default: the proxy is the cluster's entry point.
        "type": service_params.service_type.as_deref().unwrap_or("LoadBalancer"),
        "selector": selector_labels(name),
        "ports": service_ports,
    });
    if let Some(ip) = &service_params.cluster_ip {
        service_spec["clusterIP"] = json!(ip);
    }
    if let Some(policy) = &service_params.external_traffic_policy {
        service_spec["externalTrafficPolicy"] = json!(policy);
    }
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(&service_params.extra_labels, &service_params.extra_annotations),
        "spec": service_spec,
    });
    Ok(vec![service_account, deployment, service])
}

/// A port name Kubernetes accepts (IANA_SVC_NAME: ≤ 15 lowercase alphanumerics and '-'): the listener's name
/// when it fits, else `http-<port>`.
fn port_name(listener: &str, port: u16) -> String {
    let fits = !listener.is_empty()
        && listener.len() <= 15
        && listener
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && listener.chars().any(|c| c.is_ascii_lowercase())
        && !listener.starts_with('-')
        && !listener.ends_with('-')
        && !listener.contains("--");
    if fits {
        listener.to_string()
    } else {
        format!("http-{port}")
    }
}

#[cfg(test)]
mod tests;
