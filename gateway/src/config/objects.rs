//! The typed objects a configuration is made of, and the kinds the gateway reads.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use super::backend::BackendObject;
use super::fields::Schema;
use super::gateway::GatewayObject;
use super::httproute::HttpRouteObject;
use super::reference_grant::ReferenceGrantObject;
use super::secret::SecretObject;

/// Gateway API's group (`parentRefs[].group`'s default, `allowedRoutes.kinds[].group`'s default).
pub const GATEWAY_API_GROUP: &str = "gateway.networking.k8s.io";
/// kgateway's group (`Backend`).
pub const KGATEWAY_GROUP: &str = "gateway.kgateway.dev";

/// The typed objects of a configuration, each list in configuration order (the order breaks route
/// precedence ties). Objects are identified by `metadata` (`namespace/name`, namespace `default` if none).
#[derive(Debug, Clone, Default)]
pub struct ObjectSet {
    pub gateways: Vec<GatewayObject>,
    pub http_routes: Vec<HttpRouteObject>,
    pub backends: Vec<BackendObject>,
    pub secrets: Vec<SecretObject>,
    /// ReferenceGrants (`gateway.networking.k8s.io/v1beta1`): read in cluster mode only (see
    /// `attach::permits`).
    pub reference_grants: Vec<ReferenceGrantObject>,
    /// The labels of each Namespace by name, for `allowedRoutes.namespaces.from: Selector` (cluster mode).
    pub namespace_labels: BTreeMap<String, BTreeMap<String, String>>,
}

/// The object kinds the gateway reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Gateway,
    HttpRoute,
    Backend,
    Secret,
}

impl Kind {
    /// The kind for an `apiVersion` and `kind`, if the gateway reads it.
    pub fn of(api_version: &str, kind: &str) -> Option<Kind> {
        let group = api_version.split('/').next().unwrap_or("");
        match (group, kind) {
            ("gateway.networking.k8s.io", "Gateway") => Some(Kind::Gateway),
            ("gateway.networking.k8s.io", "HTTPRoute") => Some(Kind::HttpRoute),
            ("gateway.kgateway.dev", "Backend") => Some(Kind::Backend),
            ("v1", "Secret") if api_version == "v1" => Some(Kind::Secret),
            _ => None,
        }
    }

    /// The `kind` as Kubernetes spells it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Gateway => "Gateway",
            Kind::HttpRoute => "HTTPRoute",
            Kind::Backend => "Backend",
            Kind::Secret => "Secret",
        }
    }

    /// The fields each struct of this kind's typed object reads (traced once from the serde derives).
    pub(super) fn schema(self) -> &'static Schema {
        static SCHEMAS: [OnceLock<Schema>; 4] = [
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
        ];
        match self {
            Kind::Gateway => SCHEMAS[0].get_or_init(Schema::of::<GatewayObject>),
            Kind::HttpRoute => SCHEMAS[1].get_or_init(Schema::of::<HttpRouteObject>),
            Kind::Backend => SCHEMAS[2].get_or_init(Schema::of::<BackendObject>),
            Kind::Secret => SCHEMAS[3].get_or_init(Schema::of::<SecretObject>),
        }
    }
}
