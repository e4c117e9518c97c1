//! Gateway configuration: the seed's own Kubernetes objects compiled into a validated [`Config`].
//!
//! Contract:
//! - Input objects: Gateway API `Gateway` (its HTTP listener port is the port served) and `HTTPRoute`
//!   (`gateway.networking.k8s.io/v1` or `v1beta1`), kgateway `Backend` (`gateway.kgateway.dev/v1alpha1`,
//!   `type: AWS`), and core `Secret` (static keys for `auth.type: Secret`). Other kinds are reported and ignored.
//! - Two entry points, one compiler: [`compile`] (and [`load_files`]) read multi-document YAML into the typed
//!   objects of this module; [`compile_objects`] takes typed objects that were decoded elsewhere (the API
//!   server's JSON: the types use the CRDs' camelCase field names). Both end in the same compilation.
//! - Every problem is one line naming the object and the field (`HTTPRoute ns/name: spec.rules[0]...: ...`).
//!   All problems of a configuration are reported, not only the first: every semantic problem across objects,
//!   and at least the first type error of each object. Errors reject the whole configuration; warnings
//!   (fields podcred does not implement, kinds it does not use) are reported and the rest is served.
//! - A field that the types do not read but that is one small edit (or only letter case) away from one they
//!   do is an error with "did you mean" (`spec.aws.lambda.endpointUrl` would otherwise send traffic to AWS).
//! - Secret values never appear in a problem, a warning or `Debug` output.
//! - Pure: no network, no clock. Secret files under `secrets_dir` are the only thing read besides the YAML.
//!
//! Layout — every file below imports only its siblings further down this list, never this one, never in a
//! circle; the compiler imports only [`crate::model`] and [`crate::routing`] from the rest of the crate:
//! - `document`: YAML documents → typed objects, with the problems found on the way;
//! - `objects`: [`ObjectSet`] and [`Kind`] (which kinds are read, and each kind's traced field schema);
//! - one module per object kind — [`httproute`], [`gateway`], [`backend`], [`secret`] — its typed serde
//!   structs (the manifest shape) and its compilation to the model; [`filters`] (HTTPRoute filters, used by
//!   [`httproute`]);
//! - `fields`: typed decoding with field paths, the traced known-field lists, unknown-field findings;
//! - [`duration`] (Gateway API durations), `meta` (`metadata`, object ids), `options` ([`LoadOptions`]),
//!   `report` (the problem report).

pub mod backend;
mod document;
pub mod duration;
mod fields;
pub mod filters;
pub mod gateway;
pub mod httproute;
mod meta;
mod objects;
mod options;
mod report;
pub mod secret;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::model::Backend;
use crate::routing::RouteTable;

pub use backend::{BackendObject, ANNOTATION_REQUEST_EVENT, ANNOTATION_RESPONSE_MODE};
pub use duration::parse_duration;
pub use filters::SUPPORTED_FILTERS;
pub use gateway::GatewayObject;
pub use httproute::HttpRouteObject;
pub use meta::ObjectMeta;
pub use objects::{Kind, ObjectSet};
pub use options::LoadOptions;
use report::Report;
pub use secret::SecretObject;

/// Used when a route sets no timeout: well above Envoy's 15 s, since functions may run for minutes.
pub const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(60);

/// A validated configuration, ready to serve.
#[derive(Debug, Clone)]
pub struct Config {
    /// The port of the Gateway's HTTP listener (None when the files hold no Gateway).
    pub listener_port: Option<u16>,
    pub routes: RouteTable,
    pub backends: Vec<Arc<Backend>>,
    /// Fields and objects we read but do not support, one line each.
    pub warnings: Vec<String>,
}

/// The configuration was rejected; each entry is one problem.
#[derive(Debug, thiserror::Error)]
#[error("invalid gateway configuration:\n  {}", .problems.join("\n  "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

/// Reads and compiles every file (each may hold several YAML documents).
pub fn load_files(
    paths: &[std::path::PathBuf],
    options: &LoadOptions,
) -> Result<Config, ConfigError> {
    let mut sources = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        match std::fs::read_to_string(path) {
            Ok(text) => sources.push((path.display().to_string(), text)),
            Err(e) => problems.push(format!("{}: cannot read: {e}", path.display())),
        }
    }
    if !problems.is_empty() {
        return Err(ConfigError { problems });
    }
    let borrowed: Vec<(&str, &str)> = sources
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    compile(&borrowed, options)
}

/// Compiles YAML sources (`(name, text)`, multi-document) into a [`Config`].
pub fn compile(sources: &[(&str, &str)], options: &LoadOptions) -> Result<Config, ConfigError> {
    compile_reporting_warnings(sources, options).0
}

/// [`compile`], also returning the warnings when the configuration is rejected.
fn compile_reporting_warnings(
    sources: &[(&str, &str)],
    options: &LoadOptions,
) -> (Result<Config, ConfigError>, Vec<String>) {
    let mut report = Report::default();
    let read = document::read(sources, &mut report);
    compile_model(&read.objects, &read.undecodable, options, report)
}

/// Compiles typed objects decoded elsewhere (e.g. from the Kubernetes API) into a [`Config`], with the same
/// checks and messages as [`compile`].
pub fn compile_objects(objects: &ObjectSet, options: &LoadOptions) -> Result<Config, ConfigError> {
    compile_model(objects, &HashSet::new(), options, Report::default()).0
}

/// The compilation both entry points share: Secrets, then Backends, Gateways and HTTPRoutes (which refer to
/// the others), then the checks across the whole configuration. `undecodable` names objects that were present
/// but could not be decoded, so references to them say "invalid" rather than "not found". Returns the warnings
/// also when the configuration is rejected.
fn compile_model(
    objects: &ObjectSet,
    undecodable: &HashSet<(Kind, String)>,
    options: &LoadOptions,
    mut report: Report,
) -> (Result<Config, ConfigError>, Vec<String>) {
    let ids_of = |kind: Kind, declared: Vec<String>| -> HashSet<String> {
        let undecoded = undecodable
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, id)| id.clone());
        declared.into_iter().chain(undecoded).collect()
    };
    let secrets = secret::decode_all(&objects.secrets, &mut report);
    let mut backends: HashMap<String, Arc<Backend>> = HashMap::new();
    for object in &objects.backends {
        if let Some(backend) = backend::compile(object, &secrets, options, &mut report) {
            backends.insert(backend.id.clone(), Arc::new(backend));
        }
    }
    let listeners = gateway::compile_all(&objects.gateways, &mut report);
    let gateway_ids = ids_of(
        Kind::Gateway,
        objects.gateways.iter().map(|g| g.metadata.id()).collect(),
    );
    let backend_ids = ids_of(
        Kind::Backend,
        objects.backends.iter().map(|b| b.metadata.id()).collect(),
    );
    let referents = httproute::Referents {
        listeners: &listeners,
        gateway_ids: &gateway_ids,
        backends: &backends,
        backend_ids: &backend_ids,
        default_timeout: options.default_timeout.unwrap_or(DEFAULT_ROUTE_TIMEOUT),
    };
    let mut rules = Vec::new();
    for (order, route) in objects.http_routes.iter().enumerate() {
        httproute::compile(route, order, &referents, &mut report, &mut rules);
    }
    let any_route =
        !objects.http_routes.is_empty() || undecodable.iter().any(|(k, _)| *k == Kind::HttpRoute);
    if !any_route {
        report.warn("no HTTPRoute found: every request will get 404".to_string());
    }

    let ports: BTreeSet<u16> = listeners.values().flatten().map(|l| l.port).collect();
    if ports.len() > 1 {
        report.warn(format!(
            "the Gateways listen on several ports ({ports:?}); podcred serves one port, the first: {} (override with --listen)",
            ports.iter().next().copied().unwrap_or_default()
        ));
    }
    if !report.errors.is_empty() {
        let problems = report.errors;
        return (Err(ConfigError { problems }), report.warnings);
    }
    let mut backends: Vec<Arc<Backend>> = backends.into_values().collect();
    backends.sort_by(|a, b| a.id.cmp(&b.id));
    let config = Config {
        listener_port: ports.iter().next().copied(),
        routes: RouteTable::new(rules),
        backends,
        warnings: report.warnings.clone(),
    };
    (Ok(config), report.warnings)
}

#[cfg(test)]
mod tests;
