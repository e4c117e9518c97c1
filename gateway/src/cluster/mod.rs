//! Cluster mode (`gateway --from-cluster`): the same objects the config files hold, read from the API server.
//!
//! Contract:
//! - kube-runtime reflectors keep a local copy of every GatewayClass, Gateway and HTTPRoute
//!   (`gateway.networking.k8s.io/v1`), ReferenceGrant (`v1beta1`), Backend (`gateway.kgateway.dev/v1alpha1`),
//!   Secret and Namespace (for `allowedRoutes` selectors). The first configuration is compiled once every
//!   reflector has listed its kind (the first full sync).
//! - On every change (debounced [`DEBOUNCE`]) [`select`] picks the objects of our Gateways
//!   ([`select::Scope`]) and `config::compile_decoded` compiles them — the same compiler as the files — and
//!   the result is swapped in with [`Gateway::install`] (in-flight requests keep the one they started with).
//!   A change that leaves the selected objects as they were (status, resourceVersion, objects that are not
//!   ours) compiles nothing.
//! - When the API server is unreachable the reflectors retry with backoff and the gateway keeps serving; on
//!   reconnect they relist and the configuration catches up.
//! - In cluster mode a problem rejects only the object it is about (`config::Findings`): the rest keeps
//!   serving, an unresolvable `backendRef` answers 500, and each problem is logged once per change.
//! - With a [`StatusWriter`] (`--write-status`), the statuses of [`status`] are written after every change,
//!   only where they differ.
//! - Secret values are never logged (see [`select`] for what is stripped before compiling).
//!
//! Imports `config`, `state`, `clock` and `model` only; `config` knows nothing of this module.
//!
//! `gateway controller` (provisioning a proxy per Gateway, leader-elected) is [`controller`], built on
//! [`provision`] (pure: Gateway + GatewayParameters → objects) and [`lease`] (the election).

pub mod controller;
pub mod lease;
pub mod provision;
pub mod select;
pub mod status;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::reflector::{self, store::Writer, Store};
use kube::runtime::{watcher, WatchStreamExt as _};
use kube::{Api, Client};
use tokio::sync::Notify;

use crate::config::{self, Config, ConfigError, LoadOptions, Source};
use crate::metrics::ResultLabels;
use crate::state::Gateway;
pub use select::{select, Scope, Selection, Snapshot};

/// Edits arrive in bursts (`kubectl apply` of several objects); wait this long after the first change.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// The default `--controller-name`: GatewayClasses with this `spec.controllerName` are served.
pub const DEFAULT_CONTROLLER_NAME: &str = "podcred.dev/gateway";

/// A Kubernetes client from `kubeconfig`, else the in-cluster service account.
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, String> {
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("cannot read kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?
        }
        None => kube::Config::incluster().map_err(|e| {
            format!("no in-cluster Kubernetes config ({e}); outside a pod pass --kubeconfig PATH")
        })?,
    };
    Client::try_from(config).map_err(|e| format!("cannot create the Kubernetes client: {e}"))
}

/// The watched kinds.
fn resources() -> [(&'static str, ApiResource); 7] {
    let gvk = |group: &str, version: &str, kind: &str| {
        ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
    };
    [
        (
            "GatewayClass",
            gvk(select::GATEWAY_API_GROUP, "v1", "GatewayClass"),
        ),
        ("Gateway", gvk(select::GATEWAY_API_GROUP, "v1", "Gateway")),
        (
            "HTTPRoute",
            gvk(select::GATEWAY_API_GROUP, "v1", "HTTPRoute"),
        ),
        (
            "Backend",
            gvk(select::KGATEWAY_GROUP, "v1alpha1", "Backend"),
        ),
        ("Secret", gvk("", "v1", "Secret")),
        (
            "ReferenceGrant",
            gvk(select::GATEWAY_API_GROUP, "v1beta1", "ReferenceGrant"),
        ),
        // For `allowedRoutes.namespaces.from: Selector`. A Namespace is little more than its metadata
        // (spec.finalizers, status.phase), so a full watch costs what a metadata-only one would.
        ("Namespace", gvk("", "v1", "Namespace")),
    ]
}

/// How long a failed watch waits before retrying: doubling from [`RetryBackoff::FIRST`] up to
/// [`RetryBackoff::MAX`], with up to 25% jitter, back to the start after a success. kube-runtime's default goes
/// up to 30 s, which made a restarted API server take ~15 s to be noticed; routes should follow sooner.
#[derive(Debug, Clone)]
pub struct RetryBackoff {
    next: Duration,
}

impl RetryBackoff {
    pub const FIRST: Duration = Duration::from_millis(250);
    pub const MAX: Duration = Duration::from_secs(4);
}

impl Default for RetryBackoff {
    fn default() -> Self {
        RetryBackoff { next: Self::FIRST }
    }
}

impl Iterator for RetryBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let base = self.next;
        self.next = (base * 2).min(Self::MAX);
        let jitter = base.mul_f64(rand::random::<f64>() * 0.25);
        Some(base + jitter)
    }
}

impl kube::runtime::utils::Backoff for RetryBackoff {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

/// Reflectors over the watched kinds, and a signal raised on every change.
pub struct ClusterWatch {
    stores: Vec<(&'static str, Store<DynamicObject>)>,
    changed: Arc<Notify>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for ClusterWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kinds: Vec<_> = self.stores.iter().map(|(k, s)| (*k, s.len())).collect();
        f.debug_struct("ClusterWatch")
            .field("objects", &kinds)
            .finish_non_exhaustive()
    }
}

impl ClusterWatch {
    /// Starts one reflector per kind (cluster-wide) on the current runtime.
    pub fn start(client: &Client) -> ClusterWatch {
        let changed = Arc::new(Notify::new());
        let mut stores = Vec::new();
        let mut tasks = Vec::new();
        for (kind, resource) in resources() {
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
            let writer = Writer::new(resource);
            stores.push((kind, writer.as_reader()));
            let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
                .backoff(RetryBackoff::default());
            let changed = changed.clone();
            tasks.push(tokio::spawn(async move {
                let mut stream = std::pin::pin!(stream);
                let mut failing = false;
                while let Some(event) = stream.next().await {
                    match event {
                        Ok(_) => {
                            if failing {
                                tracing::info!(kind, "watch resumed");
                                failing = false;
                            }
                            changed.notify_one();
                        }
                        // Retried with backoff by the stream; log the first failure of a run only.
                        Err(error) if !failing => {
                            failing = true;
                            tracing::warn!(kind, %error, "cannot watch {kind} objects (retrying; is the CRD installed and may the gateway list/watch it?)");
                        }
                        Err(error) => tracing::debug!(kind, %error, "watch still failing"),
                    }
                }
            }));
        }
        ClusterWatch {
            stores,
            changed,
            tasks,
        }
    }

    /// Waits until every reflector has listed its kind once, logging which ones are still waiting.
    pub async fn wait_synced(&self) {
        for (kind, store) in &self.stores {
            loop {
                match tokio::time::timeout(Duration::from_secs(10), store.wait_until_ready()).await
                {
                    Ok(_) => break,
                    Err(_) => {
                        tracing::warn!(kind, "still waiting for the first list of {kind} objects")
                    }
                }
            }
        }
        tracing::info!(objects = ?self.counts(), "cluster objects synced");
    }

    fn counts(&self) -> Vec<(&'static str, usize)> {
        self.stores.iter().map(|(k, s)| (*k, s.len())).collect()
    }

    /// The objects held now.
    pub fn snapshot(&self) -> Snapshot {
        let mut snapshot = Snapshot::default();
        for (kind, store) in &self.stores {
            let values = store
                .state()
                .iter()
                .filter_map(|object| serde_json::to_value(object.as_ref()).ok())
                .collect();
            match *kind {
                "GatewayClass" => snapshot.gateway_classes = values,
                "Gateway" => snapshot.gateways = values,
                "HTTPRoute" => snapshot.http_routes = values,
                "Backend" => snapshot.backends = values,
                "ReferenceGrant" => snapshot.reference_grants = values,
                "Namespace" => snapshot.namespaces = values,
                _ => snapshot.secrets = values,
            }
        }
        snapshot
    }

    /// Returns after the next change plus [`DEBOUNCE`] (changes during the wait are folded in).
    pub async fn next_change(&self) {
        self.changed.notified().await;
        tokio::time::sleep(DEBOUNCE).await;
    }
}

impl Drop for ClusterWatch {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Selects and compiles the current objects (in cluster mode: problems reject only the objects they are
/// about, see `config::Findings`).
pub fn compile_snapshot(
    snapshot: &Snapshot,
    scope: &Scope,
    options: &LoadOptions,
) -> (Selection, Result<Config, ConfigError>) {
    let selection = select(snapshot, scope);
    let options = LoadOptions {
        source: Source::Cluster,
        ..options.clone()
    };
    let result = config::compile_decoded(&selection.objects, selection.problems.clone(), &options);
    (selection, result)
}

/// Logs the problems of a configuration, one line each: what is not served, and why.
pub fn log_problems(config: &Config) {
    for problem in &config.findings.errors {
        tracing::warn!("not served: {problem}");
    }
}

/// Logs a rejected configuration, one line per problem.
pub fn log_rejected(error: &ConfigError) {
    for problem in &error.problems {
        tracing::error!(
            "cluster configuration rejected (the last good one keeps serving): {problem}"
        );
    }
}

/// Who writes status from this process (`--write-status`), and how.
#[derive(Clone)]
pub struct StatusWriter {
    pub client: Client,
    pub clock: crate::clock::SharedClock,
}

impl std::fmt::Debug for StatusWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusWriter").finish_non_exhaustive()
    }
}

/// After a failed status write, try again this long later even if nothing changes.
const STATUS_RETRY: Duration = Duration::from_secs(2);

/// Recompiles on every change and installs what compiles, for as long as the gateway runs; with `status`,
/// also writes the statuses that differ (each change, and again after a failed write).
/// `last_fingerprint` and `findings` are those of the configuration installed at startup.
pub async fn follow(
    watch: ClusterWatch,
    gateway: Arc<Gateway>,
    scope: Scope,
    mut last_fingerprint: String,
    mut findings: config::Findings,
    status: Option<StatusWriter>,
) {
    let mut retry = false;
    if let Some(writer) = &status {
        retry = !write_status(writer, &watch.snapshot(), &scope, &findings).await;
    }
    loop {
        if retry {
            tokio::select! {
                _ = watch.next_change() => {}
                _ = tokio::time::sleep(STATUS_RETRY) => {}
            }
        } else {
            watch.next_change().await;
        }
        let snapshot = watch.snapshot();
        let (selection, result) =
            compile_snapshot(&snapshot, &scope, &gateway.settings.load_options);
        if selection.fingerprint != last_fingerprint {
            last_fingerprint = selection.fingerprint;
            match result {
                Ok(config) => {
                    tracing::info!(gateways = ?selection.gateways, "cluster configuration changed");
                    log_problems(&config);
                    findings = config.findings.clone();
                    gateway.install(config).await;
                }
                Err(error) => {
                    log_rejected(&error);
                    gateway
                        .metrics
                        .reloads
                        .get_or_create(&ResultLabels { result: "error" })
                        .inc();
                }
            }
        }
        if let Some(writer) = &status {
            retry = !write_status(writer, &snapshot, &scope, &findings).await;
        }
    }
}

/// Writes the statuses that differ; false when a write failed (to be retried).
pub(crate) async fn write_status(
    writer: &StatusWriter,
    snapshot: &Snapshot,
    scope: &Scope,
    findings: &config::Findings,
) -> bool {
    let now = status::rfc3339(writer.clock.now());
    let updates = status::desired(snapshot, scope, findings, &now);
    if updates.is_empty() {
        return true;
    }
    let objects: Vec<String> = updates
        .iter()
        .map(|u| {
            format!(
                "{} {}",
                u.kind,
                u.namespace
                    .as_deref()
                    .map_or(u.name.clone(), |ns| format!("{ns}/{}", u.name))
            )
        })
        .collect();
    match status::write(&writer.client, &updates).await {
        Ok(count) => {
            tracing::info!(count, ?objects, "status written");
            true
        }
        // A concurrent change: the watch brings it, and the next round computes from it.
        Err(error) if matches!(&error.source, kube::Error::Api(e) if e.code == 409) => {
            tracing::debug!(%error, "status write conflicted; recomputing");
            false
        }
        Err(error) => {
            tracing::warn!(%error, "status write failed (retrying; may the gateway patch the status subresource?)");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::utils::Backoff as _;

    #[test]
    fn retries_double_up_to_the_cap_with_bounded_jitter_and_reset() {
        let mut backoff = RetryBackoff::default();
        let delays: Vec<Duration> = (&mut backoff).take(8).collect();
        let bases = [250, 500, 1000, 2000, 4000, 4000, 4000, 4000].map(Duration::from_millis);
        for (delay, base) in delays.iter().zip(bases) {
            assert!(*delay >= base && *delay <= base.mul_f64(1.25), "{delays:?}");
        }
        backoff.reset();
        assert!(backoff.next().expect("never gives up") <= Duration::from_millis(313));
    }
}
