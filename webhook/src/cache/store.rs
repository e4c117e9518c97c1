//! The in-memory cache: compact ServiceAccount entries, ConfigMap entries, lookups, grace-period waits.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::watcher;
use kube::Resource;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{mpsc, Notify};

use super::annotations::{is_valid_role_arn, sts_identity_from_lookup, AnnotationDefaults};
use super::config_map::{parse_config_map, ConfigMapEntries, CONFIG_KEY, CONFIG_MAP_NAME};
use super::fetch::{
    FetchError, ServiceAccountFetcher, TokenBucket, FETCH_BURST, FETCH_QUEUE,
    FETCH_RATE_PER_SECOND, FETCH_TIMEOUT,
};
use crate::container_credentials::ContainerCredentials;
use crate::identity::{BoxFuture, CommonConfig, IdentitySource, StsIdentity, StsLookup};

/// The cache's metrics (registered by `metrics`): `pod_identity_webhook_missing_sa_count`,
/// `pod_identity_webhook_used`.
#[derive(Clone, Debug, Default)]
pub struct CacheMetrics {
    pub missing_sa: Counter,
    pub used: Gauge,
}

/// Only the relevant annotations of one ServiceAccount; `None` when it has none (the common case).
type Annotations = Option<Box<[(Box<str>, Box<str>)]>>;

struct ServiceAccountEntry {
    annotations: Annotations,
    /// List generation that last saw this entry; entries not seen by a completed re-list are dropped.
    generation: u32,
}

#[derive(Default)]
struct ServiceAccounts {
    entries: HashMap<Box<str>, ServiceAccountEntry>,
    generation: u32,
}

#[derive(Default)]
struct ConfigMapState {
    entries: ConfigMapEntries,
    seen_in_list: bool,
}

/// Waiters for one missing key share one notifier; at most one API fetch per key is in flight.
struct Pending {
    notify: Arc<Notify>,
    fetch_in_flight: bool,
}

struct FetchRequest {
    namespace: String,
    name: String,
}

/// ServiceAccount + ConfigMap cache (see the module docs of `cache`).
pub struct ServiceAccountCache {
    defaults: AnnotationDefaults,
    grace_period: Duration,
    service_accounts: RwLock<ServiceAccounts>,
    config_map: RwLock<ConfigMapState>,
    pending: Mutex<HashMap<String, Pending>>,
    fetch_requests: Mutex<Option<mpsc::Sender<FetchRequest>>>,
    metrics: CacheMetrics,
    service_accounts_synced: AtomicBool,
    config_map_synced: AtomicBool,
}

fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ServiceAccountCache {
    /// `watch_config_map`: whether ConfigMap events will arrive (readiness waits for them too).
    pub fn new(
        defaults: AnnotationDefaults,
        grace_period: Duration,
        watch_config_map: bool,
        metrics: CacheMetrics,
    ) -> Arc<Self> {
        Arc::new(Self {
            defaults,
            grace_period,
            service_accounts: RwLock::default(),
            config_map: RwLock::default(),
            pending: Mutex::default(),
            fetch_requests: Mutex::new(None),
            metrics,
            service_accounts_synced: AtomicBool::new(false),
            config_map_synced: AtomicBool::new(!watch_config_map),
        })
    }

    pub fn defaults(&self) -> &AnnotationDefaults {
        &self.defaults
    }

    /// Start the API-fetch worker (needs a tokio runtime). Without it, a grace period only waits for events.
    pub fn start_fetcher(self: &Arc<Self>, fetcher: Arc<dyn ServiceAccountFetcher>) {
        let (sender, receiver) = mpsc::channel(FETCH_QUEUE);
        *lock(&self.fetch_requests) = Some(sender);
        tokio::spawn(fetch_worker(Arc::downgrade(self), receiver, fetcher));
    }

    /// True once the first full ServiceAccount list (and ConfigMap list, when watched) has been applied.
    pub fn is_synced(&self) -> bool {
        self.service_accounts_synced.load(Ordering::Acquire)
            && self.config_map_synced.load(Ordering::Acquire)
    }

    /// Number of cached ServiceAccounts.
    pub fn service_account_count(&self) -> usize {
        self.read_service_accounts().entries.len()
    }

    fn read_service_accounts(&self) -> std::sync::RwLockReadGuard<'_, ServiceAccounts> {
        self.service_accounts
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_service_accounts(&self) -> std::sync::RwLockWriteGuard<'_, ServiceAccounts> {
        self.service_accounts
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn read_config_map(&self) -> std::sync::RwLockReadGuard<'_, ConfigMapState> {
        self.config_map
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_config_map(&self) -> std::sync::RwLockWriteGuard<'_, ConfigMapState> {
        self.config_map
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn identity(&self, annotations: &Annotations) -> StsIdentity {
        let slice: &[(Box<str>, Box<str>)] = annotations.as_deref().unwrap_or(&[]);
        sts_identity_from_lookup(
            |wanted| {
                slice
                    .iter()
                    .find(|(k, _)| &**k == wanted)
                    .map(|(_, v)| &**v)
            },
            &self.defaults,
        )
    }

    fn strip<'a>(
        &self,
        annotations: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Annotations {
        let kept: Vec<(Box<str>, Box<str>)> = annotations
            .into_iter()
            .filter(|(k, _)| self.defaults.is_relevant(k))
            .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
            .collect();
        (!kept.is_empty()).then(|| kept.into_boxed_slice())
    }

    /// Store one ServiceAccount (informer add/update, list item or API fetch) and wake its waiters.
    fn store(&self, namespace: &str, name: &str, annotations: Annotations) {
        let identity = self.identity(&annotations);
        if !identity.role_arn.is_empty() && !is_valid_role_arn(&identity.role_arn) {
            tracing::warn!("arn is invalid: {}", identity.role_arn);
        }
        let key = key(namespace, name);
        {
            let mut sas = self.write_service_accounts();
            let generation = sas.generation;
            sas.entries.insert(
                key.as_str().into(),
                ServiceAccountEntry {
                    annotations,
                    generation,
                },
            );
        }
        self.metrics.used.set(1);
        tracing::trace!(service_account = %key, role_arn = %identity.role_arn, "cached service account");
        if let Some(pending) = lock(&self.pending).remove(&key) {
            pending.notify.notify_waiters();
        }
    }

    /// Apply a ServiceAccount watch event (any resource type with metadata: full objects or
    /// `PartialObjectMeta<ServiceAccount>`).
    pub fn apply_service_account_event<K: Resource>(&self, event: &watcher::Event<K>) {
        match event {
            watcher::Event::Init => {
                let mut sas = self.write_service_accounts();
                sas.generation = sas.generation.wrapping_add(1);
            }
            watcher::Event::InitApply(object) | watcher::Event::Apply(object) => {
                let meta = object.meta();
                let (Some(name), Some(namespace)) = (&meta.name, &meta.namespace) else {
                    return;
                };
                let annotations = meta.annotations.as_ref().and_then(|a| self.strip(a.iter()));
                self.store(namespace, name, annotations);
            }
            watcher::Event::Delete(object) => {
                let meta = object.meta();
                if let (Some(name), Some(namespace)) = (&meta.name, &meta.namespace) {
                    self.write_service_accounts()
                        .entries
                        .remove(key(namespace, name).as_str());
                }
            }
            watcher::Event::InitDone => {
                {
                    let mut sas = self.write_service_accounts();
                    let generation = sas.generation;
                    sas.entries
                        .retain(|_, entry| entry.generation == generation);
                    sas.entries.shrink_to_fit();
                }
                if !self.service_accounts_synced.swap(true, Ordering::AcqRel) {
                    tracing::info!(
                        service_accounts = self.service_account_count(),
                        "service account cache synced"
                    );
                }
            }
        }
    }

    fn replace_config_map(&self, config_map: &ConfigMap) {
        let Some(config) = config_map
            .data
            .as_ref()
            .and_then(|data| data.get(CONFIG_KEY))
        else {
            tracing::error!(
                "failed to unmarshal new config: ConfigMap {CONFIG_MAP_NAME} has no `{CONFIG_KEY}` key; keeping the previous mappings"
            );
            return;
        };
        match parse_config_map(config, self.defaults.token_expiration) {
            Ok(parsed) => {
                for malformed in &parsed.malformed_keys {
                    tracing::warn!(
                        key = %malformed,
                        "ConfigMap {CONFIG_MAP_NAME}: key is not <namespace>/<serviceaccount>; skipped"
                    );
                }
                tracing::info!(
                    entries = parsed.entries.len(),
                    "loaded ConfigMap {CONFIG_MAP_NAME}"
                );
                self.write_config_map().entries = parsed.entries;
            }
            Err(error) => tracing::error!(
                %error,
                "failed to unmarshal new config from ConfigMap {CONFIG_MAP_NAME}; keeping the previous mappings"
            ),
        }
    }

    /// Apply a ConfigMap watch event. Only the object named `pod-identity-webhook` counts; its deletion (or
    /// absence from a re-list) clears the mappings.
    pub fn apply_config_map_event(&self, event: &watcher::Event<ConfigMap>) {
        let ours = |cm: &ConfigMap| cm.metadata.name.as_deref() == Some(CONFIG_MAP_NAME);
        match event {
            watcher::Event::Init => self.write_config_map().seen_in_list = false,
            watcher::Event::InitApply(cm) | watcher::Event::Apply(cm) if ours(cm) => {
                self.write_config_map().seen_in_list = true;
                self.replace_config_map(cm);
            }
            watcher::Event::Delete(cm) if ours(cm) => {
                tracing::info!("ConfigMap {CONFIG_MAP_NAME} deleted; clearing its mappings");
                self.write_config_map().entries.clear();
            }
            watcher::Event::InitDone => {
                {
                    let mut state = self.write_config_map();
                    if !state.seen_in_list && !state.entries.is_empty() {
                        tracing::info!(
                            "ConfigMap {CONFIG_MAP_NAME} no longer exists; clearing its mappings"
                        );
                        state.entries.clear();
                    }
                }
                self.config_map_synced.store(true, Ordering::Release);
            }
            _ => {}
        }
    }

    /// Upstream `Get` without waiting: `(identity if found, SA present in the SA cache)`.
    fn lookup(&self, namespace: &str, name: &str) -> (Option<StsIdentity>, bool) {
        let key = key(namespace, name);
        let from_sa = self
            .read_service_accounts()
            .entries
            .get(key.as_str())
            .map(|entry| self.identity(&entry.annotations));
        if let Some(identity) = &from_sa {
            if !identity.role_arn.is_empty() {
                return (from_sa, true);
            }
        }
        let in_sa_cache = from_sa.is_some();
        let cm = self.read_config_map();
        if let Some(identity) = cm
            .entries
            .get(&key)
            .or_else(|| cm.entries.get(&format!("*/{name}")))
        {
            return (Some(identity.clone()), in_sa_cache);
        }
        (from_sa, in_sa_cache)
    }

    /// How many lookups are waiting for `namespace/name` to appear (for tests and debugging).
    pub fn waiters(&self, namespace: &str, name: &str) -> usize {
        lock(&self.pending)
            .get(&key(namespace, name))
            .map_or(0, |entry| Arc::strong_count(&entry.notify) - 1)
    }

    /// Is an API fetch for `namespace/name` queued or running?
    pub fn fetch_in_flight(&self, namespace: &str, name: &str) -> bool {
        lock(&self.pending)
            .get(&key(namespace, name))
            .is_some_and(|entry| entry.fetch_in_flight)
    }

    /// Register interest in a missing key; enqueue an API fetch unless one is already in flight.
    fn register_waiter(&self, namespace: &str, name: &str) -> Arc<Notify> {
        let key = key(namespace, name);
        let mut pending = lock(&self.pending);
        let entry = pending.entry(key.clone()).or_insert_with(|| Pending {
            notify: Arc::new(Notify::new()),
            fetch_in_flight: false,
        });
        if !entry.fetch_in_flight {
            if let Some(sender) = lock(&self.fetch_requests).as_ref() {
                let request = FetchRequest {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                };
                match sender.try_send(request) {
                    Ok(()) => entry.fetch_in_flight = true,
                    Err(_) => tracing::warn!(
                        service_account = %key,
                        "service account fetch queue full; waiting for the watch only"
                    ),
                }
            }
        }
        entry.notify.clone()
    }

    /// Drop the key's notifier when its last waiter gives up and no fetch is pending (upstream kept them
    /// forever: one entry per SA name ever missed).
    fn forget_waiter(&self, namespace: &str, name: &str, notify: &Arc<Notify>) {
        let key = key(namespace, name);
        let mut pending = lock(&self.pending);
        if let Some(entry) = pending.get(&key) {
            let only_us = Arc::ptr_eq(&entry.notify, notify) && Arc::strong_count(notify) == 2;
            if only_us && !entry.fetch_in_flight {
                pending.remove(&key);
            }
        }
    }

    fn fetch_finished(&self, namespace: &str, name: &str) {
        if let Some(pending) = lock(&self.pending).get_mut(&key(namespace, name)) {
            // The next waiter re-issues the fetch (upstream kept a dead notifier here).
            pending.fetch_in_flight = false;
        }
    }

    fn not_found(&self) -> StsLookup {
        self.metrics.missing_sa.inc();
        StsLookup::NotFound
    }

    /// IRSA lookup with the grace period (see `IdentitySource::sts_identity`).
    pub async fn sts_identity(&self, namespace: &str, name: &str) -> StsLookup {
        let (found, _) = self.lookup(namespace, name);
        if let Some(identity) = found {
            return StsLookup::Found(identity);
        }
        if self.grace_period.is_zero() {
            return self.not_found();
        }
        let notify = self.register_waiter(namespace, name);
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        // The SA may have arrived between the first lookup and the registration.
        if let (Some(identity), _) = self.lookup(namespace, name) {
            return StsLookup::Found(identity);
        }
        let grace = self.grace_period;
        tracing::warn!(
            "Service account {namespace}/{name} not found in the cache. Waiting up to {grace:?} to be notified"
        );
        let outcome = tokio::time::timeout(grace, notified).await;
        self.forget_waiter(namespace, name, &notify);
        match outcome {
            Ok(()) => match self.lookup(namespace, name) {
                (Some(identity), _) => StsLookup::Found(identity),
                (None, _) => {
                    tracing::warn!(
                        "Service account {namespace}/{name} not found in the cache after being notified. Not mutating."
                    );
                    self.not_found()
                }
            },
            Err(_) => {
                tracing::warn!(
                    "Service account {namespace}/{name} not found in the cache after {grace:?}. Not mutating."
                );
                self.not_found()
            }
        }
    }

    /// Container-credentials path: SA entry → ConfigMap exact namespace → `(false, 86400)`.
    pub fn common_config(&self, namespace: &str, name: &str) -> CommonConfig {
        let key = key(namespace, name);
        let identity = self
            .read_service_accounts()
            .entries
            .get(key.as_str())
            .map(|entry| self.identity(&entry.annotations))
            .or_else(|| self.read_config_map().entries.get(&key).cloned());
        identity.map_or_else(CommonConfig::default, |identity| CommonConfig {
            use_regional_sts: identity.use_regional_sts,
            token_expiration: identity.token_expiration,
        })
    }

    /// Upstream's debug dump: the SA cache as pretty JSON (one-space indent), keys sorted.
    pub fn dump_json(&self) -> String {
        let dump: BTreeMap<String, StsIdentity> = self
            .read_service_accounts()
            .entries
            .iter()
            .map(|(key, entry)| (key.to_string(), self.identity(&entry.annotations)))
            .collect();
        let mut out = Vec::new();
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b" ");
        let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
        serde::Serialize::serialize(&dump, &mut serializer).expect("map of strings serializes");
        String::from_utf8(out).expect("serde_json writes UTF-8")
    }

    /// Upstream's debug clear: empty both caches (until the watch delivers objects again).
    pub fn clear(&self) {
        self.write_service_accounts().entries.clear();
        self.write_config_map().entries.clear();
    }
}

async fn fetch_worker(
    cache: Weak<ServiceAccountCache>,
    mut requests: mpsc::Receiver<FetchRequest>,
    fetcher: Arc<dyn ServiceAccountFetcher>,
) {
    let mut limiter = TokenBucket::new(FETCH_RATE_PER_SECOND, FETCH_BURST);
    while let Some(request) = requests.recv().await {
        limiter.acquire().await;
        let cache = cache.clone();
        let fetcher = fetcher.clone();
        tokio::spawn(async move {
            let FetchRequest { namespace, name } = request;
            let result =
                match tokio::time::timeout(FETCH_TIMEOUT, fetcher.fetch(&namespace, &name)).await {
                    Ok(result) => result,
                    Err(_) => Err(FetchError::Timeout(FETCH_TIMEOUT)),
                };
            let Some(cache) = cache.upgrade() else {
                return;
            };
            match result {
                Ok(annotations) => {
                    tracing::debug!(service_account = %key(&namespace, &name), "fetched service account from the API");
                    let stripped = cache.strip(annotations.iter());
                    cache.store(&namespace, &name, stripped);
                }
                Err(error) => {
                    tracing::warn!(
                        "fetching SA: {namespace}/{name}, but got error from API: {error}"
                    );
                    cache.fetch_finished(&namespace, &name);
                }
            }
        });
    }
}

/// The server's [`IdentitySource`]: the live SA/ConfigMap cache and the container-credentials file.
#[derive(Clone)]
pub struct LiveIdentities {
    pub cache: Arc<ServiceAccountCache>,
    pub container_credentials: Arc<ContainerCredentials>,
}

impl IdentitySource for LiveIdentities {
    fn container_credentials(&self, namespace: &str, service_account: &str) -> bool {
        self.container_credentials
            .contains(namespace, service_account)
    }

    fn common_config(&self, namespace: &str, service_account: &str) -> CommonConfig {
        self.cache.common_config(namespace, service_account)
    }

    fn sts_identity<'a>(
        &'a self,
        namespace: &'a str,
        service_account: &'a str,
    ) -> BoxFuture<'a, StsLookup> {
        Box::pin(self.cache.sts_identity(namespace, service_account))
    }
}
