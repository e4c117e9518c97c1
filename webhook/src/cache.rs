//! ServiceAccount and `pod-identity-webhook` ConfigMap cache (upstream `pkg/cache`, spec §3.1, §3.4, §5).
//!
//! Contract:
//! - [`sts_identity_from_annotations`] is the single place SA annotations become a [`StsIdentity`]; the
//!   server's cache and the offline `webhook inject` both use it.
//! - [`ServiceAccountCache`] keeps, per ServiceAccount, only the annotations under `<annotation-prefix>/`
//!   and `<sidecar-prefix>/` (an unannotated SA costs a key and nothing else) and derives identities on
//!   lookup. It is fed `kube_runtime::watcher::Event`s ([`ServiceAccountCache::apply_service_account_event`],
//!   [`ServiceAccountCache::apply_config_map_event`]) by [`run`]'s metadata watcher, or directly by tests.
//! - Lookup precedence: SA with a non-empty role > ConfigMap `ns/name` > ConfigMap `*/name` > SA without role.
//! - Missing SAs (IRSA path): with a grace period, one de-duplicated, rate-limited (10/s, burst 20), 1 s
//!   API GET per key is in flight at a time; a failed GET is re-issued by the next waiter (upstream reused a
//!   dead notifier). Every NotFound outcome increments `pod_identity_webhook_missing_sa_count`.
//! - Readiness ([`ServiceAccountCache::is_synced`]) is true once the first full list of ServiceAccounts
//!   (and of the ConfigMap, when watched) has been applied.

mod annotations;
mod config_map;
mod fetch;
mod imds;
mod run;
mod store;

pub use annotations::{
    is_valid_role_arn, parse_go_bool, sts_identity_from_annotations, AnnotationDefaults,
    RoleArnComposer,
};
pub use config_map::{
    parse_config_map, ConfigMapEntries, ParsedConfigMap, CONFIG_KEY, CONFIG_MAP_NAME,
};
pub use fetch::{ApiServiceAccountFetcher, FetchError, ServiceAccountFetcher};
pub use imds::{partition_for_region, role_arn_composer_from_imds, ImdsError};
pub use run::{run, CacheTasks};
pub use store::{CacheMetrics, LiveIdentities, ServiceAccountCache};
