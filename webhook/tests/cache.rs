//! ServiceAccount / ConfigMap cache: Store-driven tests (watch events applied directly) and the
//! grace-period + API lookup path against a kube `Client` over a mock transport.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use kube::api::ObjectMeta;
use kube::client::Body;
use kube::runtime::watcher::Event;
use webhook::cache::{AnnotationDefaults, CacheMetrics, RoleArnComposer, ServiceAccountCache};
use webhook::identity::{CommonConfig, StsIdentity, StsLookup};

const ROLE: &str = "arn:aws:iam::111122223333:role/s3-reader";

fn defaults() -> AnnotationDefaults {
    AnnotationDefaults {
        annotation_prefix: "eks.amazonaws.com".into(),
        sidecar_prefix: Some("podcred.dev".into()),
        audience: "sts.amazonaws.com".into(),
        regional_sts: false,
        token_expiration: 86400,
        compose_role_arn: None,
    }
}

fn cache_with(grace: Duration, watch_cm: bool) -> (Arc<ServiceAccountCache>, CacheMetrics) {
    let metrics = CacheMetrics::default();
    (
        ServiceAccountCache::new(defaults(), grace, watch_cm, metrics.clone()),
        metrics,
    )
}

fn sa(namespace: &str, name: &str, annotations: &[(&str, &str)]) -> ServiceAccount {
    ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            resource_version: Some("1".into()),
            annotations: (!annotations.is_empty()).then(|| {
                annotations
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect()
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn config_map(name: &str, config: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("eks".into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("config".to_string(), config.to_string())])),
        ..Default::default()
    }
}

fn identity(role: &str, audience: &str, sts: bool, exp: i64) -> StsIdentity {
    StsIdentity {
        role_arn: role.into(),
        audience: audience.into(),
        use_regional_sts: sts,
        token_expiration: exp,
        inject_sidecar: None,
    }
}

fn synced(cache: &ServiceAccountCache, objects: Vec<ServiceAccount>) {
    cache.apply_service_account_event(&Event::<ServiceAccount>::Init);
    for object in objects {
        cache.apply_service_account_event(&Event::InitApply(object));
    }
    cache.apply_service_account_event(&Event::<ServiceAccount>::InitDone);
}

#[tokio::test]
async fn service_account_add_get_update_delete() {
    let (cache, metrics) = cache_with(Duration::ZERO, false);
    assert_eq!(metrics.used.get(), 0);
    cache.apply_service_account_event(&Event::Apply(sa(
        "default",
        "default",
        &[
            ("eks.amazonaws.com/role-arn", ROLE),
            ("eks.amazonaws.com/sts-regional-endpoints", "true"),
            ("eks.amazonaws.com/token-expiration", "3600"),
        ],
    )));
    assert_eq!(metrics.used.get(), 1, "used gauge set on add");
    assert_eq!(
        cache.sts_identity("default", "default").await,
        StsLookup::Found(identity(ROLE, "sts.amazonaws.com", true, 3600))
    );
    // Removing the role annotation removes the mapping (found, empty role).
    cache.apply_service_account_event(&Event::Apply(sa("default", "default", &[])));
    assert_eq!(
        cache.sts_identity("default", "default").await,
        StsLookup::Found(identity("", "sts.amazonaws.com", false, 86400))
    );
    assert_eq!(
        metrics.missing_sa.get(),
        0,
        "found-without-role is not missing"
    );
    cache.apply_service_account_event(&Event::Delete(sa("default", "default", &[])));
    assert_eq!(
        cache.sts_identity("default", "default").await,
        StsLookup::NotFound
    );
    assert_eq!(metrics.missing_sa.get(), 1);
}

#[tokio::test]
async fn only_prefixed_annotations_are_kept() {
    let (cache, _) = cache_with(Duration::ZERO, false);
    cache.apply_service_account_event(&Event::Apply(sa(
        "ns",
        "app",
        &[
            ("eks.amazonaws.com/role-arn", ROLE),
            ("podcred.dev/inject", "true"),
            (
                "kubectl.kubernetes.io/last-applied-configuration",
                "{\"huge\":true}",
            ),
        ],
    )));
    let StsLookup::Found(found) = cache.sts_identity("ns", "app").await else {
        panic!("cached")
    };
    assert_eq!(found.inject_sidecar, Some(true));
    let dump = cache.dump_json();
    assert!(!dump.contains("huge"), "{dump}");
}

#[tokio::test]
async fn relist_drops_service_accounts_that_vanished_and_sets_readiness() {
    let (cache, _) = cache_with(Duration::ZERO, false);
    assert!(!cache.is_synced(), "not ready before the first list");
    cache.apply_service_account_event(&Event::<ServiceAccount>::Init);
    cache.apply_service_account_event(&Event::InitApply(sa("a", "one", &[])));
    assert!(!cache.is_synced(), "not ready mid-list");
    cache.apply_service_account_event(&Event::InitApply(sa("a", "two", &[])));
    cache.apply_service_account_event(&Event::<ServiceAccount>::InitDone);
    assert!(cache.is_synced());
    assert_eq!(cache.service_account_count(), 2);
    // The watch restarts; `two` was deleted while we were disconnected.
    synced(&cache, vec![sa("a", "one", &[])]);
    assert_eq!(cache.service_account_count(), 1);
    assert_eq!(cache.sts_identity("a", "two").await, StsLookup::NotFound);
    assert!(cache.is_synced(), "stays ready across re-lists");
}

#[tokio::test]
async fn readiness_waits_for_the_config_map_list_when_watched() {
    let (cache, _) = cache_with(Duration::ZERO, true);
    synced(&cache, vec![]);
    assert!(!cache.is_synced());
    cache.apply_config_map_event(&Event::Init);
    cache.apply_config_map_event(&Event::InitDone);
    assert!(
        cache.is_synced(),
        "an absent ConfigMap is still a completed list"
    );
}

#[tokio::test]
async fn lookup_precedence_sa_then_cm_namespace_then_cm_wildcard() {
    let (cache, _) = cache_with(Duration::ZERO, true);
    cache.apply_config_map_event(&Event::Apply(config_map(
        "pod-identity-webhook",
        r#"{
            "default/annotated": {"RoleARN": "arn:aws:iam::111122223333:role/cm", "TokenExpiration": 7200},
            "default/plain": {"RoleARN": "arn:aws:iam::111122223333:role/cm-plain"},
            "*/plain": {"RoleARN": "arn:aws:iam::111122223333:role/wild"},
            "*/anywhere": {"RoleARN": "arn:aws:iam::111122223333:role/wild", "Audience": "aud"}
        }"#,
    )));
    cache.apply_service_account_event(&Event::Apply(sa(
        "default",
        "annotated",
        &[
            ("eks.amazonaws.com/role-arn", ROLE),
            ("eks.amazonaws.com/token-expiration", "3600"),
        ],
    )));
    cache.apply_service_account_event(&Event::Apply(sa("default", "plain", &[])));
    // SA annotation wins entirely.
    assert_eq!(
        cache.sts_identity("default", "annotated").await,
        StsLookup::Found(identity(ROLE, "sts.amazonaws.com", false, 3600))
    );
    // SA without role falls through to the exact-namespace CM entry (CM defaults: empty audience).
    assert_eq!(
        cache.sts_identity("default", "plain").await,
        StsLookup::Found(identity(
            "arn:aws:iam::111122223333:role/cm-plain",
            "",
            false,
            86400
        ))
    );
    // Another namespace: wildcard entry.
    assert_eq!(
        cache.sts_identity("other", "plain").await,
        StsLookup::Found(identity(
            "arn:aws:iam::111122223333:role/wild",
            "",
            false,
            86400
        ))
    );
    assert_eq!(
        cache.sts_identity("x", "anywhere").await,
        StsLookup::Found(identity(
            "arn:aws:iam::111122223333:role/wild",
            "aud",
            false,
            86400
        ))
    );
    assert_eq!(
        cache.sts_identity("x", "unknown").await,
        StsLookup::NotFound
    );
}

#[tokio::test]
async fn config_map_update_removes_keys_and_other_config_maps_are_ignored() {
    let (cache, _) = cache_with(Duration::ZERO, true);
    cache.apply_config_map_event(&Event::Apply(config_map(
        "pod-identity-webhook",
        r#"{"a/one": {"RoleARN": "r1"}, "a/two": {"RoleARN": "r2"}}"#,
    )));
    cache.apply_config_map_event(&Event::Apply(config_map(
        "pod-identity-webhook",
        r#"{"a/two": {"RoleARN": "r2b"}}"#,
    )));
    assert_eq!(cache.sts_identity("a", "one").await, StsLookup::NotFound);
    assert_eq!(
        cache.sts_identity("a", "two").await,
        StsLookup::Found(identity("r2b", "", false, 86400))
    );
    cache.apply_config_map_event(&Event::Apply(config_map(
        "something-else",
        r#"{"a/three": {"RoleARN": "r3"}}"#,
    )));
    assert_eq!(cache.sts_identity("a", "three").await, StsLookup::NotFound);
    // Invalid JSON: previous mappings kept.
    cache.apply_config_map_event(&Event::Apply(config_map("pod-identity-webhook", "{oops")));
    assert!(matches!(
        cache.sts_identity("a", "two").await,
        StsLookup::Found(_)
    ));
}

/// Intentional improvement: upstream never handled ConfigMap deletion (stale roles until restart).
#[tokio::test]
async fn config_map_deleted_clears_its_mappings() {
    let (cache, _) = cache_with(Duration::ZERO, true);
    let cm = config_map("pod-identity-webhook", r#"{"a/sa": {"RoleARN": "r"}}"#);
    cache.apply_config_map_event(&Event::Apply(cm.clone()));
    assert!(matches!(
        cache.sts_identity("a", "sa").await,
        StsLookup::Found(_)
    ));
    cache.apply_config_map_event(&Event::Delete(cm.clone()));
    assert_eq!(cache.sts_identity("a", "sa").await, StsLookup::NotFound);

    // Deleted while the watch was down: the re-list no longer contains it.
    cache.apply_config_map_event(&Event::Apply(cm));
    cache.apply_config_map_event(&Event::Init);
    cache.apply_config_map_event(&Event::InitDone);
    assert_eq!(cache.sts_identity("a", "sa").await, StsLookup::NotFound);
}

/// Intentional improvement: upstream panicked (crashing the process) on a key without `/`.
#[tokio::test]
async fn malformed_config_map_key_is_skipped() {
    let (cache, _) = cache_with(Duration::ZERO, true);
    cache.apply_config_map_event(&Event::Apply(config_map(
        "pod-identity-webhook",
        r#"{"no-slash-here": {"RoleARN": "bad"}, "a/sa": {"RoleARN": "good"}}"#,
    )));
    assert_eq!(
        cache.sts_identity("a", "sa").await,
        StsLookup::Found(identity("good", "", false, 86400))
    );
    assert_eq!(
        cache.sts_identity("no-slash-here", "").await,
        StsLookup::NotFound
    );
}

#[tokio::test]
async fn common_configuration_for_container_credentials() {
    let (cache, _) = cache_with(Duration::ZERO, true);
    assert_eq!(cache.common_config("ns", "none"), CommonConfig::default());
    assert_eq!(
        CommonConfig::default(),
        CommonConfig {
            use_regional_sts: false,
            token_expiration: 86400
        }
    );
    cache.apply_service_account_event(&Event::Apply(sa(
        "ns",
        "sa-only",
        &[
            ("eks.amazonaws.com/sts-regional-endpoints", "true"),
            ("eks.amazonaws.com/token-expiration", "10000"),
        ],
    )));
    cache.apply_config_map_event(&Event::Apply(config_map(
        "pod-identity-webhook",
        r#"{"ns/cm-only": {"UseRegionalSTS": true, "TokenExpiration": 20000},
            "ns/sa-only": {"UseRegionalSTS": false, "TokenExpiration": 30000},
            "*/wild": {"UseRegionalSTS": true, "TokenExpiration": 40000}}"#,
    )));
    assert_eq!(
        cache.common_config("ns", "sa-only"),
        CommonConfig {
            use_regional_sts: true,
            token_expiration: 10000
        }
    );
    assert_eq!(
        cache.common_config("ns", "cm-only"),
        CommonConfig {
            use_regional_sts: true,
            token_expiration: 20000
        }
    );
    assert_eq!(
        cache.common_config("ns", "wild"),
        CommonConfig::default(),
        "no `*` fallback in the CC path"
    );
}

#[tokio::test]
async fn compose_role_arn_applies_to_service_accounts() {
    let mut d = defaults();
    d.compose_role_arn = Some(RoleArnComposer {
        partition: "aws".into(),
        account_id: "111122223333".into(),
    });
    let cache = ServiceAccountCache::new(d, Duration::ZERO, false, CacheMetrics::default());
    cache.apply_service_account_event(&Event::Apply(sa(
        "ns",
        "app",
        &[("eks.amazonaws.com/role-arn", "s3-reader")],
    )));
    let StsLookup::Found(found) = cache.sts_identity("ns", "app").await else {
        panic!()
    };
    assert_eq!(found.role_arn, ROLE);
}

#[tokio::test]
async fn debug_dump_and_clear() {
    let (cache, _) = cache_with(Duration::ZERO, false);
    cache.apply_service_account_event(&Event::Apply(sa(
        "ns",
        "app",
        &[("eks.amazonaws.com/role-arn", ROLE)],
    )));
    assert_eq!(
        cache.dump_json(),
        format!(
            "{{\n \"ns/app\": {{\n  \"RoleARN\": \"{ROLE}\",\n  \"Audience\": \"sts.amazonaws.com\",\n  \"UseRegionalSTS\": false,\n  \"TokenExpiration\": 86400\n }}\n}}"
        )
    );
    let (big, _) = cache_with(Duration::ZERO, false);
    synced(
        &big,
        (0..50_000)
            .map(|i| sa(&format!("ns{}", i % 100), &format!("sa{i}"), &[]))
            .collect(),
    );
    let dump: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&big.dump_json()).unwrap();
    assert_eq!(dump.len(), 50_000);
    cache.clear();
    assert_eq!(cache.dump_json(), "{}");
}

#[tokio::test(start_paused = true)]
async fn grace_period_waiters_are_all_woken_by_one_event() {
    let (cache, metrics) = cache_with(Duration::from_secs(5), false);
    for waiters in [1usize, 10] {
        let name = format!("late-{waiters}");
        let handles: Vec<_> = (0..waiters)
            .map(|_| {
                let cache = cache.clone();
                let name = name.clone();
                tokio::spawn(async move { cache.sts_identity("ns", &name).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        cache.apply_service_account_event(&Event::Apply(sa(
            "ns",
            &name,
            &[("eks.amazonaws.com/role-arn", ROLE)],
        )));
        for handle in handles {
            let StsLookup::Found(found) = handle.await.unwrap() else {
                panic!("woken and found")
            };
            assert_eq!(found.role_arn, ROLE);
        }
    }
    assert_eq!(metrics.missing_sa.get(), 0);
}

#[tokio::test(start_paused = true)]
async fn grace_period_timeout_counts_missing() {
    let (cache, metrics) = cache_with(Duration::from_millis(300), false);
    let start = tokio::time::Instant::now();
    assert_eq!(cache.sts_identity("ns", "never").await, StsLookup::NotFound);
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(metrics.missing_sa.get(), 1);
}

// ---- API lookups over a mock transport -------------------------------------------------------------

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn mock_client() -> (kube::Client, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(service, "default"), handle)
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

fn sa_json(namespace: &str, name: &str, role: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": "7",
                     "annotations": {"eks.amazonaws.com/role-arn": role}}
    })
}

fn not_found(name: &str) -> Response<Body> {
    json_response(
        StatusCode::NOT_FOUND,
        serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": format!("serviceaccounts \"{name}\" not found"), "reason": "NotFound", "code": 404}),
    )
}

fn with_fetcher(grace: Duration) -> (Arc<ServiceAccountCache>, CacheMetrics, Handle) {
    let (cache, metrics) = cache_with(grace, false);
    let (client, handle) = mock_client();
    cache.start_fetcher(Arc::new(webhook::cache::ApiServiceAccountFetcher::new(
        client,
    )));
    (cache, metrics, handle)
}

#[tokio::test]
async fn missing_service_account_is_fetched_from_the_api() {
    let (cache, metrics, mut handle) = with_fetcher(Duration::from_secs(5));
    let lookup = tokio::spawn({
        let cache = cache.clone();
        async move { cache.sts_identity("team", "fresh").await }
    });
    let (request, respond) = handle.next_request().await.expect("one GET");
    assert_eq!(request.method(), "GET");
    assert_eq!(
        request.uri().path(),
        "/api/v1/namespaces/team/serviceaccounts/fresh"
    );
    respond.send_response(json_response(
        StatusCode::OK,
        sa_json("team", "fresh", ROLE),
    ));
    let StsLookup::Found(found) = tokio::time::timeout(Duration::from_secs(2), lookup)
        .await
        .expect("woken by the fetch, well before the grace period")
        .unwrap()
    else {
        panic!("found")
    };
    assert_eq!(found.role_arn, ROLE);
    assert_eq!(metrics.missing_sa.get(), 0);
    // Now cached: no further request.
    assert!(matches!(
        cache.sts_identity("team", "fresh").await,
        StsLookup::Found(_)
    ));
}

#[tokio::test]
async fn concurrent_waiters_share_one_fetch() {
    let (cache, _, mut handle) = with_fetcher(Duration::from_secs(5));
    let lookups: Vec<_> = (0..10)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.sts_identity("team", "shared").await })
        })
        .collect();
    let (_, respond) = handle.next_request().await.unwrap();
    // Answer only once all 10 are waiting, so every one of them shares this fetch.
    let deadline = Instant::now() + Duration::from_secs(5);
    while cache.waiters("team", "shared") < 10 {
        assert!(Instant::now() < deadline, "10 waiters never registered");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    respond.send_response(json_response(
        StatusCode::OK,
        sa_json("team", "shared", ROLE),
    ));
    for lookup in lookups {
        assert!(matches!(lookup.await.unwrap(), StsLookup::Found(_)));
    }
    // No second request was queued.
    let extra = tokio::time::timeout(Duration::from_millis(200), handle.next_request()).await;
    assert!(extra.is_err(), "exactly one GET for 10 waiters");
}

/// Intentional improvement: upstream left a dead notifier after a failed fetch, so later pods waited the
/// whole grace period without any new API request until the informer caught up.
#[tokio::test]
async fn lookup_is_retried_after_a_failed_fetch() {
    let (cache, metrics, mut handle) = with_fetcher(Duration::from_millis(1500));
    let first = tokio::spawn({
        let cache = cache.clone();
        async move { cache.sts_identity("team", "racy").await }
    });
    // The API does not know the SA yet (created a moment later).
    let (_, respond) = handle.next_request().await.unwrap();
    respond.send_response(not_found("racy"));
    assert_eq!(first.await.unwrap(), StsLookup::NotFound);
    assert_eq!(metrics.missing_sa.get(), 1);

    // The next pod for the same SA triggers a new GET, which now succeeds.
    let second = tokio::spawn({
        let cache = cache.clone();
        async move { cache.sts_identity("team", "racy").await }
    });
    let (request, respond) = tokio::time::timeout(Duration::from_secs(1), handle.next_request())
        .await
        .expect("a new GET is issued after the failure")
        .unwrap();
    assert_eq!(
        request.uri().path(),
        "/api/v1/namespaces/team/serviceaccounts/racy"
    );
    respond.send_response(json_response(StatusCode::OK, sa_json("team", "racy", ROLE)));
    assert!(matches!(second.await.unwrap(), StsLookup::Found(_)));
    assert_eq!(metrics.missing_sa.get(), 1);
}

#[tokio::test]
async fn hung_api_request_times_out_after_one_second_and_is_retried() {
    let (cache, _, mut handle) = with_fetcher(Duration::from_millis(2500));
    let first = tokio::spawn({
        let cache = cache.clone();
        async move { cache.sts_identity("team", "slow").await }
    });
    let (_, never_answered) = handle.next_request().await.unwrap();
    let asked = Instant::now();
    // After the 1 s fetch timeout the fetch is abandoned; a new waiter issues a new GET.
    while cache.fetch_in_flight("team", "slow") {
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "hung fetch not abandoned"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        asked.elapsed() >= Duration::from_millis(950),
        "abandoned before the 1 s timeout: {:?}",
        asked.elapsed()
    );
    let second = tokio::spawn({
        let cache = cache.clone();
        async move { cache.sts_identity("team", "slow").await }
    });
    let (_, respond) = tokio::time::timeout(Duration::from_secs(1), handle.next_request())
        .await
        .expect("retried after the timeout")
        .unwrap();
    respond.send_response(json_response(StatusCode::OK, sa_json("team", "slow", ROLE)));
    drop(never_answered);
    // Both waiters share the key's notifier: the successful fetch wakes both.
    assert!(matches!(first.await.unwrap(), StsLookup::Found(_)));
    assert!(matches!(second.await.unwrap(), StsLookup::Found(_)));
}

#[tokio::test]
async fn no_grace_period_means_no_api_request() {
    let (cache, metrics, mut handle) = with_fetcher(Duration::ZERO);
    assert_eq!(cache.sts_identity("team", "x").await, StsLookup::NotFound);
    assert_eq!(metrics.missing_sa.get(), 1);
    let request = tokio::time::timeout(Duration::from_millis(200), handle.next_request()).await;
    assert!(request.is_err());
}

#[tokio::test]
async fn metadata_watch_fills_the_cache_and_sets_readiness() {
    let (cache, _) = cache_with(Duration::ZERO, true);
    let (client, mut handle) = mock_client();
    let _tasks = webhook::cache::run(cache.clone(), client, Some("eks"));
    let mut answered_lists = 0;
    while answered_lists < 2 {
        let (request, respond) =
            tokio::time::timeout(Duration::from_secs(5), handle.next_request())
                .await
                .expect("list requests")
                .unwrap();
        let uri = request.uri().to_string();
        if uri.contains("watch=true") {
            // Hold watches open: keep the responder alive without answering.
            std::mem::forget(respond);
            continue;
        }
        if uri.starts_with("/api/v1/serviceaccounts") {
            let accept = request.headers()["accept"].to_str().unwrap().to_owned();
            assert!(accept.contains("as=PartialObjectMetadataList"), "{accept}");
            respond.send_response(json_response(
                StatusCode::OK,
                serde_json::json!({
                    "kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                    "metadata": {"resourceVersion": "10"},
                    "items": [
                        {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                         "metadata": {"name": "app", "namespace": "team", "resourceVersion": "9",
                                      "annotations": {"eks.amazonaws.com/role-arn": ROLE}}},
                        {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                         "metadata": {"name": "default", "namespace": "team", "resourceVersion": "8"}}
                    ]
                }),
            ));
        } else {
            assert!(
                uri.starts_with("/api/v1/namespaces/eks/configmaps")
                    && uri.contains("fieldSelector=metadata.name%3Dpod-identity-webhook"),
                "{uri}"
            );
            respond.send_response(json_response(
                StatusCode::OK,
                serde_json::json!({
                    "kind": "ConfigMapList", "apiVersion": "v1",
                    "metadata": {"resourceVersion": "10"},
                    "items": [{"metadata": {"name": "pod-identity-webhook", "namespace": "eks"},
                               "data": {"config": "{\"team/cm\": {\"RoleARN\": \"from-cm\"}}"}}]
                }),
            ));
        }
        answered_lists += 1;
    }
    for _ in 0..100 {
        if cache.is_synced() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(cache.is_synced());
    assert_eq!(cache.service_account_count(), 2);
    assert!(
        matches!(cache.sts_identity("team", "app").await, StsLookup::Found(f) if f.role_arn == ROLE)
    );
    assert!(
        matches!(cache.sts_identity("team", "cm").await, StsLookup::Found(f) if f.role_arn == "from-cm")
    );
}
