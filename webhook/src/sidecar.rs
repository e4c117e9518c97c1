//! Sidecar injection settings (podcred extension; see `/work/notes/sidecar-contract.md`).
//! The injection itself lands in this module once the core mutation is done.

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
}

use crate::identity::StsIdentity;
use crate::mutate::{MutateConfig, Mutation, PodError, PodView};

/// Does this pod ask for the sidecar? (Implemented with the injection; until then never.)
pub(crate) fn requested(
    _pod: &PodView<'_>,
    _sts: &StsIdentity,
    _config: &SidecarConfig,
) -> Result<bool, PodError> {
    Ok(false)
}

/// Sidecar mutation (see module docs).
pub(crate) fn mutate(
    _pod: &PodView<'_>,
    _sts: &StsIdentity,
    _expiration: i64,
    _config: &MutateConfig,
    _sidecar: &SidecarConfig,
) -> Result<Mutation, PodError> {
    Err(PodError(
        "sidecar injection is not available in this build".into(),
    ))
}
