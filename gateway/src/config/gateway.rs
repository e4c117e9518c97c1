//! Gateway API `Gateway` (`gateway.networking.k8s.io/v1`, `v1beta1`): the typed object and its compilation
//! to the HTTP listeners routes attach to. The first listener port is the port served (see `config::compile`).
//!
//! Fields about provisioning (`gatewayClassName`, `infrastructure`, `addresses`) are read into the types but
//! not acted on here (provisioning is the deployment's job in file mode, the controller's in cluster mode).
//! Route admission — listener `hostname`, `allowedRoutes.namespaces` and `allowedRoutes.kinds` — is compiled
//! into each [`HttpListener`] and applied by `attach`; every listener (HTTP or not) is also described by a
//! [`ListenerFinding`] for the Gateway's status.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use super::meta::ObjectMeta;
use super::objects::GATEWAY_API_GROUP;
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
    /// With `from: Selector`: the labels of the route's Namespace must match (cluster mode).
    pub selector: Option<LabelSelector>,
}

/// A Kubernetes label selector (`matchLabels` and `matchExpressions`, ANDed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename = "LabelSelector", rename_all = "camelCase")]
pub struct LabelSelector {
    pub match_labels: Option<BTreeMap<String, String>>,
    pub match_expressions: Option<Vec<LabelSelectorRequirement>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename = "LabelSelectorRequirement", rename_all = "camelCase")]
pub struct LabelSelectorRequirement {
    pub key: Option<String>,
    /// `In`, `NotIn`, `Exists`, `DoesNotExist`.
    pub operator: Option<String>,
    pub values: Option<Vec<String>>,
}

impl LabelSelector {
    /// Whether `labels` match (Kubernetes semantics: every term must hold; an empty selector matches all).
    /// An unknown operator matches nothing.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let by_label = self
            .match_labels
            .iter()
            .flatten()
            .all(|(k, v)| labels.get(k) == Some(v));
        let by_expression = self.match_expressions.iter().flatten().all(|e| {
            let key = e.key.as_deref().unwrap_or_default();
            let values = e.values.as_deref().unwrap_or_default();
            let value = labels.get(key);
            match e.operator.as_deref() {
                Some("In") => value.is_some_and(|v| values.contains(v)),
                Some("NotIn") => value.is_none_or(|v| !values.contains(v)),
                Some("Exists") => value.is_some(),
                Some("DoesNotExist") => value.is_none(),
                _ => false,
            }
        });
        by_label && by_expression
    }
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

/// Which namespaces' routes a listener admits (`allowedRoutes.namespaces.from`; Gateway API's default is
/// `Same`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteNamespacePolicy {
    Same,
    All,
    Selector(LabelSelector),
}

/// An HTTP listener routes can attach to.
#[derive(Debug, Clone)]
pub(super) struct HttpListener {
    pub name: String,
    pub port: u16,
    /// Lower case; `*.` wildcards allowed; None = any host.
    pub hostname: Option<String>,
    pub namespaces: RouteNamespacePolicy,
    /// False when `allowedRoutes.kinds` names kinds but not HTTPRoute.
    pub admits_http_routes: bool,
}

/// A listener as the Gateway's status describes it (also the ones that are not served).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerFinding {
    pub name: String,
    pub port: Option<u16>,
    pub protocol: String,
    /// Why the listener is not accepted (an unsupported protocol, a bad port), if so.
    pub not_accepted: Option<(&'static str, String)>,
    /// The kinds of `allowedRoutes.kinds` that podcred does not serve (only HTTPRoute is).
    pub invalid_kinds: Vec<String>,
    /// Whether HTTPRoutes may attach (the listener's `supportedKinds`).
    pub admits_http_routes: bool,
    /// Another listener of the Gateway with the same port and hostname (`Conflicted=True/HostnameConflict`).
    pub conflicted_with: Option<String>,
}

/// What a Gateway compiled to, for its status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GatewayFinding {
    pub listeners: Vec<ListenerFinding>,
}

/// The HTTP listeners of each Gateway that compiled, by `namespace/name`.
pub(super) type Listeners = HashMap<String, Vec<HttpListener>>;

/// The HTTP listeners of each Gateway, and every Gateway's [`GatewayFinding`], by `namespace/name`.
pub(super) fn compile_all(
    gateways: &[GatewayObject],
    report: &mut Report,
) -> (Listeners, BTreeMap<String, GatewayFinding>) {
    let mut out = HashMap::new();
    let mut findings = BTreeMap::new();
    for gateway in gateways {
        let id = gateway.metadata.id();
        let mut finding = GatewayFinding::default();
        if let Some(listeners) = compile(&id, gateway, report, &mut finding) {
            out.insert(id.clone(), listeners);
        }
        findings.insert(id, finding);
    }
    (out, findings)
}

fn compile(
    id: &str,
    gateway: &GatewayObject,
    report: &mut Report,
    finding: &mut GatewayFinding,
) -> Option<Vec<HttpListener>> {
    let what = format!("Gateway {id}");
    let Some(spec) = &gateway.spec else {
        report.error(format!("{what}: spec: missing"));
        return None;
    };
    let mut listeners: Vec<HttpListener> = Vec::new();
    for (i, listener) in spec.listeners.iter().flatten().enumerate() {
        let field = format!("spec.listeners[{i}]");
        let name = listener.name.clone().unwrap_or_default();
        let protocol = listener.protocol.as_deref().unwrap_or("HTTP");
        let port = listener
            .port
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p > 0);
        let (admits_http_routes, invalid_kinds) = route_kinds(listener);
        let mut described = ListenerFinding {
            name: name.clone(),
            port,
            protocol: protocol.to_string(),
            not_accepted: None,
            invalid_kinds,
            admits_http_routes,
            conflicted_with: None,
        };
        let Some(port) = port else {
            report.error(format!(
                "{what}: {field}.port: missing or not a port number"
            ));
            described.not_accepted =
                Some(("PortUnavailable", "missing or not a port number".into()));
            finding.listeners.push(described);
            continue;
        };
        if protocol != "HTTP" {
            report.warn(format!("{what}: {field}.protocol: {protocol} is not supported (only HTTP); listener {name} skipped"));
            described.not_accepted = Some((
                "UnsupportedProtocol",
                format!("{protocol} is not supported (only HTTP)"),
            ));
            finding.listeners.push(described);
            continue;
        }
        let hostname = listener.hostname.as_ref().map(|h| h.to_ascii_lowercase());
        if let Some(other) = listeners
            .iter()
            .find(|l| l.port == port && l.hostname == hostname)
        {
            described.conflicted_with = Some(other.name.clone());
        }
        finding.listeners.push(described);
        let namespaces = match listener
            .allowed_routes
            .as_ref()
            .and_then(|a| a.namespaces.as_ref())
        {
            None => RouteNamespacePolicy::Same,
            Some(n) => match n.from.as_deref().unwrap_or("Same") {
                "All" => RouteNamespacePolicy::All,
                "Selector" => {
                    RouteNamespacePolicy::Selector(n.selector.clone().unwrap_or_default())
                }
                _ => RouteNamespacePolicy::Same,
            },
        };
        listeners.push(HttpListener {
            name,
            port,
            hostname,
            namespaces,
            admits_http_routes,
        });
    }
    if listeners.is_empty() {
        report.error(format!("{what}: spec.listeners: no HTTP listener"));
    }
    Some(listeners)
}

/// Cluster mode, where each proxy serves one Gateway on one port: the listeners on other ports than the
/// Gateway's lowest HTTP port are not served (`Accepted=False/PortUnavailable`) and take no routes.
pub(super) fn serve_one_port_each(
    listeners: &mut Listeners,
    findings: &mut BTreeMap<String, GatewayFinding>,
) {
    for (id, http) in listeners.iter_mut() {
        let Some(port) = http.iter().map(|l| l.port).min() else {
            continue;
        };
        http.retain(|l| l.port == port);
        for listener in findings
            .get_mut(id)
            .map(|f| f.listeners.as_mut_slice())
            .unwrap_or_default()
        {
            if listener.not_accepted.is_none() && listener.port != Some(port) {
                listener.not_accepted = Some((
                    "PortUnavailable",
                    format!("podcred serves one port per Gateway ({port}); this listener's port is not served"),
                ));
            }
        }
    }
}

/// Whether a listener admits HTTPRoutes, and the `allowedRoutes.kinds` entries podcred does not serve.
/// Without `kinds`, an HTTP listener admits HTTPRoute (Gateway API: the protocol's default kinds).
fn route_kinds(listener: &Listener) -> (bool, Vec<String>) {
    let Some(kinds) = listener
        .allowed_routes
        .as_ref()
        .and_then(|a| a.kinds.as_ref())
        .filter(|k| !k.is_empty())
    else {
        return (true, vec![]);
    };
    let mut admits = false;
    let mut invalid = Vec::new();
    for kind in kinds {
        let group = kind.group.as_deref().unwrap_or(GATEWAY_API_GROUP);
        let name = kind.kind.as_deref().unwrap_or_default();
        if group == GATEWAY_API_GROUP && name == "HTTPRoute" {
            admits = true;
        } else {
            invalid.push(format!("{group}/{name}"));
        }
    }
    (admits, invalid)
}
