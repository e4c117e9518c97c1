//! The pure mutation core: pod JSON + resolved identity → upstream's JSON Patch.
//!
//! Contract (reference/upstream-webhook.md §4):
//! - The pod is raw `serde_json::Value`: every field we do not touch survives byte-for-byte in meaning
//!   (upstream re-serialises containers through its Go types and drops unknown fields).
//! - [`mutate`] returns the ops in upstream's order and paths: label (CC mode), volume (`/spec/volumes` when
//!   absent, else prepended at `/spec/volumes/0`), the whole `/spec/containers`, and `/spec/initContainers`
//!   when there is at least one init container.
//! - Randomness (the container-credentials expiration jitter) is injected as a closure so tests are
//!   deterministic. No I/O, no clock.
//! - Only the fields we read or write are type-checked; a wrong type there is a [`PodError`] whose message
//!   follows Go's `encoding/json` wording (upstream denies such a pod with that message).

use std::collections::HashSet;

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::go::{clean_join, csv_first_record, parse_go_int64_base10};
use crate::identity::{BoxFuture, CommonConfig, IdentitySource, StsIdentity, StsLookup};
use crate::sidecar::{self, SidecarConfig};

/// IRSA volume name and projected token file name (hard-coded upstream).
pub const IRSA_VOLUME_NAME: &str = "aws-iam-token";
pub const IRSA_TOKEN_PATH: &str = "token";
/// Label written in container-credentials mode (hard-coded, not derived from `--annotation-prefix`).
pub const POD_IDENTITY_LABEL: &str = "eks.amazonaws.com/pod-identity";
/// Upstream's token-expiration constants.
pub const MIN_TOKEN_EXPIRATION: i64 = 600;
pub const DEFAULT_TOKEN_EXPIRATION: i64 = 86_400;
pub const JITTER_MIN_TOKEN_EXPIRATION: i64 = 79_200;

/// The `--container-credentials-*` flags (EKS Pod Identity mode).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerCredentialsSettings {
    pub audience: String,
    pub mount_path: String,
    pub volume_name: String,
    pub token_path: String,
    pub full_uri: String,
}

/// Everything the mutation needs from the flags. Built by `Config::mutate_config`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MutateConfig {
    /// `--annotation-prefix` (pod annotations `token-expiration`, `skip-containers`).
    pub annotation_prefix: String,
    /// `--token-mount-path` (IRSA mode).
    pub token_mount_path: String,
    /// `--aws-default-region`; empty = do not inject region variables.
    pub aws_default_region: String,
    pub container_credentials: ContainerCredentialsSettings,
    /// `Some` when `--sidecar-image` is set.
    pub sidecar: Option<SidecarConfig>,
}

/// Which mutation a pod gets (also the `method` label of `pod_identity_webhook_pod_count`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    StsWebIdentity,
    ContainerCredentials,
}

impl Mode {
    /// Upstream's metric label value.
    pub fn metric_label(self) -> &'static str {
        match self {
            Mode::StsWebIdentity => "sts_web_identity",
            Mode::ContainerCredentials => "container_credentials",
        }
    }
}

/// What the pod's service account resolved to (upstream precedence: CC > IRSA > nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// Listed in the container-credentials config file.
    ContainerCredentials(CommonConfig),
    /// IRSA with a non-empty role ARN.
    Sts(StsIdentity),
}

/// Why a pod was not selected for mutation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotSelected {
    /// Found in the cache but without a role ARN.
    NoRole,
    /// Not found in the cache (counted as a missing SA by the cache).
    NotFound,
}

/// Upstream's decision order for `(namespace, serviceAccountName)`.
pub fn resolve_identity<'a>(
    source: &'a dyn IdentitySource,
    namespace: &'a str,
    service_account: &'a str,
) -> BoxFuture<'a, Result<Identity, NotSelected>> {
    Box::pin(async move {
        if source.container_credentials(namespace, service_account) {
            return Ok(Identity::ContainerCredentials(
                source.common_config(namespace, service_account),
            ));
        }
        match source.sts_identity(namespace, service_account).await {
            StsLookup::Found(identity) if !identity.role_arn.is_empty() => {
                Ok(Identity::Sts(identity))
            }
            StsLookup::Found(_) => Err(NotSelected::NoRole),
            StsLookup::NotFound => Err(NotSelected::NotFound),
        }
    })
}

/// One JSON Patch operation (upstream only emits `add`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PatchOp {
    pub op: &'static str,
    pub path: String,
    pub value: Value,
}

impl PatchOp {
    pub(crate) fn add(path: impl Into<String>, value: Value) -> Self {
        Self {
            op: "add",
            path: path.into(),
            value,
        }
    }
}

/// The result of mutating a selected pod.
#[derive(Clone, Debug, PartialEq)]
pub struct Mutation {
    pub mode: Mode,
    /// Always non-empty: a selected pod always gets a patch (upstream).
    pub patch: Vec<PatchOp>,
    /// Whether anything actually changed (only selects the log line, as upstream).
    pub changed: bool,
    /// Whether the credproxy sidecar was (or already is) injected instead of plain IRSA.
    pub sidecar: bool,
}

impl Mutation {
    /// The JSON Patch document (`[{"op","path","value"},…]`).
    pub fn patch_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.patch).unwrap_or_else(|_| b"[]".to_vec())
    }
}

/// A field we read or write has the wrong JSON type.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PodError(pub String);

/// Source of the jitter: called with an inclusive range, returns a value in it.
pub type Jitter<'a> = &'a mut dyn FnMut(i64, i64) -> i64;

/// Mutate a pod selected for `identity`. `namespace` is the admission request's namespace (it overrides the
/// pod's own, which only matters for logs here).
pub fn mutate(
    pod: &Value,
    identity: &Identity,
    config: &MutateConfig,
    jitter: Jitter<'_>,
) -> Result<Mutation, PodError> {
    mutate_view(&PodView::new(pod)?, identity, config, jitter)
}

/// [`mutate`] for a pod already validated by [`PodView::new`].
pub fn mutate_view(
    view: &PodView<'_>,
    identity: &Identity,
    config: &MutateConfig,
    jitter: Jitter<'_>,
) -> Result<Mutation, PodError> {
    match identity {
        Identity::ContainerCredentials(common) => {
            let cc = &config.container_credentials;
            let mut expiration = view
                .token_expiration_override(&config.annotation_prefix)
                .unwrap_or(common.token_expiration);
            if expiration == DEFAULT_TOKEN_EXPIRATION {
                // Upstream logs this at V(0), once per such pod.
                tracing::info!("Adding jitter to default token expiration");
                expiration = jitter(JITTER_MIN_TOKEN_EXPIRATION, DEFAULT_TOKEN_EXPIRATION)
                    .clamp(JITTER_MIN_TOKEN_EXPIRATION, DEFAULT_TOKEN_EXPIRATION);
            }
            let token_file = clean_join(&cc.mount_path, &cc.token_path);
            let plan = Plan {
                mode: Mode::ContainerCredentials,
                volume_name: &cc.volume_name,
                mount_path: &cc.mount_path,
                volume: projected_volume(&cc.volume_name, &cc.audience, expiration, &cc.token_path),
                identity_env: [
                    ("AWS_CONTAINER_CREDENTIALS_FULL_URI", cc.full_uri.clone()),
                    (
                        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                        view.env_path(&token_file),
                    ),
                ],
                use_regional_sts: common.use_regional_sts,
                region: &config.aws_default_region,
            };
            Ok(plan.apply(view, &config.annotation_prefix))
        }
        Identity::Sts(sts) => {
            let expiration = view
                .token_expiration_override(&config.annotation_prefix)
                .unwrap_or(sts.token_expiration);
            if let Some(sidecar_config) = &config.sidecar {
                if sidecar::requested(view, sts, sidecar_config)? {
                    return sidecar::mutate(view, sts, expiration, config, sidecar_config);
                }
            }
            let token_file = clean_join(&config.token_mount_path, IRSA_TOKEN_PATH);
            let plan = Plan {
                mode: Mode::StsWebIdentity,
                volume_name: IRSA_VOLUME_NAME,
                mount_path: &config.token_mount_path,
                volume: projected_volume(
                    IRSA_VOLUME_NAME,
                    &sts.audience,
                    expiration,
                    IRSA_TOKEN_PATH,
                ),
                identity_env: [
                    ("AWS_ROLE_ARN", sts.role_arn.clone()),
                    ("AWS_WEB_IDENTITY_TOKEN_FILE", view.env_path(&token_file)),
                ],
                use_regional_sts: sts.use_regional_sts,
                region: &config.aws_default_region,
            };
            Ok(plan.apply(view, &config.annotation_prefix))
        }
    }
}

/// The projected service-account token volume (no `defaultMode`, empty audience omitted).
pub fn projected_volume(name: &str, audience: &str, expiration: i64, path: &str) -> Value {
    let mut token = Map::new();
    if !audience.is_empty() {
        token.insert("audience".into(), Value::from(audience));
    }
    token.insert("expirationSeconds".into(), Value::from(expiration));
    token.insert("path".into(), Value::from(path));
    json!({"name": name, "projected": {"sources": [{"serviceAccountToken": Value::Object(token)}]}})
}

struct Plan<'a> {
    mode: Mode,
    volume_name: &'a str,
    mount_path: &'a str,
    volume: Value,
    identity_env: [(&'static str, String); 2],
    use_regional_sts: bool,
    region: &'a str,
}

impl Plan<'_> {
    fn apply(&self, view: &PodView<'_>, annotation_prefix: &str) -> Mutation {
        let skip = view.skip_containers(annotation_prefix);
        let mut ops = Vec::with_capacity(4);
        if self.mode == Mode::ContainerCredentials {
            ops.extend(view.label_op(POD_IDENTITY_LABEL, "enabled"));
        }
        ops.extend(view.spec_op());
        let mut changed = false;
        if let Some(op) = view.volume_op(self.volume_name, &self.volume) {
            ops.push(op);
            changed = true;
        }
        let mut inject = |container: &mut Map<String, Value>| {
            changed |= self.inject_container(container);
        };
        let containers = view.edit_containers("containers", &skip, &mut inject);
        let init_containers = view.edit_containers("initContainers", &skip, &mut inject);
        ops.push(PatchOp::add("/spec/containers", containers));
        if view.has_init_containers() {
            ops.push(PatchOp::add("/spec/initContainers", init_containers));
        }
        Mutation {
            mode: self.mode,
            patch: ops,
            changed,
            sidecar: false,
        }
    }

    /// Upstream §4.3 for one container; returns whether it changed.
    fn inject_container(&self, container: &mut Map<String, Value>) -> bool {
        let names = env_names(container);
        let identity_present = self.identity_env.iter().any(|(n, _)| names.contains(n));
        let region_present = names.contains("AWS_REGION") || names.contains("AWS_DEFAULT_REGION");
        let sts_present = names.contains("AWS_STS_REGIONAL_ENDPOINTS");
        if identity_present && region_present && sts_present {
            return false;
        }
        let mut add: Vec<(&str, &str)> = Vec::with_capacity(5);
        if self.use_regional_sts && !sts_present {
            add.push(("AWS_STS_REGIONAL_ENDPOINTS", "regional"));
        }
        if !self.region.is_empty() && !region_present {
            add.push(("AWS_DEFAULT_REGION", self.region));
            add.push(("AWS_REGION", self.region));
        }
        if !identity_present {
            for (name, value) in &self.identity_env {
                add.push((name, value));
            }
        }
        let mut changed = append_env(container, &add);
        changed |= ensure_mount(container, self.volume_name, self.mount_path, true);
        changed
    }
}

/// Names of a container's env entries (by name only; `envFrom` ignored).
pub(crate) fn env_names(container: &Map<String, Value>) -> HashSet<&str> {
    container
        .get("env")
        .and_then(Value::as_array)
        .map(|env| {
            env.iter()
                .map(|e| e.get("name").and_then(Value::as_str).unwrap_or(""))
                .collect()
        })
        .unwrap_or_default()
}

/// Append `{name, value}` entries after the existing env.
pub(crate) fn append_env(container: &mut Map<String, Value>, add: &[(&str, &str)]) -> bool {
    if add.is_empty() {
        return false;
    }
    let env = array_field(container, "env");
    env.extend(add.iter().map(|(n, v)| json!({"name": n, "value": v})));
    true
}

/// Append a volume mount unless one with that name exists (mountPath not compared, as upstream).
pub(crate) fn ensure_mount(
    container: &mut Map<String, Value>,
    volume: &str,
    mount_path: &str,
    read_only: bool,
) -> bool {
    let exists = container
        .get("volumeMounts")
        .and_then(Value::as_array)
        .is_some_and(|m| {
            m.iter()
                .any(|m| m.get("name").and_then(Value::as_str) == Some(volume))
        });
    if exists {
        return false;
    }
    array_field(container, "volumeMounts")
        .push(json!({"name": volume, "readOnly": read_only, "mountPath": mount_path}));
    true
}

/// The array at `key`, created when absent or null (type already checked by `PodView`).
pub(crate) fn array_field<'m>(obj: &'m mut Map<String, Value>, key: &str) -> &'m mut Vec<Value> {
    let slot = obj.entry(key.to_string()).or_insert(Value::Null);
    if !slot.is_array() {
        *slot = Value::Array(Vec::new());
    }
    match slot {
        Value::Array(a) => a,
        _ => unreachable!("just made an array"),
    }
}

/// Type-checked read access to the parts of a pod the mutation uses.
pub struct PodView<'a> {
    pub(crate) pod: &'a Map<String, Value>,
    pub(crate) metadata: Option<&'a Map<String, Value>>,
    pub(crate) spec: Option<&'a Map<String, Value>>,
    windows: bool,
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_error(value: &Value, field: &str, go_type: &str) -> PodError {
    PodError(format!(
        "json: cannot unmarshal {} into Go struct field Pod.{field} of type {go_type}",
        json_type(value)
    ))
}

/// `Some(object)` for an object, `None` for absent/null, error otherwise.
fn opt_object<'v>(
    parent: &'v Map<String, Value>,
    key: &str,
    field: &str,
    go_type: &str,
) -> Result<Option<&'v Map<String, Value>>, PodError> {
    match parent.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(other) => Err(type_error(other, field, go_type)),
    }
}

fn opt_array<'v>(
    parent: &'v Map<String, Value>,
    key: &str,
    field: &str,
    go_type: &str,
) -> Result<Option<&'v Vec<Value>>, PodError> {
    match parent.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a)),
        Some(other) => Err(type_error(other, field, go_type)),
    }
}

fn check_string(value: Option<&Value>, field: &str) -> Result<(), PodError> {
    match value {
        None | Some(Value::Null) | Some(Value::String(_)) => Ok(()),
        Some(other) => Err(type_error(other, field, "string")),
    }
}

fn check_string_map(map: Option<&Map<String, Value>>, field: &str) -> Result<(), PodError> {
    for value in map.into_iter().flat_map(|m| m.values()) {
        check_string(Some(value), field)?;
    }
    Ok(())
}

/// Check a list of named objects (containers, env, mounts, volumes) as far as we read it.
fn check_named_list(list: Option<&Vec<Value>>, field: &str, go_type: &str) -> Result<(), PodError> {
    for item in list.into_iter().flatten() {
        match item {
            Value::Object(o) => match o.get("name") {
                None | Some(Value::Null) | Some(Value::String(_)) => {}
                Some(other) => return Err(type_error(other, &format!("{field}.name"), "string")),
            },
            Value::Null => {}
            other => return Err(type_error(other, field, go_type)),
        }
    }
    Ok(())
}

impl<'a> PodView<'a> {
    /// Validate the fields the mutation reads or writes.
    pub fn new(pod: &'a Value) -> Result<Self, PodError> {
        let pod = match pod {
            Value::Object(o) => o,
            other => {
                return Err(PodError(format!(
                    "json: cannot unmarshal {} into Go value of type v1.Pod",
                    json_type(other)
                )))
            }
        };
        let metadata = opt_object(pod, "metadata", "metadata", "v1.ObjectMeta")?;
        if let Some(m) = metadata {
            check_string(m.get("name"), "metadata.name")?;
            check_string(m.get("generateName"), "metadata.generateName")?;
            check_string(m.get("namespace"), "metadata.namespace")?;
            let labels = opt_object(m, "labels", "metadata.labels", "map[string]string")?;
            check_string_map(labels, "metadata.labels")?;
            let annotations = opt_object(
                m,
                "annotations",
                "metadata.annotations",
                "map[string]string",
            )?;
            check_string_map(annotations, "metadata.annotations")?;
        }
        let spec = opt_object(pod, "spec", "spec", "v1.PodSpec")?;
        let mut windows = false;
        if let Some(s) = spec {
            check_string(s.get("serviceAccountName"), "spec.serviceAccountName")?;
            let selector = opt_object(s, "nodeSelector", "spec.nodeSelector", "map[string]string")?;
            check_string_map(selector, "spec.nodeSelector")?;
            windows = selector.is_some_and(|sel| {
                ["kubernetes.io/os", "beta.kubernetes.io/os"]
                    .iter()
                    .any(|k| sel.get(*k).and_then(Value::as_str) == Some("windows"))
            });
            let volumes = opt_array(s, "volumes", "spec.volumes", "[]v1.Volume")?;
            check_named_list(volumes, "spec.volumes", "v1.Volume")?;
            for (key, go) in [
                ("containers", "[]v1.Container"),
                ("initContainers", "[]v1.Container"),
            ] {
                let field = format!("spec.{key}");
                let list = opt_array(s, key, &field, go)?;
                check_named_list(list, &field, "v1.Container")?;
                let env_field = format!("{field}.env");
                let mounts_field = format!("{field}.volumeMounts");
                for c in list.into_iter().flatten().filter_map(Value::as_object) {
                    let env = opt_array(c, "env", &env_field, "[]v1.EnvVar")?;
                    check_named_list(env, &env_field, "v1.EnvVar")?;
                    let mounts = opt_array(c, "volumeMounts", &mounts_field, "[]v1.VolumeMount")?;
                    check_named_list(mounts, &mounts_field, "v1.VolumeMount")?;
                }
            }
        }
        Ok(Self {
            pod,
            metadata,
            spec,
            windows,
        })
    }

    pub fn annotation(&self, key: &str) -> Option<&'a str> {
        self.metadata?.get("annotations")?.get(key)?.as_str()
    }

    /// `metadata.name`, else `generateName` (for logs).
    pub fn name(&self) -> &'a str {
        let get = |k: &str| self.metadata.and_then(|m| m.get(k)).and_then(Value::as_str);
        get("name")
            .filter(|n| !n.is_empty())
            .or_else(|| get("generateName"))
            .unwrap_or("")
    }

    pub fn service_account(&self) -> &'a str {
        self.spec
            .and_then(|s| s.get("serviceAccountName"))
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// Pod annotation `<p>/token-expiration`: base-10 int64 clamped to ≥600; unparsable → `None`.
    pub fn token_expiration_override(&self, prefix: &str) -> Option<i64> {
        let raw = self.annotation(&format!("{prefix}/token-expiration"))?;
        parse_go_int64_base10(raw).map(|v| v.max(MIN_TOKEN_EXPIRATION))
    }

    /// Pod annotation `<p>/skip-containers` (first CSV record).
    pub fn skip_containers(&self, prefix: &str) -> HashSet<String> {
        self.annotation(&format!("{prefix}/skip-containers"))
            .and_then(csv_first_record)
            .map(|v| v.into_iter().collect())
            .unwrap_or_default()
    }

    /// The env value for a token file path: Windows pods get `C:\…`.
    pub fn env_path(&self, path: &str) -> String {
        if self.windows {
            format!("C:{}", path.replace('/', "\\"))
        } else {
            path.to_string()
        }
    }

    /// `spec.nodeSelector` selects Windows nodes (upstream's rule).
    pub fn is_windows(&self) -> bool {
        self.windows
    }

    pub(crate) fn has_init_containers(&self) -> bool {
        self.spec
            .and_then(|s| s.get("initContainers"))
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
    }

    /// `add` a label (upstream §4.5 op 1). A pod without metadata gets it created.
    pub(crate) fn label_op(&self, key: &str, value: &str) -> Option<PatchOp> {
        let escaped = key.replace('~', "~0").replace('/', "~1");
        Some(match self.metadata {
            None => PatchOp::add("/metadata", json!({"labels": {key: value}})),
            Some(m) if m.get("labels").is_some_and(Value::is_object) => {
                PatchOp::add(format!("/metadata/labels/{escaped}"), Value::from(value))
            }
            Some(_) => PatchOp::add("/metadata/labels", json!({key: value})),
        })
    }

    /// A pod without a spec object gets one first, so the following ops apply.
    pub(crate) fn spec_op(&self) -> Option<PatchOp> {
        self.spec
            .is_none()
            .then(|| PatchOp::add("/spec", json!({})))
    }

    /// The volume op, unless a volume with that name exists.
    pub(crate) fn volume_op(&self, name: &str, volume: &Value) -> Option<PatchOp> {
        let volumes = self
            .spec
            .and_then(|s| s.get("volumes"))
            .and_then(Value::as_array);
        match volumes {
            None => Some(PatchOp::add(
                "/spec/volumes",
                Value::Array(vec![volume.clone()]),
            )),
            Some(v)
                if v.iter()
                    .any(|v| v.get("name").and_then(Value::as_str) == Some(name)) =>
            {
                None
            }
            Some(_) => Some(PatchOp::add("/spec/volumes/0", volume.clone())),
        }
    }

    /// A copy of `spec.<key>` with `edit` applied to every non-skipped container object.
    /// Absent/null stays null (upstream marshals a nil slice as `null`).
    pub(crate) fn edit_containers(
        &self,
        key: &str,
        skip: &HashSet<String>,
        edit: &mut dyn FnMut(&mut Map<String, Value>),
    ) -> Value {
        let Some(Value::Array(list)) = self.spec.and_then(|s| s.get(key)) else {
            return Value::Null;
        };
        let mut list = list.clone();
        for container in list.iter_mut() {
            if let Value::Object(c) = container {
                let name = c.get("name").and_then(Value::as_str).unwrap_or("");
                if !skip.contains(name) {
                    edit(c);
                }
            }
        }
        Value::Array(list)
    }

    pub fn raw(&self) -> &'a Map<String, Value> {
        self.pod
    }
}

#[cfg(test)]
mod tests;
