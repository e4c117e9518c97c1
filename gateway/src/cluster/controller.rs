//! `gateway controller`: the control plane that provisions a proxy per Gateway, as kgateway does.
//!
//! Contract:
//! - One process per replica; all replicas watch (the same reflectors as `--from-cluster`, plus
//!   `GatewayParameters`) and are ready once every kind has been listed, but only the holder of the
//!   `coordination.k8s.io/v1` Lease ([`lease`](super::lease)) writes to the API server.
//! - The leader, on every change (debounced), when it becomes leader and every `--resync-period`: for each
//!   Gateway whose GatewayClass has `--controller-name`, server-side applies (field manager
//!   [`FIELD_MANAGER`], forced) the ServiceAccount, Deployment and Service of [`provision::desired_objects`],
//!   and, with `--proxy-cluster-role`, one ClusterRoleBinding of that name binding the role to every
//!   provisioned ServiceAccount. An object whose desired state has not changed since its last successful
//!   apply is not sent again (the resync period clears that memory, which also repairs drift).
//! - A Gateway that cannot be provisioned (missing or invalid `GatewayParameters`, no HTTP listener, a
//!   failed apply) is logged with the Gateway and field, counted as an error, and retried after
//!   [`RETRY_AFTER_ERROR`] and on the next change; objects already provisioned for it are left as they are.
//! - Leadership is checked between passes: a pass in flight when the Lease is lost finishes. Its applies are
//!   idempotent and the same any leader would make from the same objects, so the overlap writes nothing new.
//! - Deleting a Gateway deletes its objects through their owner references (Kubernetes' garbage collector);
//!   the controller deletes nothing itself.
//! - Admin listener: `/healthz`, `/readyz` (200 once the first full list of every kind is in, leader or
//!   not), `/metrics`: `gateway_controller_leader` (1 on the leader), `gateway_controller_reconciles_total
//!   {result}` (one per Gateway per pass), `gateway_controller_applies_total{kind,result}`.
//!
//! Imports `cluster` (watch, select), `provision` and `lease`; nothing from the data plane.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::reflector::{self, store::Writer, Store};
use kube::runtime::{watcher, WatchStreamExt as _};
use kube::{Api, Client};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::{json, Value};
use tokio::sync::{watch, Notify};

use super::lease::{Elector, Timings};
use super::provision::{self, Image, ProxyDefaults};
use super::{
    ClusterWatch, RetryBackoff, Scope, Snapshot, StatusWriter, DEBOUNCE, DEFAULT_CONTROLLER_NAME,
};
use crate::config::{LoadOptions, Source};

/// How soon a pass that failed is tried again (without waiting for a change or the resync).
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(5);

/// The server-side apply field manager of every object the controller writes.
pub const FIELD_MANAGER: &str = "podcred-gateway-controller";

/// `gateway controller` options.
#[derive(Debug, Clone, clap::Args)]
pub struct ControllerArgs {
    /// kubeconfig (default: the pod's in-cluster service account).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Provision the Gateways whose GatewayClass has this spec.controllerName (also passed to the proxies).
    #[arg(long, default_value = DEFAULT_CONTROLLER_NAME)]
    pub controller_name: String,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub admin_listen: SocketAddr,
    /// The leader-election Lease's name.
    #[arg(long, default_value = "podcred-gateway-controller")]
    pub lease_name: String,
    /// The Lease's namespace (in a pod: its own, from the downward API).
    #[arg(long, env = "POD_NAMESPACE", default_value = "podcred-system")]
    pub lease_namespace: String,
    /// This replica's identity in the Lease (in a pod: its name, from the downward API; default hostname-pid).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// How long a silent leader's Lease keeps followers waiting.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,
    /// A leader that could not renew for this long steps down (shorter than --lease-duration).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub renew_deadline: Duration,
    /// How often candidates try to acquire and the leader renews.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub retry_period: Duration,
    /// Every Gateway is re-applied this often, even without a change (repairs drift).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub resync_period: Duration,
    /// Proxy image registry (GatewayParameters kube.envoyContainer.image.registry overrides it).
    #[arg(long, default_value = "ghcr.io")]
    pub proxy_image_registry: String,
    /// Proxy image repository.
    #[arg(long, default_value = "podcred/gateway")]
    pub proxy_image_repository: String,
    /// Proxy image tag (default: this binary's version).
    #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
    pub proxy_image_tag: String,
    /// Proxy image pull policy ("" leaves the Kubernetes default).
    #[arg(long, default_value = "IfNotPresent")]
    pub proxy_image_pull_policy: String,
    /// The pod annotation that asks the podcred webhook for the credproxy sidecar (set to "true").
    #[arg(long, default_value = "podcred.dev/inject")]
    pub sidecar_annotation: String,
    /// A ClusterRole (the chart's read-only proxy role) bound, by one ClusterRoleBinding of the same name, to
    /// every provisioned ServiceAccount. Unset: the proxies' RBAC is left to the operator.
    #[arg(long)]
    pub proxy_cluster_role: Option<String>,
    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::config::parse_duration(text)
        .ok_or_else(|| format!("{text:?} is not a duration like 15s, 500ms or 1m30s"))
}

/// Why the controller stopped.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Io(String),
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApplyLabels {
    kind: String,
    result: &'static str,
}

/// The controller's metrics and readiness, shared with the admin listener.
#[derive(Debug)]
struct Shared {
    registry: Registry,
    leader: Gauge,
    reconciles: Family<ResultLabel, Counter>,
    applies: Family<ApplyLabels, Counter>,
    synced: AtomicBool,
}

impl Shared {
    fn new() -> Shared {
        let mut registry = Registry::default();
        let leader = Gauge::default();
        let reconciles = Family::<ResultLabel, Counter>::default();
        let applies = Family::<ApplyLabels, Counter>::default();
        registry.register(
            "gateway_controller_leader",
            "1 while this replica holds the leader Lease",
            leader.clone(),
        );
        registry.register(
            "gateway_controller_reconciles",
            "Gateways reconciled by the leader, by result",
            reconciles.clone(),
        );
        registry.register(
            "gateway_controller_applies",
            "Server-side applies of provisioned objects, by kind and result",
            applies.clone(),
        );
        Shared {
            registry,
            leader,
            reconciles,
            applies,
            synced: AtomicBool::new(false),
        }
    }
}

fn admin_router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|State(shared): State<Arc<Shared>>| async move {
                if shared.synced.load(Ordering::Acquire) {
                    (http::StatusCode::OK, "ready\n")
                } else {
                    (
                        http::StatusCode::SERVICE_UNAVAILABLE,
                        "waiting for the first list of every watched kind\n",
                    )
                }
            }),
        )
        .route(
            "/metrics",
            get(|State(shared): State<Arc<Shared>>| async move {
                let mut out = String::new();
                prometheus_client::encoding::text::encode(&mut out, &shared.registry)
                    .expect("writing to a String cannot fail");
                (
                    [(
                        http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    out,
                )
            }),
        )
        .with_state(shared)
}

/// A reflector over `GatewayParameters` (all namespaces), raising `changed` on every event.
fn watch_parameters(
    client: &Client,
    changed: Arc<Notify>,
) -> (Store<DynamicObject>, tokio::task::JoinHandle<()>) {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(
            provision::PARAMETERS_GROUP,
            "v1alpha1",
            provision::PARAMETERS_KIND,
        ),
        "gatewayparameters",
    );
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let writer = Writer::new(resource);
    let store = writer.as_reader();
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
        .backoff(RetryBackoff::default());
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        let mut failing = false;
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => {
                    failing = false;
                    changed.notify_one();
                }
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(%error, "cannot watch GatewayParameters (retrying; is the CRD installed and may the controller list/watch it?)");
                }
                Err(error) => tracing::debug!(%error, "GatewayParameters watch still failing"),
            }
        }
    });
    (store, task)
}

/// Runs the controller until SIGTERM/SIGINT; a leader releases its Lease on the way out.
pub async fn run(args: ControllerArgs) -> Result<(), ControllerError> {
    let timings = Timings {
        lease_duration: args.lease_duration,
        renew_deadline: args.renew_deadline,
        retry_period: args.retry_period,
    };
    timings.validate().map_err(ControllerError::Usage)?;
    let client = super::client(args.kubeconfig.as_deref())
        .await
        .map_err(ControllerError::Usage)?;
    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let shared = Arc::new(Shared::new());

    let admin = tokio::net::TcpListener::bind(args.admin_listen)
        .await
        .map_err(|e| ControllerError::Io(format!("cannot listen on {}: {e}", args.admin_listen)))?;
    let admin_router = admin_router(shared.clone());
    let admin_task = tokio::spawn(async move { axum::serve(admin, admin_router).await });

    let watch = ClusterWatch::start(&client);
    let parameters_changed = Arc::new(Notify::new());
    let (parameters, parameters_task) = watch_parameters(&client, parameters_changed.clone());

    let mut elector = Elector::new(
        Api::namespaced(client.clone(), &args.lease_namespace),
        &args.lease_name,
        &identity,
        timings,
    );
    let leader = elector.subscribe();
    tracing::info!(%identity, lease = %format!("{}/{}", args.lease_namespace, args.lease_name), "gateway controller starting");

    let reconciler = Reconciler {
        client: client.clone(),
        controller_name: args.controller_name.clone(),
        defaults: ProxyDefaults {
            image: Image {
                registry: Some(args.proxy_image_registry.clone()),
                repository: Some(args.proxy_image_repository.clone()),
                tag: Some(args.proxy_image_tag.clone()),
                digest: None,
                pull_policy: Some(args.proxy_image_pull_policy.clone()).filter(|p| !p.is_empty()),
            },
            controller_name: args.controller_name.clone(),
            sidecar_annotation: args.sidecar_annotation.clone(),
        },
        proxy_cluster_role: args.proxy_cluster_role.clone(),
        applied: HashMap::new(),
        shared: shared.clone(),
        status_writer: StatusWriter {
            client: client.clone(),
            clock: crate::clock::system(),
        },
    };
    let loop_task = tokio::spawn(reconcile_loop(
        reconciler,
        watch,
        parameters,
        parameters_changed,
        leader,
        args.resync_period,
    ));

    tokio::select! {
        _ = elector.run() => {}
        _ = shutdown_signal() => tracing::info!("shutting down"),
    }
    // Stop writing before giving the Lease up, so the next leader never overlaps with us.
    loop_task.abort();
    let _ = loop_task.await;
    elector.release().await;
    parameters_task.abort();
    admin_task.abort();
    Ok(())
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into());
    format!("{host}-{}", std::process::id())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Waits for the first list of every kind, then reconciles whenever this replica leads.
async fn reconcile_loop(
    mut reconciler: Reconciler,
    watch: ClusterWatch,
    parameters: Store<DynamicObject>,
    parameters_changed: Arc<Notify>,
    mut leader: watch::Receiver<bool>,
    resync_period: Duration,
) {
    watch.wait_synced().await;
    let _ = parameters.wait_until_ready().await;
    reconciler.shared.synced.store(true, Ordering::Release);
    let mut resync = tokio::time::interval(resync_period);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leading = false;
    // A pass with a failed apply (API server unreachable, a conflict) is retried soon, not at the next resync.
    let mut failed = false;
    loop {
        let now_leading = *leader.borrow_and_update();
        reconciler.shared.leader.set(i64::from(now_leading));
        if now_leading && !leading {
            // Another leader may have written in between: apply everything again.
            reconciler.applied.clear();
        }
        leading = now_leading;
        if leading {
            let snapshot = watch.snapshot();
            let parameters: Vec<Value> = parameters
                .state()
                .iter()
                .filter_map(|p| serde_json::to_value(p.as_ref()).ok())
                .collect();
            failed = !reconciler.reconcile_all(&snapshot, &parameters).await;
            // Gateway API status (gateway/src/cluster/status.rs): by the leader only, from the same snapshot.
            failed |= !reconciler.write_status(&snapshot).await;
        }
        tokio::select! {
            _ = watch.next_change() => {}
            _ = parameters_changed.notified() => tokio::time::sleep(DEBOUNCE).await,
            _ = resync.tick() => reconciler.applied.clear(),
            _ = leader.changed() => {}
            _ = tokio::time::sleep(RETRY_AFTER_ERROR), if failed => {}
        }
    }
}

/// The leader's writer: desired objects → server-side apply, remembering what was applied.
struct Reconciler {
    client: Client,
    controller_name: String,
    defaults: ProxyDefaults,
    proxy_cluster_role: Option<String>,
    /// `kind/namespace/name` → the body last applied successfully.
    applied: HashMap<String, String>,
    shared: Arc<Shared>,
    status_writer: StatusWriter,
}

impl Reconciler {
    /// Writes the statuses of every GatewayClass, Gateway and HTTPRoute of our class that differ from what the
    /// compiler finds in `snapshot` (nothing when they agree); `false` when a write failed (retried soon).
    async fn write_status(&self, snapshot: &Snapshot) -> bool {
        let scope = Scope {
            controller_name: self.controller_name.clone(),
            gateway: None,
        };
        let options = LoadOptions {
            source: Source::Cluster,
            ..LoadOptions::default()
        };
        let (_, compiled) = super::compile_snapshot(snapshot, &scope, &options);
        let findings = compiled.map(|c| c.findings).unwrap_or_default();
        super::write_status(&self.status_writer, snapshot, &scope, &findings).await
    }

    /// One pass over every Gateway of our class; `false` when something could not be applied.
    async fn reconcile_all(&mut self, snapshot: &Snapshot, parameters: &[Value]) -> bool {
        let mut all_ok = true;
        let classes: BTreeSet<&str> = snapshot
            .gateway_classes
            .iter()
            .filter(|c| {
                c.pointer("/spec/controllerName").and_then(Value::as_str)
                    == Some(self.controller_name.as_str())
            })
            .filter_map(|c| c.pointer("/metadata/name").and_then(Value::as_str))
            .collect();
        let mut gateways: Vec<&Value> = snapshot
            .gateways
            .iter()
            .filter(|g| {
                g.pointer("/spec/gatewayClassName")
                    .and_then(Value::as_str)
                    .is_some_and(|class| classes.contains(class))
            })
            .collect();
        gateways.sort_by_key(|g| object_id(g));
        let mut service_accounts = Vec::new();
        for gateway in gateways {
            let id = object_id(gateway);
            let result = self.reconcile_gateway(gateway, parameters).await;
            let label = match &result {
                Ok(()) => "ok",
                Err(problem) => {
                    tracing::error!(gateway = %id, "cannot provision Gateway {id}: {problem}");
                    all_ok = false;
                    "error"
                }
            };
            self.shared
                .reconciles
                .get_or_create(&ResultLabel { result: label })
                .inc();
            service_accounts.push(id);
        }
        if let Some(role) = self.proxy_cluster_role.clone() {
            let binding = proxy_role_binding(&role, &service_accounts);
            if let Err(problem) = self.apply(&binding).await {
                tracing::error!(
                    "cannot bind ClusterRole {role} to the proxies' ServiceAccounts: {problem}"
                );
                all_ok = false;
            }
        }
        all_ok
    }

    async fn reconcile_gateway(
        &mut self,
        gateway: &Value,
        parameters: &[Value],
    ) -> Result<(), String> {
        let namespace = gateway
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let params = match provision::parameters_ref(gateway)? {
            None => None,
            Some(name) => {
                let object = parameters
                    .iter()
                    .find(|p| {
                        p.pointer("/metadata/namespace").and_then(Value::as_str) == Some(namespace)
                            && p.pointer("/metadata/name").and_then(Value::as_str) == Some(name.as_str())
                    })
                    .ok_or_else(|| {
                        format!("spec.infrastructure.parametersRef: GatewayParameters {namespace}/{name} not found")
                    })?;
                Some(
                    provision::decode_parameters(object)
                        .map_err(|e| format!("GatewayParameters {namespace}/{name}: {e}"))?,
                )
            }
        };
        let objects = provision::desired_objects(gateway, params.as_ref(), &self.defaults)?;
        for object in &objects {
            self.apply(object).await?;
        }
        Ok(())
    }

    /// Server-side applies `object` unless the same body was applied last time.
    async fn apply(&mut self, object: &Value) -> Result<(), String> {
        let kind = object["kind"].as_str().unwrap_or_default().to_string();
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let namespace = object["metadata"]["namespace"].as_str();
        let key = format!("{kind}/{}/{name}", namespace.unwrap_or(""));
        let body = object.to_string();
        if self.applied.get(&key) == Some(&body) {
            return Ok(());
        }
        let resource = match kind.as_str() {
            "ServiceAccount" => ApiResource::erase::<ServiceAccount>(&()),
            "Deployment" => ApiResource::erase::<Deployment>(&()),
            "Service" => ApiResource::erase::<Service>(&()),
            "ClusterRoleBinding" => ApiResource::erase::<ClusterRoleBinding>(&()),
            other => return Err(format!("internal: no API for kind {other}")),
        };
        let api: Api<DynamicObject> = match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &resource),
            None => Api::all_with(self.client.clone(), &resource),
        };
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let result = api.patch(name, &params, &Patch::Apply(object)).await;
        let label = if result.is_ok() { "ok" } else { "error" };
        self.shared
            .applies
            .get_or_create(&ApplyLabels {
                kind: kind.clone(),
                result: label,
            })
            .inc();
        match result {
            Ok(_) => {
                tracing::info!(kind = %kind, object = %key, "applied");
                self.applied.insert(key, body);
                Ok(())
            }
            Err(error) => {
                self.applied.remove(&key);
                Err(format!(
                    "server-side apply of {kind} {}: {error}",
                    key.trim_start_matches(&format!("{kind}/"))
                ))
            }
        }
    }
}

fn object_id(object: &Value) -> String {
    format!(
        "{}/{}",
        object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or(""),
        object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
    )
}

/// One ClusterRoleBinding named after `role`, binding it to the ServiceAccount of every Gateway in
/// `gateways` (`namespace/name`, the ServiceAccount has the Gateway's name).
fn proxy_role_binding(role: &str, gateways: &[String]) -> Value {
    let subjects: Vec<Value> = gateways
        .iter()
        .filter_map(|id| id.split_once('/'))
        .map(|(namespace, name)| json!({"kind": "ServiceAccount", "name": name, "namespace": namespace}))
        .collect();
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {
            "name": role,
            "labels": {"app.kubernetes.io/managed-by": FIELD_MANAGER},
        },
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    })
}
