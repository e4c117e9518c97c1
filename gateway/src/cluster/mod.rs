//! Cluster mode (`gateway --from-cluster`): the same objects the config files hold, read from the API server.
//!
//! Contract:
//! - kube-runtime reflectors keep a local copy of every GatewayClass, Gateway and HTTPRoute
//!   (`gateway.networking.k8s.io/v1`), Backend (`gateway.kgateway.dev/v1alpha1`) and Secret. The first
//!   configuration is compiled once every reflector has listed its kind (the first full sync).
//! - On every change (debounced [`DEBOUNCE`]) [`select`] picks the objects of our Gateways
//!   ([`select::Scope`]) and `config::compile_objects` compiles them — the same compiler as the files. A
//!   configuration that compiles is swapped in with [`Gateway::install`] (in-flight requests keep the one they
//!   started with); one that does not is logged, one line per problem, and the last good one keeps serving.
//!   A change that leaves the selected objects as they were (status, resourceVersion, objects that are not
//!   ours) compiles nothing.
//! - When the API server is unreachable the reflectors retry with backoff and the gateway keeps serving; on
//!   reconnect they relist and the configuration catches up.
//! - Secret values are never logged (see [`select`] for what is stripped before compiling).
//!
//! Imports `config`, `state` and `model` only; `config` knows nothing of this module.
//!
//! `gateway controller` (provisioning a proxy per Gateway, leader-elected) is [`controller`], built on
//! [`provision`] (pure: Gateway + GatewayParameters → objects) and [`lease`] (the election).

pub mod controller;
pub mod lease;
pub mod provision;
pub mod select;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::reflector::{self, store::Writer, Store};
use kube::runtime::{watcher, WatchStreamExt as _};
use kube::{Api, Client};
use tokio::sync::Notify;

use crate::config::{self, Config, ConfigError, LoadOptions};
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
fn resources() -> [(&'static str, ApiResource); 5] {
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

/// Selects and compiles the current objects.
pub fn compile_snapshot(
    snapshot: &Snapshot,
    scope: &Scope,
    options: &LoadOptions,
) -> (Selection, Result<Config, ConfigError>) {
    let selection = select(snapshot, scope);
    let result = if selection.problems.is_empty() {
        config::compile_objects(&selection.objects, options)
    } else {
        Err(ConfigError {
            problems: selection.problems.clone(),
        })
    };
    let result = match result {
        Ok(mut config) => {
            config.warnings = config
                .warnings
                .iter()
                .map(|w| in_cluster_words(w))
                .collect();
            Ok(config)
        }
        Err(error) => Err(ConfigError {
            problems: error.problems.iter().map(|p| in_cluster_words(p)).collect(),
        }),
    };
    (selection, result)
}

/// The compiler's problem lines say where objects were looked for in file terms; in cluster mode they were
/// looked for in the cluster. (A stop-gap: the proper fix is a source name in `LoadOptions`.)
fn in_cluster_words(line: &str) -> String {
    line.replace(" not found in the config files", " not found in the cluster")
        .replace(
            "not in the config files (add the Secret manifest, or mount it and pass --secrets-dir)",
            "not in the cluster (create it in the Backend's namespace, or mount it and pass --secrets-dir)",
        )
        .replace("neither in the config files nor under", "neither in the cluster nor under")
}

/// Logs a rejected configuration, one line per problem.
pub fn log_rejected(error: &ConfigError) {
    for problem in &error.problems {
        tracing::error!(
            "cluster configuration rejected (the last good one keeps serving): {problem}"
        );
    }
}

/// Recompiles on every change and installs what compiles, for as long as the gateway runs.
/// `last_fingerprint` is that of the configuration installed at startup.
pub async fn follow(
    watch: ClusterWatch,
    gateway: Arc<Gateway>,
    scope: Scope,
    mut last_fingerprint: String,
) {
    loop {
        watch.next_change().await;
        let (selection, result) =
            compile_snapshot(&watch.snapshot(), &scope, &gateway.settings.load_options);
        if selection.fingerprint == last_fingerprint {
            continue;
        }
        last_fingerprint = selection.fingerprint;
        match result {
            Ok(config) => {
                tracing::info!(gateways = ?selection.gateways, "cluster configuration changed");
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
