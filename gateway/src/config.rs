//! Gateway configuration: the seed's own Kubernetes manifests, read from multi-document YAML and compiled into a
//! validated [`Config`].
//!
//! Contract:
//! - Input objects: Gateway API `Gateway` (its HTTP listener port is the port served) and `HTTPRoute`
//!   (`gateway.networking.k8s.io/v1` or `v1beta1`), kgateway `Backend` (`gateway.kgateway.dev/v1alpha1`,
//!   `type: AWS`), and core `Secret` (static keys for `auth.type: Secret`). Other kinds are reported and ignored.
//! - Every problem is one line naming the object and the field (`HTTPRoute ns/name: spec.rules[0]...: ...`).
//!   Errors reject the whole configuration; warnings (fields we do not support) are reported and the object
//!   is served without them.
//! - Pure: no network, no clock. Secret files under `secrets_dir` are the only thing read besides the YAML.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use regex::Regex;
use serde_yaml::{Mapping, Value};

use crate::model::{
    AuthSource, Backend, Endpoint, InvocationMode, Partition, RequestEvent, ResponseMode,
    StaticKeys,
};
use crate::routing::{
    HeaderMatch, PathMatch, QueryMatch, RequestMatch, RouteRule, RouteTable, StringMatch,
    WeightedBackend,
};

/// Used when a route sets no timeout: well above Envoy's 15 s, since functions may run for minutes.
pub const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(60);
/// `timeouts.request: 0s` means "no timeout" in Gateway API; Lambda's own maximum bounds it.
const UNBOUNDED_TIMEOUT: Duration = Duration::from_secs(900 + 30);

/// Annotation overriding how the request event is built (see README "Payload modes").
pub const ANNOTATION_REQUEST_EVENT: &str = "gateway.podcred.dev/request-event";
/// Annotation overriding how the function's response is turned into the HTTP response.
pub const ANNOTATION_RESPONSE_MODE: &str = "gateway.podcred.dev/response-mode";

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

/// Inputs that are not part of the YAML.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Directory holding mounted Secrets: `<dir>/<secret name>/{accessKey,secretKey,sessionToken}`.
    pub secrets_dir: Option<std::path::PathBuf>,
    /// Global Lambda endpoint override (`AWS_ENDPOINT_URL_LAMBDA`, else `AWS_ENDPOINT_URL`), used by Backends
    /// without `endpointURL`.
    pub endpoint_override: Option<String>,
    pub default_timeout: Option<Duration>,
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
    let mut report = Report::default();
    let mut objects = Objects::default();
    for (name, text) in sources {
        for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let value = match serde::Deserialize::deserialize(document) {
                Ok(v) => v,
                Err(e) => {
                    report.error(format!(
                        "{name}: document {}: not valid YAML: {e}",
                        index + 1
                    ));
                    // The YAML stream cannot resume after a syntax error.
                    break;
                }
            };
            objects.add(name, index, value, &mut report);
        }
    }

    let secrets = objects.secrets(&mut report);
    let mut backends: HashMap<String, Arc<Backend>> = HashMap::new();
    for (id, raw) in &objects.backends {
        if let Some(backend) = compile_backend(id, raw, &secrets, options, &mut report) {
            backends.insert(id.clone(), Arc::new(backend));
        }
    }
    let gateways = compile_gateways(&objects.gateways, &mut report);
    let default_timeout = options.default_timeout.unwrap_or(DEFAULT_ROUTE_TIMEOUT);
    let mut rules = Vec::new();
    for (order, (id, raw)) in objects.routes.iter().enumerate() {
        compile_route(
            id,
            order,
            raw,
            &objects,
            &gateways,
            &backends,
            default_timeout,
            &mut report,
            &mut rules,
        );
    }
    if objects.routes.is_empty() {
        report.warn("no HTTPRoute found: every request will get 404".to_string());
    }

    let ports: std::collections::BTreeSet<u16> =
        gateways.values().flatten().map(|l| l.port).collect();
    if ports.len() > 1 {
        report.warn(format!(
            "the Gateways listen on several ports ({ports:?}); podcred serves one port, the first: {} (override with --listen)",
            ports.iter().next().copied().unwrap_or_default()
        ));
    }
    if !report.errors.is_empty() {
        return Err(ConfigError {
            problems: report.errors,
        });
    }
    let mut backends: Vec<Arc<Backend>> = backends.into_values().collect();
    backends.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Config {
        listener_port: ports.iter().next().copied(),
        routes: RouteTable::new(rules),
        backends,
        warnings: report.warnings,
    })
}

#[derive(Debug, Default)]
struct Report {
    errors: Vec<String>,
    warnings: Vec<String>,
}

impl Report {
    fn error(&mut self, line: String) {
        self.errors.push(line);
    }
    fn warn(&mut self, line: String) {
        self.warnings.push(line);
    }
}

/// The raw objects, by kind, keyed `namespace/name`, in file order.
#[derive(Debug, Default)]
struct Objects {
    gateways: Vec<(String, Value)>,
    routes: Vec<(String, Value)>,
    backends: Vec<(String, Value)>,
    secrets: Vec<(String, Value)>,
}

fn object_id(value: &Value) -> Option<(String, String)> {
    let meta = value.get("metadata")?;
    let name = meta.get("name")?.as_str()?.to_string();
    let namespace = meta
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    Some((namespace, name))
}

impl Objects {
    fn add(&mut self, source: &str, index: usize, value: Value, report: &mut Report) {
        if value.is_null() {
            return; // empty document (e.g. a trailing `---`)
        }
        let api_version = value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
        let Some((namespace, name)) = object_id(&value) else {
            report.error(format!(
                "{source}: document {}: {kind} has no metadata.name",
                index + 1
            ));
            return;
        };
        let id = format!("{namespace}/{name}");
        let group = api_version.split('/').next().unwrap_or("");
        let list = match (group, kind) {
            ("gateway.networking.k8s.io", "Gateway") => &mut self.gateways,
            ("gateway.networking.k8s.io", "HTTPRoute") => &mut self.routes,
            ("gateway.kgateway.dev", "Backend") => {
                if api_version != "gateway.kgateway.dev/v1alpha1" {
                    report.warn(format!("Backend {id}: apiVersion {api_version} read as gateway.kgateway.dev/v1alpha1"));
                }
                &mut self.backends
            }
            ("v1", "Secret") if api_version == "v1" => &mut self.secrets,
            _ => {
                report.warn(format!(
                    "{source}: {kind} {id} ({api_version}) is not used by the gateway (ignored)"
                ));
                return;
            }
        };
        if list.iter().any(|(existing, _)| existing == &id) {
            report.error(format!(
                "{kind} {id}: defined twice (second definition in {source})"
            ));
            return;
        }
        list.push((id, value));
    }

    fn secrets(&self, report: &mut Report) -> HashMap<String, BTreeMap<String, String>> {
        let mut out = HashMap::new();
        for (id, value) in &self.secrets {
            let mut keys = BTreeMap::new();
            if let Some(data) = value.get("data").and_then(Value::as_mapping) {
                for (k, v) in data {
                    let (Some(k), Some(v)) = (k.as_str(), v.as_str()) else {
                        continue;
                    };
                    match base64::engine::general_purpose::STANDARD.decode(v.trim()) {
                        Ok(bytes) => match String::from_utf8(bytes) {
                            Ok(s) => {
                                keys.insert(k.to_string(), s);
                            }
                            Err(_) => report.error(format!(
                                "Secret {id}: data.{k}: not UTF-8 once base64-decoded"
                            )),
                        },
                        Err(_) => report.error(format!("Secret {id}: data.{k}: not valid base64")),
                    }
                }
            }
            if let Some(data) = value.get("stringData").and_then(Value::as_mapping) {
                for (k, v) in data {
                    if let (Some(k), Some(v)) = (k.as_str(), v.as_str()) {
                        keys.insert(k.to_string(), v.to_string());
                    }
                }
            }
            out.insert(id.clone(), keys);
        }
        out
    }
}

/// Reports keys of `map` that are not in `known` as unsupported.
fn unsupported_keys(map: &Mapping, known: &[&str], what: &str, field: &str, report: &mut Report) {
    for key in map.keys() {
        let key = key.as_str().unwrap_or("?");
        if !known.contains(&key) {
            let path = if field.is_empty() {
                key.to_string()
            } else {
                format!("{field}.{key}")
            };
            report.warn(format!(
                "{what}: {path} is not supported by podcred's gateway (ignored)"
            ));
        }
    }
}

fn str_field<'a>(
    map: &'a Mapping,
    key: &str,
    what: &str,
    field: &str,
    report: &mut Report,
) -> Option<&'a str> {
    match map.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(other) => {
            report.error(format!(
                "{what}: {field}.{key}: expected a string, got {}",
                yaml_kind(other)
            ));
            None
        }
    }
}

fn yaml_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

fn mapping_at<'a>(value: &'a Value, key: &str) -> Option<&'a Mapping> {
    value.get(key).and_then(Value::as_mapping)
}

fn compile_backend(
    id: &str,
    raw: &Value,
    secrets: &HashMap<String, BTreeMap<String, String>>,
    options: &LoadOptions,
    report: &mut Report,
) -> Option<Backend> {
    let what = format!("Backend {id}");
    let errors_before = report.errors.len();
    let namespace = id.split('/').next().unwrap_or("default");
    let Some(spec) = mapping_at(raw, "spec") else {
        report.error(format!("{what}: spec: missing"));
        return None;
    };
    unsupported_keys(spec, &["type", "aws"], &what, "spec", report);
    if let Some(t) = str_field(spec, "type", &what, "spec", report) {
        if t != "AWS" {
            report.error(format!(
                "{what}: spec.type: {t:?} is not supported; only AWS (Lambda) backends are"
            ));
            return None;
        }
    }
    let Some(aws) = spec.get("aws").and_then(Value::as_mapping) else {
        report.error(format!(
            "{what}: spec.aws: missing (only AWS Lambda backends are supported)"
        ));
        return None;
    };
    unsupported_keys(
        aws,
        &["region", "accountId", "auth", "lambda"],
        &what,
        "spec.aws",
        report,
    );
    if aws.contains_key("ec2") {
        report.error(format!(
            "{what}: spec.aws.ec2: EC2 backends are not supported; use spec.aws.lambda"
        ));
    }
    let region = str_field(aws, "region", &what, "spec.aws", report)
        .unwrap_or("us-east-1")
        .to_string();
    if region.is_empty()
        || region.len() > 63
        || !region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        report.error(format!(
            "{what}: spec.aws.region: {region:?} is not a region name (^[a-z0-9-]+$)"
        ));
    }
    let Some(lambda) = aws.get("lambda").and_then(Value::as_mapping) else {
        report.error(format!("{what}: spec.aws.lambda: missing"));
        return None;
    };
    unsupported_keys(
        lambda,
        &[
            "functionName",
            "accountId",
            "qualifier",
            "invocationMode",
            "endpointURL",
            "payloadTransformMode",
        ],
        &what,
        "spec.aws.lambda",
        report,
    );
    let function_name = match str_field(lambda, "functionName", &what, "spec.aws.lambda", report) {
        Some(name) if valid_function_name(name) => name.to_string(),
        Some(name) => {
            report.error(format!("{what}: spec.aws.lambda.functionName: {name:?} is not a function name (^[A-Za-z0-9-_]{{1,140}}$)"));
            String::new()
        }
        None => {
            report.error(format!("{what}: spec.aws.lambda.functionName: missing"));
            String::new()
        }
    };
    // kgateway puts accountId under spec.aws; older examples put it under spec.aws.lambda.
    let account_field = match str_field(lambda, "accountId", &what, "spec.aws.lambda", report) {
        Some(account) => Some(("spec.aws.lambda.accountId", account)),
        None => str_field(aws, "accountId", &what, "spec.aws", report)
            .map(|account| ("spec.aws.accountId", account)),
    };
    if let Some((field, account)) = account_field {
        if account.len() != 12 || !account.chars().all(|c| c.is_ascii_digit()) {
            report.error(format!(
                "{what}: {field}: {account:?} is not a 12-digit AWS account ID"
            ));
        }
    }
    let account_id = account_field.map(|(_, account)| account.to_string());
    let qualifier =
        str_field(lambda, "qualifier", &what, "spec.aws.lambda", report).map(str::to_string);
    if let Some(q) = &qualifier {
        let ok = q == "$LATEST"
            || (!q.is_empty()
                && q.len() <= 128
                && q.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        if !ok {
            report.error(format!("{what}: spec.aws.lambda.qualifier: {q:?} is not $LATEST, a version or an alias name"));
        }
    }
    let invocation = match str_field(lambda, "invocationMode", &what, "spec.aws.lambda", report) {
        None | Some("Sync") => InvocationMode::Sync,
        Some("Async") => InvocationMode::Async,
        Some(other) => {
            report.error(format!(
                "{what}: spec.aws.lambda.invocationMode: {other:?} is not Sync or Async"
            ));
            InvocationMode::Sync
        }
    };
    let (mut request_event, mut response_mode) = match str_field(
        lambda,
        "payloadTransformMode",
        &what,
        "spec.aws.lambda",
        report,
    ) {
        // Our default differs from kgateway's (Envoy): passthrough reproduces the seed's documented output.
        None | Some("None") => (RequestEvent::Raw, ResponseMode::Passthrough),
        Some("Envoy") => (RequestEvent::Envoy, ResponseMode::Envoy),
        Some("ApiGatewayV1") => (RequestEvent::ApiGatewayV1, ResponseMode::ApiGatewayV1),
        Some("ApiGatewayV2") => (RequestEvent::ApiGatewayV2, ResponseMode::ApiGatewayV2),
        Some(other) => {
            report.error(format!(
                    "{what}: spec.aws.lambda.payloadTransformMode: {other:?} is not None, Envoy, ApiGatewayV1 or ApiGatewayV2"
                ));
            (RequestEvent::Raw, ResponseMode::Passthrough)
        }
    };
    let annotations = raw
        .get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(Value::as_mapping);
    if let Some(annotations) = annotations {
        if let Some(v) = annotations
            .get(ANNOTATION_REQUEST_EVENT)
            .and_then(Value::as_str)
        {
            match parse_request_event(v) {
                Some(mode) => request_event = mode,
                None => report.error(format!(
                    "{what}: metadata.annotations[{ANNOTATION_REQUEST_EVENT}]: {v:?} is not raw, envoy, apigateway-v1 or apigateway-v2"
                )),
            }
        }
        if let Some(v) = annotations
            .get(ANNOTATION_RESPONSE_MODE)
            .and_then(Value::as_str)
        {
            match parse_response_mode(v) {
                Some(mode) => response_mode = mode,
                None => report.error(format!(
                    "{what}: metadata.annotations[{ANNOTATION_RESPONSE_MODE}]: {v:?} is not passthrough, envoy, apigateway-v1 or apigateway-v2"
                )),
            }
        }
    }

    let partition = Partition::for_region(&region);
    let endpoint_url = str_field(lambda, "endpointURL", &what, "spec.aws.lambda", report)
        .map(str::to_string)
        .or_else(|| options.endpoint_override.clone());
    let endpoint = match endpoint_url {
        Some(url) => match Endpoint::parse(&url) {
            Ok(e) => e,
            Err(e) => {
                report.error(format!("{what}: spec.aws.lambda.endpointURL: {url:?}: {e}"));
                return None;
            }
        },
        None => Endpoint::for_region(&region, partition),
    };

    let auth = match aws.get("auth").and_then(Value::as_mapping) {
        None => AuthSource::DefaultChain,
        Some(auth) => {
            unsupported_keys(
                auth,
                &["type", "secretRef", "assumeRole"],
                &what,
                "spec.aws.auth",
                report,
            );
            match str_field(auth, "type", &what, "spec.aws.auth", report) {
                Some("Secret") => {
                    let secret_name = auth
                        .get("secretRef")
                        .and_then(|r| r.get("name"))
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    if secret_name.is_empty() {
                        report.error(format!("{what}: spec.aws.auth.secretRef.name: missing (required with type: Secret)"));
                        return None;
                    }
                    let secret_id = format!("{namespace}/{secret_name}");
                    let keys = secrets.get(&secret_id).cloned().or_else(|| {
                        options
                            .secrets_dir
                            .as_deref()
                            .and_then(|dir| read_secret_dir(&dir.join(secret_name)))
                    });
                    let Some(keys) = keys else {
                        let where_ = match &options.secrets_dir {
                            Some(dir) => format!("neither in the config files nor under {}", dir.join(secret_name).display()),
                            None => "not in the config files (add the Secret manifest, or mount it and pass --secrets-dir)".to_string(),
                        };
                        report.error(format!("{what}: spec.aws.auth.secretRef.name: Secret {secret_id} not found: {where_}"));
                        return None;
                    };
                    match static_keys(&keys) {
                        Ok(keys) => AuthSource::Static {
                            secret: secret_id,
                            keys,
                        },
                        Err(missing) => {
                            report.error(format!("{what}: spec.aws.auth.secretRef.name: Secret {secret_id}: {missing}"));
                            return None;
                        }
                    }
                }
                Some("AssumeRole") => {
                    report.error(format!(
                        "{what}: spec.aws.auth.type: AssumeRole is not supported yet; omit auth to use the service account's role (IRSA / container credentials)"
                    ));
                    return None;
                }
                Some(other) => {
                    report.error(format!(
                        "{what}: spec.aws.auth.type: {other:?} is not Secret or AssumeRole"
                    ));
                    return None;
                }
                None => {
                    report.error(format!("{what}: spec.aws.auth.type: missing (Secret), or omit auth for the default chain"));
                    return None;
                }
            }
        }
    };

    if report.errors.len() > errors_before {
        return None;
    }
    let arn = format!(
        "arn:{}:lambda:{region}:{}:function:{function_name}{}",
        partition.name(),
        account_id.as_deref().unwrap_or("-"),
        qualifier
            .as_deref()
            .map(|q| format!(":{q}"))
            .unwrap_or_default()
    );
    let invoke_uri = endpoint.invoke_uri(&function_name, qualifier.as_deref());
    let invoke_uri_parsed = match invoke_uri.parse::<http::Uri>() {
        Ok(uri) => uri,
        Err(e) => {
            report.error(format!("{what}: spec.aws.lambda.endpointURL: the Invoke URL {invoke_uri:?} is not a valid URI: {e}"));
            return None;
        }
    };
    Some(Backend {
        invoke_uri,
        invoke_uri_parsed,
        id: id.to_string(),
        region,
        partition,
        account_id,
        function_name,
        qualifier,
        invocation,
        endpoint,
        request_event,
        response_mode,
        auth,
        arn,
    })
}

fn valid_function_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 140
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn parse_request_event(value: &str) -> Option<RequestEvent> {
    match value {
        "raw" | "none" | "None" => Some(RequestEvent::Raw),
        "envoy" | "Envoy" => Some(RequestEvent::Envoy),
        "apigateway-v1" => Some(RequestEvent::ApiGatewayV1),
        "apigateway-v2" => Some(RequestEvent::ApiGatewayV2),
        _ => None,
    }
}

fn parse_response_mode(value: &str) -> Option<ResponseMode> {
    match value {
        "passthrough" | "none" | "None" => Some(ResponseMode::Passthrough),
        "envoy" | "Envoy" => Some(ResponseMode::Envoy),
        "apigateway-v1" => Some(ResponseMode::ApiGatewayV1),
        "apigateway-v2" => Some(ResponseMode::ApiGatewayV2),
        _ => None,
    }
}

fn read_secret_dir(dir: &Path) -> Option<BTreeMap<String, String>> {
    let mut keys = BTreeMap::new();
    for key in ["accessKey", "secretKey", "sessionToken"] {
        if let Ok(value) = std::fs::read_to_string(dir.join(key)) {
            keys.insert(
                key.to_string(),
                value.trim_end_matches(['\n', '\r']).to_string(),
            );
        }
    }
    (!keys.is_empty()).then_some(keys)
}

fn static_keys(keys: &BTreeMap<String, String>) -> Result<StaticKeys, String> {
    let get = |k: &str| {
        keys.get(k)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let access_key_id = get("accessKey").ok_or("key accessKey is missing or empty")?;
    let secret_access_key = get("secretKey").ok_or("key secretKey is missing or empty")?;
    Ok(StaticKeys {
        access_key_id,
        secret_access_key,
        session_token: get("sessionToken"),
    })
}

#[derive(Debug, Clone)]
struct Listener {
    name: String,
    port: u16,
}

fn compile_gateways(
    raw: &[(String, Value)],
    report: &mut Report,
) -> HashMap<String, Vec<Listener>> {
    let mut out = HashMap::new();
    for (id, value) in raw {
        let what = format!("Gateway {id}");
        let mut listeners = Vec::new();
        let Some(spec) = mapping_at(value, "spec") else {
            report.error(format!("{what}: spec: missing"));
            continue;
        };
        // gatewayClassName and infrastructure describe provisioning, which is the deployment's job here.
        unsupported_keys(
            spec,
            &[
                "gatewayClassName",
                "listeners",
                "infrastructure",
                "addresses",
            ],
            &what,
            "spec",
            report,
        );
        let items = spec
            .get("listeners")
            .and_then(Value::as_sequence)
            .cloned()
            .unwrap_or_default();
        for (i, listener) in items.iter().enumerate() {
            let field = format!("spec.listeners[{i}]");
            let Some(map) = listener.as_mapping() else {
                report.error(format!("{what}: {field}: expected a mapping"));
                continue;
            };
            unsupported_keys(
                map,
                &["name", "port", "protocol", "hostname", "allowedRoutes"],
                &what,
                &field,
                report,
            );
            let name = str_field(map, "name", &what, &field, report)
                .unwrap_or("")
                .to_string();
            let protocol = str_field(map, "protocol", &what, &field, report).unwrap_or("HTTP");
            let port = map.get("port").and_then(Value::as_u64);
            let Some(port) = port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0) else {
                report.error(format!(
                    "{what}: {field}.port: missing or not a port number"
                ));
                continue;
            };
            if protocol != "HTTP" {
                report.warn(format!("{what}: {field}.protocol: {protocol} is not supported (only HTTP); listener {name} skipped"));
                continue;
            }
            listeners.push(Listener { name, port });
        }
        if listeners.is_empty() {
            report.error(format!("{what}: spec.listeners: no HTTP listener"));
        }
        out.insert(id.clone(), listeners);
    }
    out
}

/// Parses a Gateway API duration (`1h`, `10s`, `500ms`, `1m30s`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let re = Regex::new(r"^(?:[0-9]{1,5}(?:h|m|s|ms)){1,4}$").expect("static regex");
    if !re.is_match(text) {
        return None;
    }
    let part = Regex::new(r"([0-9]{1,5})(ms|h|m|s)").expect("static regex");
    let mut total = Duration::ZERO;
    for cap in part.captures_iter(text) {
        let n: u64 = cap[1].parse().ok()?;
        total += match &cap[2] {
            "h" => Duration::from_secs(n * 3600),
            "m" => Duration::from_secs(n * 60),
            "s" => Duration::from_secs(n),
            _ => Duration::from_millis(n),
        };
    }
    Some(total)
}

#[allow(clippy::too_many_arguments)]
fn compile_route(
    id: &str,
    order: usize,
    raw: &Value,
    objects: &Objects,
    gateways: &HashMap<String, Vec<Listener>>,
    backends: &HashMap<String, Arc<Backend>>,
    default_timeout: Duration,
    report: &mut Report,
    out: &mut Vec<RouteRule>,
) {
    let what = format!("HTTPRoute {id}");
    let namespace = id.split('/').next().unwrap_or("default");
    let Some(spec) = mapping_at(raw, "spec") else {
        report.error(format!("{what}: spec: missing"));
        return;
    };
    unsupported_keys(
        spec,
        &["parentRefs", "hostnames", "rules"],
        &what,
        "spec",
        report,
    );

    // parentRefs: every referenced Gateway (and listener) must exist when the files hold Gateways.
    let parent_refs = spec
        .get("parentRefs")
        .and_then(Value::as_sequence)
        .cloned()
        .unwrap_or_default();
    if objects.gateways.is_empty() {
        if !parent_refs.is_empty() {
            report.warn(format!("{what}: spec.parentRefs: no Gateway in the config files; the route is served on --listen"));
        }
    } else {
        if parent_refs.is_empty() {
            report.error(format!(
                "{what}: spec.parentRefs: missing; the route must name the Gateway it attaches to"
            ));
        }
        for (i, parent) in parent_refs.iter().enumerate() {
            let field = format!("spec.parentRefs[{i}]");
            let Some(map) = parent.as_mapping() else {
                report.error(format!("{what}: {field}: expected a mapping"));
                continue;
            };
            unsupported_keys(
                map,
                &["group", "kind", "name", "namespace", "sectionName", "port"],
                &what,
                &field,
                report,
            );
            let kind = str_field(map, "kind", &what, &field, report).unwrap_or("Gateway");
            if kind != "Gateway" {
                report.error(format!(
                    "{what}: {field}.kind: {kind} is not supported (Gateway only)"
                ));
                continue;
            }
            let name = str_field(map, "name", &what, &field, report).unwrap_or("");
            let ns = str_field(map, "namespace", &what, &field, report).unwrap_or(namespace);
            let gateway_id = format!("{ns}/{name}");
            match gateways.get(&gateway_id) {
                None => report.error(format!(
                    "{what}: {field}.name: Gateway {gateway_id} not found in the config files"
                )),
                Some(listeners) => {
                    if let Some(section) = str_field(map, "sectionName", &what, &field, report) {
                        if !listeners.iter().any(|l| l.name == section) {
                            report.error(format!("{what}: {field}.sectionName: Gateway {gateway_id} has no HTTP listener named {section:?}"));
                        }
                    }
                }
            }
        }
    }

    let hostnames: Vec<String> = spec
        .get("hostnames")
        .and_then(Value::as_sequence)
        .map(|s| {
            s.iter()
                .filter_map(Value::as_str)
                .map(|h| h.to_ascii_lowercase())
                .collect()
        })
        .unwrap_or_default();

    let rules = spec
        .get("rules")
        .and_then(Value::as_sequence)
        .cloned()
        .unwrap_or_default();
    if rules.is_empty() {
        report.warn(format!(
            "{what}: spec.rules: empty; the route matches nothing"
        ));
    }
    for (rule_index, rule) in rules.iter().enumerate() {
        let field = format!("spec.rules[{rule_index}]");
        let Some(rule_map) = rule.as_mapping() else {
            report.error(format!("{what}: {field}: expected a mapping"));
            continue;
        };
        unsupported_keys(
            rule_map,
            &["name", "matches", "backendRefs", "timeouts"],
            &what,
            &field,
            report,
        );

        let mut matches = Vec::new();
        let raw_matches = rule_map
            .get("matches")
            .and_then(Value::as_sequence)
            .cloned()
            .unwrap_or_default();
        for (mi, m) in raw_matches.iter().enumerate() {
            if let Some(compiled) =
                compile_match(m, &what, &format!("{field}.matches[{mi}]"), report)
            {
                matches.push(compiled);
            }
        }
        if raw_matches.is_empty() {
            matches.push(RequestMatch::default_prefix());
        }

        let mut weighted = Vec::new();
        let refs = rule_map
            .get("backendRefs")
            .and_then(Value::as_sequence)
            .cloned()
            .unwrap_or_default();
        for (bi, backend_ref) in refs.iter().enumerate() {
            let bfield = format!("{field}.backendRefs[{bi}]");
            let Some(map) = backend_ref.as_mapping() else {
                report.error(format!("{what}: {bfield}: expected a mapping"));
                continue;
            };
            unsupported_keys(
                map,
                &["group", "kind", "name", "namespace", "weight", "port"],
                &what,
                &bfield,
                report,
            );
            let group = str_field(map, "group", &what, &bfield, report).unwrap_or("");
            let kind = str_field(map, "kind", &what, &bfield, report).unwrap_or("Service");
            if group != "gateway.kgateway.dev" || kind != "Backend" {
                report.error(format!(
                    "{what}: {bfield}: {kind} (group {group:?}) is not supported; reference a kgateway Backend (group: gateway.kgateway.dev, kind: Backend)"
                ));
                continue;
            }
            let name = str_field(map, "name", &what, &bfield, report).unwrap_or("");
            let ns = str_field(map, "namespace", &what, &bfield, report).unwrap_or(namespace);
            let backend_id = format!("{ns}/{name}");
            let weight = match map.get("weight") {
                None => 1,
                Some(v) => match v
                    .as_u64()
                    .and_then(|w| u32::try_from(w).ok())
                    .filter(|w| *w <= 1_000_000)
                {
                    Some(w) => w,
                    None => {
                        report.error(format!(
                            "{what}: {bfield}.weight: must be an integer from 0 to 1000000"
                        ));
                        continue;
                    }
                },
            };
            match backends.get(&backend_id) {
                Some(backend) => weighted.push(WeightedBackend {
                    backend: backend.clone(),
                    weight,
                    metrics: Default::default(),
                }),
                None => {
                    let exists = objects.backends.iter().any(|(b, _)| b == &backend_id);
                    if exists {
                        report.error(format!("{what}: {bfield}.name: Backend {backend_id} is invalid (see its own errors)"));
                    } else {
                        report.error(format!("{what}: {bfield}.name: Backend {backend_id} not found in the config files"));
                    }
                }
            }
        }
        if refs.is_empty() {
            report.warn(format!(
                "{what}: {field}.backendRefs: empty; matching requests get 500 (Gateway API)"
            ));
        }

        let mut timeout = default_timeout;
        if let Some(timeouts) = rule_map.get("timeouts").and_then(Value::as_mapping) {
            unsupported_keys(
                timeouts,
                &["request", "backendRequest"],
                &what,
                &format!("{field}.timeouts"),
                report,
            );
            // The Lambda call is the whole request, so the shorter of the two applies.
            for key in ["request", "backendRequest"] {
                if let Some(text) =
                    str_field(timeouts, key, &what, &format!("{field}.timeouts"), report)
                {
                    match parse_duration(text) {
                        Some(Duration::ZERO) => timeout = timeout.max(UNBOUNDED_TIMEOUT),
                        Some(d) => timeout = if key == "request" { d } else { timeout.min(d) },
                        None => report.error(format!(
                            "{what}: {field}.timeouts.{key}: {text:?} is not a Gateway API duration (e.g. 10s, 500ms, 1m30s)"
                        )),
                    }
                }
            }
        }

        out.push(RouteRule {
            label: format!("{id}#{rule_index}"),
            route: id.to_string(),
            rule_index,
            hostnames: hostnames.clone(),
            matches,
            backends: weighted,
            timeout,
            order,
        });
    }
}

fn compile_match(
    value: &Value,
    what: &str,
    field: &str,
    report: &mut Report,
) -> Option<RequestMatch> {
    let Some(map) = value.as_mapping() else {
        report.error(format!("{what}: {field}: expected a mapping"));
        return None;
    };
    unsupported_keys(
        map,
        &["path", "method", "headers", "queryParams"],
        what,
        field,
        report,
    );
    let mut errors = false;
    let path = match map.get("path").and_then(Value::as_mapping) {
        None => PathMatch::Prefix("/".to_string()),
        Some(path) => {
            let kind = str_field(path, "type", what, &format!("{field}.path"), report)
                .unwrap_or("PathPrefix");
            let value =
                str_field(path, "value", what, &format!("{field}.path"), report).unwrap_or("/");
            match kind {
                "PathPrefix" | "Exact" if !value.starts_with('/') => {
                    report.error(format!(
                        "{what}: {field}.path.value: {value:?} must start with '/'"
                    ));
                    errors = true;
                    PathMatch::Prefix("/".into())
                }
                "PathPrefix" => {
                    let trimmed = value.trim_end_matches('/');
                    PathMatch::Prefix(if trimmed.is_empty() {
                        "/".into()
                    } else {
                        trimmed.to_string()
                    })
                }
                "Exact" => PathMatch::Exact(value.to_string()),
                "RegularExpression" => match Regex::new(&format!("^(?:{value})$")) {
                    Ok(re) => PathMatch::Regex(re),
                    Err(e) => {
                        report.error(format!(
                            "{what}: {field}.path.value: invalid regular expression: {e}"
                        ));
                        errors = true;
                        PathMatch::Prefix("/".into())
                    }
                },
                other => {
                    report.error(format!("{what}: {field}.path.type: {other:?} is not PathPrefix, Exact or RegularExpression"));
                    errors = true;
                    PathMatch::Prefix("/".into())
                }
            }
        }
    };
    let method = str_field(map, "method", what, field, report).map(|m| m.to_ascii_uppercase());
    let mut headers = Vec::new();
    for (i, h) in map
        .get("headers")
        .and_then(Value::as_sequence)
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        match compile_string_match(h, what, &format!("{field}.headers[{i}]"), report) {
            Some((name, m)) => headers.push(HeaderMatch {
                name: name.to_ascii_lowercase(),
                value: m,
            }),
            None => errors = true,
        }
    }
    let mut query = Vec::new();
    for (i, q) in map
        .get("queryParams")
        .and_then(Value::as_sequence)
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        match compile_string_match(q, what, &format!("{field}.queryParams[{i}]"), report) {
            Some((name, m)) => query.push(QueryMatch { name, value: m }),
            None => errors = true,
        }
    }
    (!errors).then_some(RequestMatch {
        path,
        method,
        headers,
        query,
    })
}

fn compile_string_match(
    value: &Value,
    what: &str,
    field: &str,
    report: &mut Report,
) -> Option<(String, StringMatch)> {
    let Some(map) = value.as_mapping() else {
        report.error(format!("{what}: {field}: expected a mapping"));
        return None;
    };
    unsupported_keys(map, &["type", "name", "value"], what, field, report);
    let name = str_field(map, "name", what, field, report);
    let value = str_field(map, "value", what, field, report);
    let (Some(name), Some(value)) = (name, value) else {
        report.error(format!("{what}: {field}: name and value are required"));
        return None;
    };
    match str_field(map, "type", what, field, report).unwrap_or("Exact") {
        "Exact" => Some((name.to_string(), StringMatch::Exact(value.to_string()))),
        "RegularExpression" => match Regex::new(&format!("^(?:{value})$")) {
            Ok(re) => Some((name.to_string(), StringMatch::Regex(re))),
            Err(e) => {
                report.error(format!(
                    "{what}: {field}.value: invalid regular expression: {e}"
                ));
                None
            }
        },
        other => {
            report.error(format!(
                "{what}: {field}.type: {other:?} is not Exact or RegularExpression"
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests;
