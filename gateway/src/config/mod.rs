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

mod attach;
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
pub mod reference_grant;
mod report;
pub mod secret;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::model::Backend;
use crate::routing::RouteTable;

pub use attach::{Attachment, Hostnames};
pub use backend::{BackendObject, ANNOTATION_REQUEST_EVENT, ANNOTATION_RESPONSE_MODE};
pub use duration::parse_duration;
pub use filters::SUPPORTED_FILTERS;
pub use gateway::{GatewayFinding, GatewayObject, ListenerFinding};
pub use httproute::HttpRouteObject;
pub use httproute::ParentReference;
pub use meta::ObjectMeta;
pub use objects::{Kind, ObjectSet, GATEWAY_API_GROUP, KGATEWAY_GROUP};
pub use options::{LoadOptions, Source};
pub use reference_grant::ReferenceGrantObject;
use report::Report;
pub use report::{Problem, Reason};
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
    /// What each object compiled to, for status (cluster mode also serves around errors: see [`Findings`]).
    pub findings: Findings,
}

/// What the compiler found, object by object — the input of the cluster's status.
///
/// In file mode a configuration with errors is rejected. In cluster mode ([`Source::Cluster`]) errors reject
/// only what they are about: a Backend with errors is not served and the `backendRefs` to it answer 500
/// (`BackendNotFound`), as do references no ReferenceGrant permits (`RefNotPermitted`) and references to other
/// kinds (`InvalidKind`); an HTTPRoute with errors of its own is not served (`UnsupportedValue`); a
/// `parentRef` that does not attach is skipped (`NoMatchingParent`, `NotAllowedByListeners`,
/// `NoMatchingListenerHostname`); a Gateway with errors has no listeners to attach to.
#[derive(Debug, Clone, Default)]
pub struct Findings {
    /// Every error, structured (in cluster mode: what was not served, and why).
    pub errors: Vec<Problem>,
    pub warnings: Vec<Problem>,
    /// Every Gateway's listeners, by `namespace/name`.
    pub gateways: BTreeMap<String, GatewayFinding>,
    /// Gateways that compiled without errors.
    pub valid_gateways: BTreeSet<String>,
    /// Per HTTPRoute (`namespace/name`), per `parentRef` in spec order: where it attached, or why not.
    pub parents: BTreeMap<String, Vec<ParentOutcome>>,
    /// HTTPRoutes whose rules are served.
    pub served_routes: BTreeSet<String>,
}

/// A `parentRef` and where it attached, or why not.
pub type ParentOutcome = (ParentReference, Result<Attachment, Problem>);

impl Findings {
    /// The errors about `kind` `object`.
    pub fn errors_about<'a>(
        &'a self,
        kind: &'a str,
        object: &'a str,
    ) -> impl Iterator<Item = &'a Problem> {
        self.errors.iter().filter(move |p| p.is_about(kind, object))
    }

    /// The warnings about `kind` `object`.
    pub fn warnings_about<'a>(
        &'a self,
        kind: &'a str,
        object: &'a str,
    ) -> impl Iterator<Item = &'a Problem> {
        self.warnings
            .iter()
            .filter(move |p| p.is_about(kind, object))
    }
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

/// [`compile_objects`] for objects some of which could not be decoded: `undecodable` holds one problem per
/// such object (its `kind` and `object` name it), so references to it say "invalid" rather than "not found".
pub fn compile_decoded(
    objects: &ObjectSet,
    undecodable: Vec<Problem>,
    options: &LoadOptions,
) -> Result<Config, ConfigError> {
    let ids = undecodable
        .iter()
        .filter_map(|p| {
            let kind = match p.kind.as_str() {
                "Gateway" => Kind::Gateway,
                "HTTPRoute" => Kind::HttpRoute,
                "Backend" => Kind::Backend,
                "Secret" => Kind::Secret,
                _ => return None,
            };
            Some((kind, p.object.clone()))
        })
        .collect();
    let report = Report {
        errors: undecodable,
        warnings: vec![],
    };
    compile_model(objects, &ids, options, report).0
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
    let cluster = options.source == Source::Cluster;
    let secrets = secret::decode_all(&objects.secrets, &mut report);
    let mut backends: HashMap<String, Arc<Backend>> = HashMap::new();
    let mut backend_problems: HashMap<String, Vec<String>> = HashMap::new();
    for object in &objects.backends {
        let since = report.error_count();
        let id = object.metadata.id();
        match backend::compile(object, &secrets, options, &mut report) {
            Some(backend) if !report.has_errors_about(since, "Backend", &id) => {
                backends.insert(backend.id.clone(), Arc::new(backend));
            }
            _ => {
                let problems = report.errors[since..]
                    .iter()
                    .map(|p| in_source_words(&p.field_message(), cluster))
                    .collect();
                backend_problems.insert(id, problems);
            }
        }
    }
    let since = report.error_count();
    let (mut listeners, mut gateway_findings) =
        gateway::compile_all(&objects.gateways, &mut report);
    if cluster {
        gateway::serve_one_port_each(&mut listeners, &mut gateway_findings);
    }
    let valid_gateways: BTreeSet<String> = listeners
        .keys()
        .filter(|id| !report.has_errors_about(since, "Gateway", id))
        .cloned()
        .collect();
    // Cluster mode: a Gateway with errors has nothing to attach to (its routes say NoMatchingParent).
    let listeners = if cluster {
        listeners
            .into_iter()
            .filter(|(id, _)| valid_gateways.contains(id))
            .collect()
    } else {
        listeners
    };
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
        backend_problems: &backend_problems,
        default_timeout: options.default_timeout.unwrap_or(DEFAULT_ROUTE_TIMEOUT),
        cluster: cluster.then_some(httproute::ClusterReferents {
            reference_grants: &objects.reference_grants,
            namespace_labels: &objects.namespace_labels,
        }),
    };
    let mut rules = Vec::new();
    let mut parents = BTreeMap::new();
    let mut served_routes = BTreeSet::new();
    for (order, route) in objects.http_routes.iter().enumerate() {
        let id = route.metadata.id();
        let since = report.error_count();
        let mut route_rules = Vec::new();
        let attachments =
            httproute::compile(route, order, &referents, &mut report, &mut route_rules);
        // Cluster mode serves a route unless it has errors of its own (not about a parentRef, which only
        // skips that parent, nor about a backendRef, which answers 500).
        let own_errors = report.errors[since..].iter().any(|p| {
            p.is_about("HTTPRoute", &id)
                && !p.reason.is_attachment()
                && !p.reason.is_unresolved_ref()
        });
        if !route_rules.is_empty() && !own_errors {
            served_routes.insert(id.clone());
        }
        if !cluster || !own_errors {
            rules.extend(route_rules);
        }
        if let Some(attachments) = attachments {
            let outcomes = attachments
                .parents
                .into_iter()
                .map(|(parent, result)| {
                    let result = result.map_err(|(reason, field, message)| {
                        Problem::new("HTTPRoute", &id, &field, reason, message)
                    });
                    (parent, result)
                })
                .collect();
            parents.insert(id, outcomes);
        }
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
    let lines = |problems: &[Problem]| -> Vec<String> {
        problems
            .iter()
            .map(|p| in_source_words(&p.line(), cluster))
            .collect()
    };
    for problem in report.errors.iter_mut().chain(report.warnings.iter_mut()) {
        problem.message = in_source_words(&problem.message, cluster);
    }
    let warnings = lines(&report.warnings);
    if !cluster && !report.errors.is_empty() {
        return (
            Err(ConfigError {
                problems: lines(&report.errors),
            }),
            warnings,
        );
    }
    let mut backends: Vec<Arc<Backend>> = backends.into_values().collect();
    backends.sort_by(|a, b| a.id.cmp(&b.id));
    let config = Config {
        listener_port: ports.iter().next().copied(),
        routes: RouteTable::new(rules),
        backends,
        warnings: warnings.clone(),
        findings: Findings {
            errors: report.errors,
            warnings: report.warnings,
            gateways: gateway_findings,
            valid_gateways,
            parents,
            served_routes,
        },
    };
    (Ok(config), warnings)
}

/// The backend compiler's messages say where Secrets were looked for in file terms; in cluster mode they
/// were looked for in the cluster.
fn in_source_words(line: &str, cluster: bool) -> String {
    if !cluster {
        return line.to_string();
    }
    line.replace(
        "not in the config files (add the Secret manifest, or mount it and pass --secrets-dir)",
        "not in the cluster (create it in the Backend's namespace, or mount it and pass --secrets-dir)",
    )
    .replace("neither in the config files nor under", "neither in the cluster nor under")
}

#[cfg(test)]
mod tests;
