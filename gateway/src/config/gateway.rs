//! Gateway API `Gateway` (`gateway.networking.k8s.io/v1`, `v1beta1`): the typed object and its compilation
//! to the HTTP listeners routes attach to. The first listener port is the port served (see `config::compile`).
//!
//! Fields about provisioning (`gatewayClassName`, `infrastructure`, `addresses`) and route admission
//! (`hostname`, `allowedRoutes`) are read into the types but not acted on here: provisioning is the
//! deployment's job in file mode.

use std::collections::{BTreeMap, HashMap};

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::meta::ObjectMeta;
use super::report::Report;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayObject {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: Option<GatewaySpec>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename = "GatewaySpec", rename_all = "camelCase")]
pub struct GatewaySpec {
    pub gateway_class_name: Option<String>,
    pub listeners: Option<Vec<Listener>>,
    pub infrastructure: Option<GatewayInfrastructure>,
    pub addresses: Option<Vec<GatewayAddress>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename = "Listener", rename_all = "camelCase")]
pub struct Listener {
    pub name: Option<String>,
    pub hostname: Option<String>,
    /// Gateway API `int32` (1–65535); a wider type so an out-of-range number gets our message.
    pub port: Option<i64>,
    pub protocol: Option<String>,
    pub allowed_routes: Option<AllowedRoutes>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename = "AllowedRoutes", rename_all = "camelCase")]
pub struct AllowedRoutes {
    pub namespaces: Option<RouteNamespaces>,
    pub kinds: Option<Vec<RouteGroupKind>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename = "RouteNamespaces", rename_all = "camelCase")]
pub struct RouteNamespaces {
    /// `All`, `Same` or `Selector`.
    pub from: Option<String>,
    /// A label selector; accepted, not interpreted.
    pub selector: Option<IgnoredAny>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename = "RouteGroupKind", rename_all = "camelCase")]
pub struct RouteGroupKind {
    pub group: Option<String>,
    pub kind: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename = "GatewayInfrastructure", rename_all = "camelCase")]
pub struct GatewayInfrastructure {
    pub labels: Option<BTreeMap<String, String>>,
    pub annotations: Option<BTreeMap<String, String>>,
    pub parameters_ref: Option<ParametersReference>,
}

/// `infrastructure.parametersRef` (kgateway: a `GatewayParameters`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename = "LocalParametersReference", rename_all = "camelCase")]
pub struct ParametersReference {
    pub group: Option<String>,
    pub kind: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename = "GatewayAddress", rename_all = "camelCase")]
pub struct GatewayAddress {
    #[serde(rename = "type")]
    pub address_type: Option<String>,
    pub value: Option<String>,
}

/// An HTTP listener routes can attach to.
#[derive(Debug, Clone)]
pub(super) struct HttpListener {
    pub name: String,
    pub port: u16,
}

/// The HTTP listeners of each Gateway that compiled, by `namespace/name`.
pub(super) type Listeners = HashMap<String, Vec<HttpListener>>;

pub(super) fn compile_all(gateways: &[GatewayObject], report: &mut Report) -> Listeners {
    let mut out = HashMap::new();
    for gateway in gateways {
        let id = gateway.metadata.id();
        if let Some(listeners) = compile(&id, gateway, report) {
            out.insert(id, listeners);
        }
    }
    out
}

fn compile(id: &str, gateway: &GatewayObject, report: &mut Report) -> Option<Vec<HttpListener>> {
    let what = format!("Gateway {id}");
    let Some(spec) = &gateway.spec else {
        report.error(format!("{what}: spec: missing"));
        return None;
    };
    let mut listeners = Vec::new();
    for (i, listener) in spec.listeners.iter().flatten().enumerate() {
        let field = format!("spec.listeners[{i}]");
        let name = listener.name.clone().unwrap_or_default();
        let protocol = listener.protocol.as_deref().unwrap_or("HTTP");
        let Some(port) = listener
            .port
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p > 0)
        else {
            report.error(format!(
                "{what}: {field}.port: missing or not a port number"
            ));
            continue;
        };
        if protocol != "HTTP" {
            report.warn(format!("{what}: {field}.protocol: {protocol} is not supported (only HTTP); listener {name} skipped"));
            continue;
        }
        listeners.push(HttpListener { name, port });
    }
    if listeners.is_empty() {
        report.error(format!("{what}: spec.listeners: no HTTP listener"));
    }
    Some(listeners)
}
