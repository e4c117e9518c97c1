//! Shared helpers for the fixture-driven tests: load YAML/JSON fixtures, a fake identity source described
//! by a case file, JSON Patch application and upstream-equivalence normalisation (reference §4.6).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use webhook::identity::{BoxFuture, CommonConfig, IdentitySource, StsIdentity, StsLookup};
use webhook::mutate::{ContainerCredentialsSettings, MutateConfig};
use webhook::sidecar::{SidecarConfig, SidecarMode};

pub fn fixtures_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(kind)
}

pub fn read_yaml<T: serde::de::DeserializeOwned>(path: &Path) -> T {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Names of the case directories under `tests/fixtures/<kind>`.
pub fn case_dirs(kind: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir(kind))
        .expect("fixtures dir")
        .map(|e| e.expect("dir entry"))
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaseFile {
    pub description: String,
    #[serde(default)]
    pub upstream: String,
    #[serde(default)]
    pub notes: Option<String>,
    #[serde(default)]
    pub cache: CacheState,
    #[serde(default)]
    pub config: ConfigOverrides,
    #[serde(default)]
    pub jitter: Option<String>,
    /// Admission cases only.
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub status: Option<u16>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CacheState {
    /// When set, only this namespace's SA resolves (checks that the request namespace is used).
    #[serde(default)]
    pub namespace: Option<String>,
    /// What the IRSA lookup finds for the pod's SA (absent = not found).
    pub sts: Option<StsEntry>,
    /// Common configuration for the CC path (absent = upstream's `(false, 86400)`).
    pub common: Option<CommonEntry>,
    #[serde(default)]
    pub container_credentials: bool,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StsEntry {
    pub role_arn: String,
    #[serde(default)]
    pub audience: String,
    #[serde(default)]
    pub use_regional_sts: bool,
    pub token_expiration: i64,
    #[serde(default)]
    pub inject_sidecar: Option<bool>,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CommonEntry {
    pub use_regional_sts: bool,
    pub token_expiration: i64,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigOverrides {
    pub region: Option<String>,
    pub container_credentials: Option<CcOverrides>,
    pub sidecar: Option<SidecarOverrides>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CcOverrides {
    pub audience: String,
    pub mount_path: String,
    pub volume_name: String,
    pub token_path: String,
    pub full_uri: String,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SidecarOverrides {
    pub image: String,
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    /// `--sidecar-env NAME=VALUE` entries.
    #[serde(default)]
    pub env: Vec<String>,
}

/// The mutation config upstream's fixture harness uses, with the case's overrides.
pub fn mutate_config(overrides: &ConfigOverrides) -> MutateConfig {
    let cc = overrides.container_credentials.clone();
    MutateConfig {
        annotation_prefix: "eks.amazonaws.com".into(),
        token_mount_path: "/var/run/secrets/eks.amazonaws.com/serviceaccount".into(),
        aws_default_region: overrides.region.clone().unwrap_or_default(),
        container_credentials: match cc {
            Some(cc) => ContainerCredentialsSettings {
                audience: cc.audience,
                mount_path: cc.mount_path,
                volume_name: cc.volume_name,
                token_path: cc.token_path,
                full_uri: cc.full_uri,
            },
            None => ContainerCredentialsSettings {
                audience: "pods.eks.amazonaws.com".into(),
                mount_path: "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount".into(),
                volume_name: "eks-pod-identity-token".into(),
                token_path: "eks-pod-identity-token".into(),
                full_uri: "http://169.254.170.23/v1/credentials".into(),
            },
        },
        sidecar: overrides.sidecar.as_ref().map(|s| SidecarConfig {
            image: s.image.clone(),
            port: s.port.unwrap_or(9911),
            mode: match s.mode.as_deref() {
                Some("container") => SidecarMode::Container,
                _ => SidecarMode::Native,
            },
            annotation_prefix: "podcred.dev".into(),
            image_pull_policy: None,
            cpu_request: Some("10m".into()),
            memory_request: Some("16Mi".into()),
            cpu_limit: None,
            memory_limit: Some("64Mi".into()),
            run_as_user: 65532,
            env: s
                .env
                .iter()
                .map(|e| {
                    let (n, v) = e.split_once('=').expect("sidecar env NAME=VALUE");
                    (n.to_string(), v.to_string())
                })
                .collect(),
        }),
    }
}

/// Identity source answering every `(namespace, serviceAccount)` from the case's cache state.
pub struct FakeIdentities(pub CacheState);

impl FakeIdentities {
    fn namespace_matches(&self, namespace: &str) -> bool {
        self.0.namespace.as_deref().is_none_or(|n| n == namespace)
    }
}

impl IdentitySource for FakeIdentities {
    fn container_credentials(&self, namespace: &str, _service_account: &str) -> bool {
        self.0.container_credentials && self.namespace_matches(namespace)
    }
    fn common_config(&self, _namespace: &str, _service_account: &str) -> CommonConfig {
        self.0
            .common
            .map(|c| CommonConfig {
                use_regional_sts: c.use_regional_sts,
                token_expiration: c.token_expiration,
            })
            .unwrap_or_default()
    }
    fn sts_identity<'a>(
        &'a self,
        namespace: &'a str,
        _service_account: &'a str,
    ) -> BoxFuture<'a, StsLookup> {
        let lookup = match &self.0.sts {
            Some(s) if self.namespace_matches(namespace) => StsLookup::Found(StsIdentity {
                role_arn: s.role_arn.clone(),
                audience: s.audience.clone(),
                use_regional_sts: s.use_regional_sts,
                token_expiration: s.token_expiration,
                inject_sidecar: s.inject_sidecar,
            }),
            _ => StsLookup::NotFound,
        };
        Box::pin(async move { lookup })
    }
}

/// Apply a JSON Patch document to a copy of `doc`.
pub fn apply_patch(doc: &Value, patch_bytes: &[u8]) -> Value {
    let patch: json_patch::Patch =
        serde_json::from_slice(patch_bytes).expect("patch is a JSON Patch document");
    let mut out = doc.clone();
    json_patch::patch(&mut out, &patch).expect("patch applies");
    out
}

/// Upstream-equivalence normalisation (§4.6): drop nulls, `resources: {}` and `mountPath: ""`.
pub fn normalise(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, v)| {
                    let empty_resources =
                        k.as_str() == "resources" && v.as_object().is_some_and(|o| o.is_empty());
                    let empty_mount_path = k.as_str() == "mountPath" && v.as_str() == Some("");
                    !(v.is_null() || empty_resources || empty_mount_path)
                })
                .map(|(k, v)| (k.clone(), normalise(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(normalise).collect()),
        other => other.clone(),
    }
}

/// Assert two pods are equal after normalisation, with a readable diff.
pub fn assert_same_pod(case: &str, actual: &Value, expected: &Value) {
    let (a, e) = (normalise(actual), normalise(expected));
    if a != e {
        let mut differences = Vec::new();
        diff(&e, &a, String::new(), &mut differences);
        panic!(
            "{case}: pods differ at {differences:#?}\n--- expected\n{}\n--- actual\n{}",
            serde_yaml_ng::to_string(&e).unwrap(),
            serde_yaml_ng::to_string(&a).unwrap()
        );
    }
}

/// JSON pointers where `expected` and `actual` differ, with both values.
fn diff(expected: &Value, actual: &Value, path: String, out: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for key in e.keys().chain(a.keys().filter(|k| !e.contains_key(*k))) {
                let p = format!("{path}/{key}");
                match (e.get(key), a.get(key)) {
                    (Some(ev), Some(av)) => diff(ev, av, p, out),
                    (ev, av) => out.push(format!("{p}: expected {ev:?}, actual {av:?}")),
                }
            }
        }
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => {
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                diff(ev, av, format!("{path}/{i}"), out);
            }
        }
        (e, a) if e != a => out.push(format!("{path}: expected {e}, actual {a}")),
        _ => {}
    }
}
