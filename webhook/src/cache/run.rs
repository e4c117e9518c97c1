//! Feeding the cache from the API server: a metadata-only ServiceAccount watch (all namespaces) and, with
//! `--watch-config-map`, a watch on the `pod-identity-webhook` ConfigMap in `--namespace`.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::{watcher, WatchStreamExt};
use tokio::task::JoinHandle;

use super::config_map::CONFIG_MAP_NAME;
use super::fetch::ApiServiceAccountFetcher;
use super::store::ServiceAccountCache;

/// The watch tasks; dropping this stops them.
pub struct CacheTasks {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for CacheTasks {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Start the watches (and the API-fetch worker when the cache has a grace period).
///
/// Metadata-only watch (`PartialObjectMetadata`): the API server sends names, namespaces and annotations
/// only, never `secrets`/`imagePullSecrets`; the cache then keeps just the prefixed annotations. Watch errors
/// are logged and retried with kube's default backoff; readiness stays as it was.
pub fn run(
    cache: Arc<ServiceAccountCache>,
    client: kube::Client,
    config_map_namespace: Option<&str>,
) -> CacheTasks {
    cache.start_fetcher(Arc::new(ApiServiceAccountFetcher::new(client.clone())));
    let mut tasks = Vec::new();
    let service_accounts: Api<PartialObjectMeta<ServiceAccount>> = Api::all(client.clone());
    let sa_cache = cache.clone();
    tasks.push(tokio::spawn(async move {
        let mut events = watcher(service_accounts, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => sa_cache.apply_service_account_event(&event),
                Err(error) => tracing::warn!(%error, "service account watch failed; retrying"),
            }
        }
    }));
    if let Some(namespace) = config_map_namespace {
        tracing::info!("Watching ConfigMap {CONFIG_MAP_NAME} in {namespace} namespace");
        let config_maps: Api<ConfigMap> = Api::namespaced(client, namespace);
        let selector = format!("metadata.name={CONFIG_MAP_NAME}");
        tasks.push(tokio::spawn(async move {
            let mut events = watcher(config_maps, watcher::Config::default().fields(&selector))
                .default_backoff()
                .boxed();
            while let Some(event) = events.next().await {
                match event {
                    Ok(event) => cache.apply_config_map_event(&event),
                    Err(error) => tracing::warn!(%error, "ConfigMap watch failed; retrying"),
                }
            }
        }));
    }
    CacheTasks { tasks }
}
