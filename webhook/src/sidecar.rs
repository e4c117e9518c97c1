//! credproxy sidecar injection (podcred extension). This module is the single source of truth for the
//! webhook ↔ credproxy contract:
//!
//! - Requested by the pod (or pod template) annotation `<sidecar-prefix>/inject` (Go `ParseBool`; a
//!   parseable pod value wins), else the ServiceAccount's (`StsIdentity::inject_sidecar`); only on the IRSA
//!   path (an SA with a role; container-credentials mode wins as upstream) and only with `--sidecar-image`.
//!   Windows pods never get it (credproxy is a Linux image): they keep plain IRSA.
//! - The sidecar, named `credproxy`, is a native sidecar (first init container, `restartPolicy: Always`,
//!   startup probe on `/readyz` at `<port+1>`) or, with `--sidecar-mode=container`, the last container. Args:
//!   `--listen=127.0.0.1:<port>`, `--auth-token-file=/var/run/podcred/auth/token`,
//!   `--metrics-listen=0.0.0.0:<port+1>` and, when application containers may run as another user,
//!   `--auth-token-file-mode=0644`. It alone mounts the projected token (`aws-iam-token` at
//!   `--token-mount-path`) and gets the IRSA env (`AWS_STS_REGIONAL_ENDPOINTS`, region, `AWS_ROLE_ARN`,
//!   `AWS_WEB_IDENTITY_TOKEN_FILE`) with upstream's values; it runs non-root, read-only root filesystem,
//!   no privilege escalation, all capabilities dropped, RuntimeDefault seccomp.
//! - The STS call moves from the application into the sidecar, so the sidecar gets the application's STS
//!   endpoint settings ([`CARRIED_ENV`]: `AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL`,
//!   `AWS_STS_REGIONAL_ENDPOINTS`; the entry is copied as written, `valueFrom` included; the first non-skipped
//!   container that sets a name wins), else the cluster-wide `--sidecar-env NAME=VALUE` value. A carried or
//!   configured `AWS_STS_REGIONAL_ENDPOINTS` replaces the webhook's own, as the application's own setting
//!   does under plain IRSA. Other `--sidecar-env` names are appended; the role and token variables cannot be
//!   overridden (config validation).
//! - Every other non-skipped container gets `AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:<port>/v1/credentials`
//!   and `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=/var/run/podcred/auth/token` (unless either is already set)
//!   and a read-only mount of the in-memory `emptyDir` `podcred-auth` at `/var/run/podcred/auth`.
//! - Idempotent: an existing `credproxy` container, volume or mount is never added twice.

/// How the credproxy sidecar is added to a pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SidecarMode {
    /// Init container with `restartPolicy: Always` (Kubernetes native sidecar, 1.29+).
    #[default]
    Native,
    /// A regular container, for clusters without native sidecars.
    Container,
}

/// Validated `--sidecar-*` flags. Present in the config only when `--sidecar-image` is set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SidecarConfig {
    pub image: String,
    /// credproxy's loopback port; its metrics/probe listener is `port + 1`.
    pub port: u16,
    pub mode: SidecarMode,
    /// Annotation domain for `<prefix>/inject`.
    pub annotation_prefix: String,
    pub image_pull_policy: Option<String>,
    pub cpu_request: Option<String>,
    pub memory_request: Option<String>,
    pub cpu_limit: Option<String>,
    pub memory_limit: Option<String>,
    pub run_as_user: i64,
    /// `--sidecar-env NAME=VALUE`, in flag order (validated: not one of [`RESERVED_ENV`]).
    pub env: Vec<(String, String)>,
}

/// Application env the sidecar inherits: what the AWS SDKs read for the STS call credproxy now makes.
pub const CARRIED_ENV: [&str; 3] = [
    "AWS_ENDPOINT_URL_STS",
    "AWS_ENDPOINT_URL",
    "AWS_STS_REGIONAL_ENDPOINTS",
];

/// Sidecar env the webhook alone decides (`--sidecar-env` may not set them).
pub const RESERVED_ENV: [&str; 4] = [
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
];

use serde_json::{json, Map, Value};

use crate::go::clean_join;
use crate::identity::StsIdentity;
use crate::mutate::{
    append_env, array_field, ensure_mount, env_names, projected_volume, Mode, MutateConfig,
    Mutation, PatchOp, PodError, PodView, IRSA_TOKEN_PATH, IRSA_VOLUME_NAME,
};

/// The sidecar container's name.
pub const CONTAINER_NAME: &str = "credproxy";
/// The in-memory volume holding the auth token, and where it is mounted.
pub const AUTH_VOLUME_NAME: &str = "podcred-auth";
pub const AUTH_MOUNT_PATH: &str = "/var/run/podcred/auth";
pub const AUTH_TOKEN_FILE: &str = "/var/run/podcred/auth/token";

/// Does this pod ask for the sidecar?
pub(crate) fn requested(
    pod: &PodView<'_>,
    sts: &StsIdentity,
    config: &SidecarConfig,
) -> Result<bool, PodError> {
    let pod_value = pod
        .annotation(&format!("{}/inject", config.annotation_prefix))
        .and_then(crate::go::parse_bool);
    let wanted = pod_value.or(sts.inject_sidecar).unwrap_or(false);
    Ok(wanted && !pod.is_windows())
}

/// The sidecar mutation (see module docs).
pub(crate) fn mutate(
    pod: &PodView<'_>,
    sts: &StsIdentity,
    expiration: i64,
    config: &MutateConfig,
    sidecar: &SidecarConfig,
) -> Result<Mutation, PodError> {
    let skip = pod.skip_containers(&config.annotation_prefix);
    let mut ops = Vec::with_capacity(5);
    ops.extend(pod.spec_op());
    let mut changed = false;

    let token_volume =
        projected_volume(IRSA_VOLUME_NAME, &sts.audience, expiration, IRSA_TOKEN_PATH);
    let auth_volume = json!({"name": AUTH_VOLUME_NAME, "emptyDir": {"medium": "Memory"}});
    let volumes = pod
        .spec
        .and_then(|s| s.get("volumes"))
        .and_then(Value::as_array);
    let existing: Vec<&str> = volumes
        .map(|v| v.iter().filter_map(|v| v.get("name")?.as_str()).collect())
        .unwrap_or_default();
    let missing: Vec<Value> = [
        (IRSA_VOLUME_NAME, token_volume),
        (AUTH_VOLUME_NAME, auth_volume),
    ]
    .into_iter()
    .filter(|(name, _)| !existing.contains(name))
    .map(|(_, volume)| volume)
    .collect();
    if !missing.is_empty() {
        changed = true;
        if volumes.is_some() {
            ops.extend(
                missing
                    .into_iter()
                    .map(|v| PatchOp::add("/spec/volumes/-", v)),
            );
        } else {
            ops.push(PatchOp::add("/spec/volumes", Value::Array(missing)));
        }
    }

    let full_uri = format!("http://127.0.0.1:{}/v1/credentials", sidecar.port);
    let mut inject_app = |container: &mut Map<String, Value>| {
        if container.get("name").and_then(Value::as_str) == Some(CONTAINER_NAME) {
            return;
        }
        let names = env_names(container);
        let present = names.contains("AWS_CONTAINER_CREDENTIALS_FULL_URI")
            || names.contains("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
        if !present {
            changed |= append_env(
                container,
                &[
                    ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &full_uri),
                    ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", AUTH_TOKEN_FILE),
                ],
            );
        }
        changed |= ensure_mount(container, AUTH_VOLUME_NAME, AUTH_MOUNT_PATH, true);
    };
    let mut containers = pod.edit_containers("containers", &skip, &mut inject_app);
    let mut init_containers = pod.edit_containers("initContainers", &skip, &mut inject_app);

    let is_sidecar = |c: &Value| c.get("name").and_then(Value::as_str) == Some(CONTAINER_NAME);
    let has_sidecar = [&containers, &init_containers]
        .iter()
        .any(|list| list.as_array().is_some_and(|l| l.iter().any(is_sidecar)));
    if !has_sidecar {
        changed = true;
        let container = sidecar_container(pod, sts, config, sidecar);
        let (list, at_front) = match sidecar.mode {
            SidecarMode::Native => (&mut init_containers, true),
            SidecarMode::Container => (&mut containers, false),
        };
        if !list.is_array() {
            *list = Value::Array(Vec::new());
        }
        if let Value::Array(list) = list {
            if at_front {
                list.insert(0, container);
            } else {
                list.push(container);
            }
        }
    }
    ops.push(PatchOp::add("/spec/containers", containers));
    if init_containers.as_array().is_some_and(|l| !l.is_empty()) {
        ops.push(PatchOp::add("/spec/initContainers", init_containers));
    }
    Ok(Mutation {
        mode: Mode::StsWebIdentity,
        patch: ops,
        changed,
        sidecar: true,
    })
}

/// Whether every application container can read a 0640 token file owned by the sidecar without help:
/// the pod has an `fsGroup` (the emptyDir is then group-owned by it) or every container runs as the
/// sidecar's UID. Otherwise the webhook asks credproxy for 0644 (the emptyDir is private to the pod).
fn owner_or_group_can_read(pod: &PodView<'_>, sidecar: &SidecarConfig) -> bool {
    let pod_security = pod.spec.and_then(|s| s.get("securityContext"));
    if pod_security
        .and_then(|s| s.get("fsGroup"))
        .is_some_and(|g| !g.is_null())
    {
        return true;
    }
    let pod_user = pod_security
        .and_then(|s| s.get("runAsUser"))
        .and_then(Value::as_i64);
    ["containers", "initContainers"].iter().all(|key| {
        pod.spec
            .and_then(|s| s.get(*key))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|c| c.get("name").and_then(Value::as_str) != Some(CONTAINER_NAME))
            .all(|c| {
                let user = c
                    .pointer("/securityContext/runAsUser")
                    .and_then(Value::as_i64)
                    .or(pod_user);
                user == Some(sidecar.run_as_user)
            })
    })
}

fn env_name(entry: &Value) -> &str {
    entry.get("name").and_then(Value::as_str).unwrap_or("")
}

/// The sidecar's share of the application's env, then the remaining `--sidecar-env` entries (module docs).
fn carried_env(pod: &PodView<'_>, config: &MutateConfig, sidecar: &SidecarConfig) -> Vec<Value> {
    let skip = pod.skip_containers(&config.annotation_prefix);
    let app_entries: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|key| pod.spec.and_then(|s| s.get(*key)).and_then(Value::as_array))
        .flatten()
        .filter(|c| {
            let name = c.get("name").and_then(Value::as_str).unwrap_or("");
            name != CONTAINER_NAME && !skip.contains(name)
        })
        .filter_map(|c| c.get("env").and_then(Value::as_array))
        .flatten()
        .collect();
    let mut out: Vec<Value> = Vec::new();
    for name in CARRIED_ENV {
        if let Some(entry) = app_entries.iter().find(|e| env_name(e) == name) {
            out.push((*entry).clone());
        }
    }
    for (name, value) in &sidecar.env {
        if !out.iter().any(|e| env_name(e) == name) {
            out.push(json!({"name": name, "value": value}));
        }
    }
    out
}

fn sidecar_container(
    pod: &PodView<'_>,
    sts: &StsIdentity,
    config: &MutateConfig,
    sidecar: &SidecarConfig,
) -> Value {
    let probe_port = u32::from(sidecar.port) + 1;
    let mut args = vec![
        format!("--listen=127.0.0.1:{}", sidecar.port),
        format!("--auth-token-file={AUTH_TOKEN_FILE}"),
        format!("--metrics-listen=0.0.0.0:{probe_port}"),
    ];
    if !owner_or_group_can_read(pod, sidecar) {
        args.push("--auth-token-file-mode=0644".to_string());
    }
    let mut container = Map::new();
    container.insert("name".into(), Value::from(CONTAINER_NAME));
    container.insert("image".into(), Value::from(sidecar.image.as_str()));
    container.insert("args".into(), json!(args));
    if let Some(policy) = &sidecar.image_pull_policy {
        container.insert("imagePullPolicy".into(), Value::from(policy.as_str()));
    }
    container.insert(
        "ports".into(),
        json!([{"name": "credproxy-http", "containerPort": probe_port, "protocol": "TCP"}]),
    );
    // The IRSA variables, with upstream's values and order, then the STS endpoint settings (module docs).
    let token_file = clean_join(&config.token_mount_path, IRSA_TOKEN_PATH);
    let carried = carried_env(pod, config, sidecar);
    let mut env: Vec<(&str, &str)> = Vec::new();
    if sts.use_regional_sts
        && !carried
            .iter()
            .any(|e| env_name(e) == "AWS_STS_REGIONAL_ENDPOINTS")
    {
        env.push(("AWS_STS_REGIONAL_ENDPOINTS", "regional"));
    }
    if !config.aws_default_region.is_empty() {
        env.push(("AWS_DEFAULT_REGION", &config.aws_default_region));
        env.push(("AWS_REGION", &config.aws_default_region));
    }
    env.push(("AWS_ROLE_ARN", &sts.role_arn));
    env.push(("AWS_WEB_IDENTITY_TOKEN_FILE", &token_file));
    append_env(&mut container, &env);
    array_field(&mut container, "env").extend(carried);
    let quantities = |pairs: [(&str, &Option<String>); 2]| -> Map<String, Value> {
        pairs
            .into_iter()
            .filter_map(|(key, value)| Some((key.to_string(), Value::from(value.as_deref()?))))
            .collect()
    };
    let requests = quantities([
        ("cpu", &sidecar.cpu_request),
        ("memory", &sidecar.memory_request),
    ]);
    let limits = quantities([
        ("cpu", &sidecar.cpu_limit),
        ("memory", &sidecar.memory_limit),
    ]);
    let mut resources = Map::new();
    if !requests.is_empty() {
        resources.insert("requests".into(), Value::Object(requests));
    }
    if !limits.is_empty() {
        resources.insert("limits".into(), Value::Object(limits));
    }
    if !resources.is_empty() {
        container.insert("resources".into(), Value::Object(resources));
    }
    array_field(&mut container, "volumeMounts").extend([
        json!({"name": IRSA_VOLUME_NAME, "readOnly": true, "mountPath": config.token_mount_path}),
        json!({"name": AUTH_VOLUME_NAME, "mountPath": AUTH_MOUNT_PATH}),
    ]);
    let probe = |path: &str, period: u32, failures: u32| json!({"httpGet": {"path": path, "port": probe_port}, "periodSeconds": period, "failureThreshold": failures});
    // Startup allows 2 minutes for the first STS exchange; readiness then follows credential health.
    container.insert("startupProbe".into(), probe("/readyz", 1, 120));
    container.insert("readinessProbe".into(), probe("/readyz", 5, 3));
    container.insert("livenessProbe".into(), probe("/healthz", 10, 3));
    if sidecar.mode == SidecarMode::Native {
        container.insert("restartPolicy".into(), Value::from("Always"));
    }
    container.insert(
        "securityContext".into(),
        json!({
            "runAsNonRoot": true,
            "runAsUser": sidecar.run_as_user,
            "runAsGroup": sidecar.run_as_user,
            "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}
        }),
    );
    Value::Object(container)
}
