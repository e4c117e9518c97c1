//! The pure mutation core: pod JSON → upstream's JSON Patch. (Mutation logic follows in the next commit.)

use crate::sidecar::SidecarConfig;

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
