//! `webhook inject`: offline injection into manifests, like `istioctl kube-inject` / `linkerd inject`.
//!
//! Contract:
//! - Input: multi-document YAML from files and/or stdin, in command-line order. Output: the same documents,
//!   in the same order, as multi-document YAML on stdout (re-serialised: comments and formatting are not
//!   kept; empty documents are dropped).
//! - The ServiceAccounts in the input are the cache (no namespace → `default`), parsed by the server's own
//!   [`crate::cache::sts_identity_from_annotations`]; with `--watch-config-map` a `pod-identity-webhook`
//!   ConfigMap in `--namespace` found in the input is used too; `--watch-container-credentials-config` is
//!   read once. Same precedence as the server (CC > IRSA > nothing; SA with role > ConfigMap `ns/name` >
//!   ConfigMap `*/name`). No cluster access, no IMDS.
//! - Every Pod and pod template (Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job,
//!   CronJob, PodTemplate, and the items of a `List`) gets exactly the server's mutation ([`crate::mutate::mutate`]); any other kind passes
//!   through. A pod without `serviceAccountName` uses `default`, as the API server's admission would.
//! - Errors name the source, the document (1-based index, kind and name) and the field.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

use crate::cache::{
    parse_config_map, sts_identity_from_annotations, AnnotationDefaults, CONFIG_KEY,
    CONFIG_MAP_NAME,
};
use crate::config::{Config, InjectConfig, InputSource};
use crate::identity::{BoxFuture, CommonConfig, IdentitySource, StsIdentity, StsLookup};
use crate::mutate::{self, Jitter, Mutation};

/// Why `webhook inject` failed. Messages name the input and the document.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    #[error("{source_name}: cannot read: {error}")]
    Read {
        source_name: String,
        #[source]
        error: std::io::Error,
    },
    #[error("{location}: {message}")]
    Document { location: String, message: String },
    #[error("--watch-container-credentials-config={path}: {message}")]
    ContainerCredentials { path: PathBuf, message: String },
    #[error("cannot write output: {0}")]
    Write(#[source] std::io::Error),
}

/// One input stream's text.
pub struct Input {
    /// `stdin` or the file path, for error messages.
    pub name: String,
    pub text: String,
}

/// What happened, for a summary on stderr.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub documents: usize,
    pub pods_mutated: usize,
    /// One line per pod or template left alone because its ServiceAccount is not in the input (or has no role).
    pub warnings: Vec<String>,
}

/// `webhook inject`: read the inputs, write the result to `stdout`, warnings to `stderr`.
pub fn run(
    config: &InjectConfig,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Result<Report, InjectError> {
    let mut inputs = Vec::new();
    for source in &config.inputs {
        let (name, text) = match source {
            InputSource::Stdin => {
                let mut text = String::new();
                stdin
                    .read_to_string(&mut text)
                    .map_err(|error| InjectError::Read {
                        source_name: "stdin".into(),
                        error,
                    })?;
                ("stdin".to_string(), text)
            }
            InputSource::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|error| InjectError::Read {
                    source_name: path.display().to_string(),
                    error,
                })?;
                (path.display().to_string(), text)
            }
        };
        inputs.push(Input { name, text });
    }
    let container_credentials = match &config.config.watch_container_credentials_config {
        None => HashSet::new(),
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| InjectError::ContainerCredentials {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            crate::container_credentials::parse(&text).map_err(|e| {
                InjectError::ContainerCredentials {
                    path: path.clone(),
                    message: e.to_string(),
                }
            })?
        }
    };
    let mut jitter = uniform_jitter;
    let (output, report) = inject(&config.config, &inputs, container_credentials, &mut jitter)?;
    stdout
        .write_all(output.as_bytes())
        .map_err(InjectError::Write)?;
    stdout.flush().map_err(InjectError::Write)?;
    for warning in &report.warnings {
        // Best effort: warnings must not fail the run.
        let _ = writeln!(stderr, "warning: {warning}");
    }
    Ok(report)
}

fn uniform_jitter(lo: i64, hi: i64) -> i64 {
    use rand::Rng;
    if lo >= hi {
        lo
    } else {
        rand::rng().random_range(lo..=hi)
    }
}

struct Document {
    location: String,
    value: Value,
}

/// The pure core: documents in, documents out.
pub fn inject(
    config: &Config,
    inputs: &[Input],
    container_credentials: HashSet<(String, String)>,
    jitter: Jitter<'_>,
) -> Result<(String, Report), InjectError> {
    let mut documents = Vec::new();
    for input in inputs {
        for (index, doc) in serde_yaml_ng::Deserializer::from_str(&input.text).enumerate() {
            let location = format!("{} document {}", input.name, index + 1);
            let yaml =
                serde_yaml_ng::Value::deserialize(doc).map_err(|e| InjectError::Document {
                    location: location.clone(),
                    message: format!("invalid YAML: {e}"),
                })?;
            let value = serde_json::to_value(&yaml).map_err(|e| InjectError::Document {
                location: location.clone(),
                message: format!("not representable as JSON: {e}"),
            })?;
            if value.is_null() {
                continue;
            }
            let location = format!("{location} ({})", describe(&value));
            documents.push(Document { location, value });
        }
    }

    let identities = InputIdentities::from_documents(config, &documents, container_credentials)?;
    let mutate_config = config.mutate_config();
    let mut report = Report {
        documents: documents.len(),
        ..Report::default()
    };
    let mut output = String::new();
    for mut document in documents {
        let location = document.location.clone();
        let mut ctx = Ctx {
            identities: &identities,
            config: &mutate_config,
            jitter: &mut *jitter,
            report: &mut report,
        };
        ctx.visit(&mut document.value, &location)?;
        let yaml =
            serde_yaml_ng::to_string(&document.value).map_err(|e| InjectError::Document {
                location,
                message: format!("cannot serialise: {e}"),
            })?;
        output.push_str("---\n");
        output.push_str(&yaml);
    }
    Ok((output, report))
}

fn str_at<'v>(value: &'v Value, pointer: &str) -> &'v str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn describe(value: &Value) -> String {
    let kind = str_at(value, "/kind");
    let name = str_at(value, "/metadata/name");
    let namespace = str_at(value, "/metadata/namespace");
    match (kind, namespace) {
        ("", _) => "no kind".into(),
        (kind, "") => format!("{kind} {name}"),
        (kind, ns) => format!("{kind} {ns}/{name}"),
    }
}

/// Where the pod template lives in each workload kind.
fn template_pointer(kind: &str) -> Option<&'static str> {
    match kind {
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "Job"
        | "ReplicationController" => Some("/spec/template"),
        "CronJob" => Some("/spec/jobTemplate/spec/template"),
        "PodTemplate" => Some("/template"),
        _ => None,
    }
}

struct Ctx<'a, 'j> {
    identities: &'a InputIdentities,
    config: &'a mutate::MutateConfig,
    jitter: Jitter<'j>,
    report: &'a mut Report,
}

impl Ctx<'_, '_> {
    fn visit(&mut self, document: &mut Value, location: &str) -> Result<(), InjectError> {
        let kind = str_at(document, "/kind").to_string();
        let namespace = match str_at(document, "/metadata/namespace") {
            "" => "default".to_string(),
            ns => ns.to_string(),
        };
        if kind == "Pod" {
            return self.mutate_pod(document, &namespace, location, "");
        }
        if kind == "List" || kind.ends_with("List") {
            if let Some(Value::Array(items)) = document.get_mut("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    let item_location = format!("{location} item {} ({})", i + 1, describe(item));
                    self.visit(item, &item_location)?;
                }
            }
            return Ok(());
        }
        let Some(pointer) = template_pointer(&kind) else {
            return Ok(());
        };
        let Some(template) = document.pointer_mut(pointer) else {
            return Ok(());
        };
        if !template.is_object() {
            return Err(InjectError::Document {
                location: location.into(),
                message: format!("{}: expected a pod template object", dotted(pointer)),
            });
        }
        self.mutate_pod(
            template,
            &namespace,
            location,
            &format!("{}.", dotted(pointer)),
        )
    }

    /// Mutate a Pod or pod template in place (a template has the same `metadata`/`spec` shape).
    fn mutate_pod(
        &mut self,
        pod: &mut Value,
        namespace: &str,
        location: &str,
        field_prefix: &str,
    ) -> Result<(), InjectError> {
        let field_error = |message: String| InjectError::Document {
            location: location.into(),
            message: if field_prefix.is_empty() {
                message
            } else {
                // Go's "Pod.spec…" path → the path inside the workload.
                message.replace("Pod.", field_prefix)
            },
        };
        let view = mutate::PodView::new(pod).map_err(|e| field_error(e.0))?;
        let service_account = match view.service_account() {
            "" => "default".to_string(),
            sa => sa.to_string(),
        };
        let resolved = futures::executor::block_on(mutate::resolve_identity(
            self.identities,
            namespace,
            &service_account,
        ));
        let identity = match resolved {
            Ok(identity) => identity,
            Err(reason) => {
                self.report.warnings.push(format!(
                    "{location}: not mutated: ServiceAccount {namespace}/{service_account} {}",
                    match reason {
                        mutate::NotSelected::NoRole => "has no role-arn annotation",
                        mutate::NotSelected::NotFound => "is not in the input",
                    }
                ));
                return Ok(());
            }
        };
        let mutation: Mutation = mutate::mutate(pod, &identity, self.config, &mut *self.jitter)
            .map_err(|e| field_error(e.0))?;
        let patch: json_patch::Patch = serde_json::from_slice(&mutation.patch_json())
            .map_err(|e| field_error(format!("internal error building the patch: {e}")))?;
        json_patch::patch(pod, &patch)
            .map_err(|e| field_error(format!("internal error applying the patch: {e}")))?;
        self.report.pods_mutated += 1;
        Ok(())
    }
}

fn dotted(pointer: &str) -> String {
    pointer.trim_start_matches('/').replace('/', ".")
}

/// The cache built from the input's ServiceAccounts (and ConfigMap).
struct InputIdentities {
    service_accounts: HashMap<(String, String), StsIdentity>,
    config_map: HashMap<String, StsIdentity>,
    container_credentials: HashSet<(String, String)>,
}

impl InputIdentities {
    fn from_documents(
        config: &Config,
        documents: &[Document],
        container_credentials: HashSet<(String, String)>,
    ) -> Result<Self, InjectError> {
        let defaults = AnnotationDefaults {
            annotation_prefix: config.annotation_prefix.clone(),
            sidecar_prefix: config.sidecar.as_ref().map(|s| s.annotation_prefix.clone()),
            audience: config.token_audience.clone(),
            regional_sts: config.sts_regional_endpoint,
            token_expiration: config.token_expiration,
            compose_role_arn: None,
        };
        let mut service_accounts = HashMap::new();
        let mut config_map = HashMap::new();
        let mut objects: Vec<(&Value, &str)> = Vec::new();
        for document in documents {
            match document.value.get("items") {
                Some(Value::Array(items)) if str_at(&document.value, "/kind").ends_with("List") => {
                    objects.extend(items.iter().map(|i| (i, document.location.as_str())))
                }
                _ => objects.push((&document.value, document.location.as_str())),
            }
        }
        for (object, location) in objects {
            let kind = str_at(object, "/kind");
            let name = str_at(object, "/metadata/name").to_string();
            let namespace = match str_at(object, "/metadata/namespace") {
                "" => "default".to_string(),
                ns => ns.to_string(),
            };
            match kind {
                "ServiceAccount" => {
                    let annotations = string_map(object, "annotations", location)?;
                    let identity = sts_identity_from_annotations(&annotations, &defaults);
                    service_accounts.insert((namespace, name), identity);
                }
                "ConfigMap"
                    if config.watch_config_map
                        && name == CONFIG_MAP_NAME
                        && namespace == config.namespace =>
                {
                    if let Some(text) = object.pointer(&format!("/data/{CONFIG_KEY}")) {
                        let text = text.as_str().ok_or_else(|| InjectError::Document {
                            location: location.into(),
                            message: format!("data.{CONFIG_KEY}: expected a string"),
                        })?;
                        let parsed =
                            parse_config_map(text, config.token_expiration).map_err(|e| {
                                InjectError::Document {
                                    location: location.into(),
                                    message: format!("data.{CONFIG_KEY}: {e}"),
                                }
                            })?;
                        config_map = parsed.entries;
                    }
                }
                _ => {}
            }
        }
        Ok(Self {
            service_accounts,
            config_map,
            container_credentials,
        })
    }
}

fn string_map(
    object: &Value,
    field: &str,
    location: &str,
) -> Result<BTreeMap<String, String>, InjectError> {
    let mut map = BTreeMap::new();
    match object.pointer(&format!("/metadata/{field}")) {
        None | Some(Value::Null) => {}
        Some(Value::Object(entries)) => {
            for (key, value) in entries {
                let value = value.as_str().ok_or_else(|| InjectError::Document {
                    location: location.into(),
                    message: format!(
                        "metadata.{field}.{key}: expected a string (quote it in YAML)"
                    ),
                })?;
                map.insert(key.clone(), value.to_string());
            }
        }
        Some(_) => {
            return Err(InjectError::Document {
                location: location.into(),
                message: format!("metadata.{field}: expected a map of strings"),
            })
        }
    }
    Ok(map)
}

impl IdentitySource for InputIdentities {
    fn container_credentials(&self, namespace: &str, service_account: &str) -> bool {
        self.container_credentials
            .contains(&(namespace.to_string(), service_account.to_string()))
    }

    fn common_config(&self, namespace: &str, service_account: &str) -> CommonConfig {
        let key = (namespace.to_string(), service_account.to_string());
        let entry = self.service_accounts.get(&key).or_else(|| {
            self.config_map
                .get(&format!("{namespace}/{service_account}"))
        });
        entry
            .map(|e| CommonConfig {
                use_regional_sts: e.use_regional_sts,
                token_expiration: e.token_expiration,
            })
            .unwrap_or_default()
    }

    fn sts_identity<'a>(
        &'a self,
        namespace: &'a str,
        service_account: &'a str,
    ) -> BoxFuture<'a, StsLookup> {
        let sa = self
            .service_accounts
            .get(&(namespace.to_string(), service_account.to_string()));
        let lookup = match sa {
            Some(identity) if !identity.role_arn.is_empty() => StsLookup::Found(identity.clone()),
            _ => match self
                .config_map
                .get(&format!("{namespace}/{service_account}"))
                .or_else(|| self.config_map.get(&format!("*/{service_account}")))
            {
                Some(identity) => StsLookup::Found(identity.clone()),
                None => match sa {
                    Some(identity) => StsLookup::Found(identity.clone()),
                    None => StsLookup::NotFound,
                },
            },
        };
        Box::pin(async move { lookup })
    }
}
