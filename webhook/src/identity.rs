//! What a pod's service account resolves to: the contract between the caches (`cache`,
//! `container_credentials`) and the mutation (`admission`, `mutate`, `inject`).

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;

/// Upstream's cache entry: what IRSA mutation needs from a ServiceAccount's annotations or a
/// `pod-identity-webhook` ConfigMap entry. Serialized with upstream's Go field names (debug cache dump).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StsIdentity {
    /// Empty means "no role": the pod is not mutated (IRSA path).
    #[serde(rename = "RoleARN")]
    pub role_arn: String,
    /// Empty means "omit the audience from the projection" (API server default audience).
    #[serde(rename = "Audience")]
    pub audience: String,
    #[serde(rename = "UseRegionalSTS")]
    pub use_regional_sts: bool,
    #[serde(rename = "TokenExpiration")]
    pub token_expiration: i64,
    /// `<sidecar-prefix>/inject` on the ServiceAccount (podcred extension; `None` when absent).
    #[serde(skip)]
    pub inject_sidecar: Option<bool>,
}

/// Outcome of the IRSA lookup (upstream `Get` + grace-period wait).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StsLookup {
    /// Found in the SA cache or the ConfigMap; `role_arn` may still be empty.
    Found(StsIdentity),
    /// Not found (after the grace period, if any). The cache has counted it as a missing SA.
    NotFound,
}

/// Container-credentials path: regional-STS and token expiration from the SA cache "common configuration"
/// (SA entry → ConfigMap exact namespace → `(false, 86400)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommonConfig {
    pub use_regional_sts: bool,
    pub token_expiration: i64,
}

impl Default for CommonConfig {
    fn default() -> Self {
        Self {
            use_regional_sts: false,
            token_expiration: crate::mutate::DEFAULT_TOKEN_EXPIRATION,
        }
    }
}

/// Boxed future so the trait stays object-safe (`Arc<dyn IdentitySource>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Everything the mutation asks about a pod's `(namespace, serviceAccountName)`.
/// The server implements it with the live caches; `webhook inject` with the ServiceAccounts in its input.
pub trait IdentitySource: Send + Sync {
    /// Is the pair listed in the container-credentials (EKS Pod Identity) config file?
    fn container_credentials(&self, namespace: &str, service_account: &str) -> bool;
    /// Common configuration for the container-credentials path (no waiting, no API fetch, no metric).
    fn common_config(&self, namespace: &str, service_account: &str) -> CommonConfig;
    /// IRSA lookup: SA cache (non-empty role wins) → ConfigMap `ns/name` → ConfigMap `*/name`, waiting up to
    /// the grace period (with a de-duplicated, rate-limited API fetch) when the SA is not cached.
    fn sts_identity<'a>(
        &'a self,
        namespace: &'a str,
        service_account: &'a str,
    ) -> BoxFuture<'a, StsLookup>;
}
