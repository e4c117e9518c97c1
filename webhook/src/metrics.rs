//! Prometheus metrics (spec §7) on a registry passed in by the caller.
//!
//! Contract: the scraped text (Prometheus text format 0.0.4, `text/plain; version=0.0.4`) carries upstream's
//! series names, labels, types and bucket boundaries exactly:
//! `http_request_count{code,path,verb}` counter, `http_request_latencies{path,verb}` histogram in
//! microseconds (buckets 125000 … 8e6), `http_request_duration_microseconds{path,verb}` summary (`_sum` and
//! `_count` only, as upstream has no objectives), `pod_identity_webhook_pod_count{method}`,
//! `pod_identity_webhook_missing_sa_count` and `pod_identity_webhook_used`. prometheus-client renders
//! OpenMetrics, whose counter samples end in `_total`; [`render`] rewrites upstream's counters back to their
//! Prometheus names and adds the summary, which prometheus-client lacks. Our own additions are `podcred_`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::cache::CacheMetrics;

/// Content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upstream's latency buckets (microseconds).
pub const LATENCY_BUCKETS_MICROS: [f64; 7] = [
    125_000.0,
    250_000.0,
    500_000.0,
    1_000_000.0,
    2_000_000.0,
    4_000_000.0,
    8_000_000.0,
];

/// Upstream counters whose scraped name has no `_total`.
const UPSTREAM_COUNTERS: [&str; 3] = [
    "http_request_count",
    "pod_identity_webhook_pod_count",
    "pod_identity_webhook_missing_sa_count",
];

/// Labels in alphabetical order, as client_golang prints them.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub code: String,
    pub path: String,
    pub verb: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct RouteLabels {
    pub path: String,
    pub verb: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

/// The `verb` label: the HTTP methods of RFC 9110 and PATCH as they are, anything else `other`, so a client
/// cannot mint a new series per invented method (upstream used the raw method).
pub fn bounded_method(method: &str) -> &str {
    match method {
        "GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "CONNECT" | "OPTIONS" | "TRACE" | "PATCH" => {
            method
        }
        _ => "other",
    }
}

/// `_sum` / `_count` per label set (upstream's summary has no quantiles).
#[derive(Clone, Debug, Default)]
pub struct SummaryFamily {
    series: Arc<Mutex<BTreeMap<RouteLabels, (f64, u64)>>>,
}

impl SummaryFamily {
    pub fn observe(&self, labels: RouteLabels, value: f64) {
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let entry = series.entry(labels).or_default();
        entry.0 += value;
        entry.1 += 1;
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS_MICROS)
}

/// Handles to every metric the webhook updates.
#[derive(Clone)]
pub struct Metrics {
    pub http_requests: Family<RequestLabels, Counter>,
    pub http_latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub http_duration: SummaryFamily,
    pub pod_count: Family<MethodLabels, Counter>,
    pub cache: CacheMetrics,
    pub admissions: Family<OutcomeLabels, Counter>,
    pub service_accounts_cached: Gauge,
    pub cache_synced: Gauge,
    pub container_credentials_identities: Gauge,
    pub tls_reloads: Gauge,
    pub tls_reload_failures: Gauge,
}

impl Metrics {
    /// Create the metrics and register them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            http_requests: Family::default(),
            http_latency: Family::new_with_constructor(latency_histogram),
            http_duration: SummaryFamily::default(),
            pod_count: Family::default(),
            cache: CacheMetrics::default(),
            admissions: Family::default(),
            service_accounts_cached: Gauge::default(),
            cache_synced: Gauge::default(),
            container_credentials_identities: Gauge::default(),
            tls_reloads: Gauge::default(),
            tls_reload_failures: Gauge::default(),
        };
        registry.register(
            "http_request_count",
            "Counter of requests broken out for each verb, path, and response code.",
            metrics.http_requests.clone(),
        );
        registry.register(
            "http_request_latencies",
            "Response latency distribution in microseconds for each verb and path",
            metrics.http_latency.clone(),
        );
        registry.register(
            "pod_identity_webhook_pod_count",
            "Counter of pods mutated by the webhook, by method",
            metrics.pod_count.clone(),
        );
        registry.register(
            "pod_identity_webhook_missing_sa_count",
            "Counter of service accounts not found in the cache",
            metrics.cache.missing_sa.clone(),
        );
        registry.register(
            "pod_identity_webhook_used",
            "Set to 1 once a service account has been cached",
            metrics.cache.used.clone(),
        );
        registry.register(
            "podcred_webhook_admissions",
            "Admission requests by outcome (mutated_sts_web_identity, mutated_container_credentials, not_mutated, denied, unsupported_media_type)",
            metrics.admissions.clone(),
        );
        // Our gauges, in scrape order.
        let gauges: [(&str, &str, &Gauge); 5] = [
            (
                "podcred_webhook_service_accounts_cached",
                "ServiceAccounts in the cache",
                &metrics.service_accounts_cached,
            ),
            (
                "podcred_webhook_cache_synced",
                "1 once the initial ServiceAccount (and ConfigMap) list has been applied",
                &metrics.cache_synced,
            ),
            (
                "podcred_webhook_container_credentials_identities",
                "Identities in the container-credentials config file",
                &metrics.container_credentials_identities,
            ),
            (
                "podcred_webhook_tls_certificate_reloads",
                "Successful reloads of --tls-cert/--tls-key since start",
                &metrics.tls_reloads,
            ),
            (
                "podcred_webhook_tls_certificate_reload_failures",
                "Failed reloads of --tls-cert/--tls-key since start (the previous certificate is kept)",
                &metrics.tls_reload_failures,
            ),
        ];
        for (name, help, gauge) in gauges {
            registry.register(name, help, gauge.clone());
        }
        metrics
    }

    /// One instrumented request (upstream instruments `/mutate` and the debug deny/500 routes).
    pub fn observe_request(&self, verb: &str, path: &str, code: u16, elapsed: Duration) {
        let verb = bounded_method(verb);
        let micros = elapsed.as_secs_f64() * 1e6;
        self.http_requests
            .get_or_create(&RequestLabels {
                code: code.to_string(),
                path: path.to_owned(),
                verb: verb.to_owned(),
            })
            .inc();
        let route = RouteLabels {
            path: path.to_owned(),
            verb: verb.to_owned(),
        };
        self.http_latency.get_or_create(&route).observe(micros);
        self.http_duration.observe(route, micros);
    }

    /// A pod selected for mutation (`Mode::metric_label()`).
    pub fn pod_mutated(&self, method: &str) {
        self.pod_count
            .get_or_create(&MethodLabels {
                method: method.to_owned(),
            })
            .inc();
    }

    pub fn admission(&self, outcome: &str) {
        self.admissions
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }
}

/// Prometheus text exposition of `registry` (see the module docs).
pub fn render(registry: &Registry, metrics: &Metrics) -> String {
    let mut open_metrics = String::new();
    prometheus_client::encoding::text::encode(&mut open_metrics, registry)
        .expect("writing to a String cannot fail");
    let mut out = String::with_capacity(open_metrics.len() + 512);
    for line in open_metrics.lines() {
        if line == "# EOF" {
            continue;
        }
        if let Some(rest) = line
            .strip_prefix("# TYPE ")
            .or_else(|| line.strip_prefix("# HELP "))
        {
            // Our own counters: name the family like its `_total` samples (Prometheus text format).
            let name = rest.split(' ').next().unwrap_or_default();
            if line.starts_with("# TYPE ")
                && rest.ends_with(" counter")
                && !UPSTREAM_COUNTERS.contains(&name)
            {
                let _ = writeln!(out, "# TYPE {name}_total counter");
                continue;
            }
            if line.starts_with("# HELP ")
                && name.starts_with("podcred_")
                && is_counter(&open_metrics, name)
            {
                let _ = writeln!(out, "# HELP {name}_total{}", &rest[name.len()..]);
                continue;
            }
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let renamed = UPSTREAM_COUNTERS.iter().find_map(|name| {
            let sample = line.strip_prefix(name)?.strip_prefix("_total")?;
            (sample.starts_with('{') || sample.starts_with(' ')).then(|| format!("{name}{sample}"))
        });
        match renamed {
            Some(line) => out.push_str(&line),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    render_summary(&mut out, metrics);
    out
}

fn is_counter(open_metrics: &str, name: &str) -> bool {
    open_metrics.contains(&format!("# TYPE {name} counter"))
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn render_summary(out: &mut String, metrics: &Metrics) {
    const NAME: &str = "http_request_duration_microseconds";
    let series = metrics
        .http_duration
        .series
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let _ = writeln!(
        out,
        "# HELP {NAME} Response latency summary in microseconds for each verb and path."
    );
    let _ = writeln!(out, "# TYPE {NAME} summary");
    for (labels, (sum, count)) in series {
        let labels = format!(
            "path=\"{}\",verb=\"{}\"",
            escape(&labels.path),
            escape(&labels.verb)
        );
        let _ = writeln!(out, "{NAME}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{NAME}_count{{{labels}}} {count}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scraped_text_has_upstream_names_types_and_buckets() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        metrics.observe_request("POST", "/mutate", 200, Duration::from_micros(300_000));
        metrics.observe_request("POST", "/mutate", 200, Duration::from_micros(100));
        metrics.pod_mutated("sts_web_identity");
        metrics.cache.missing_sa.inc();
        metrics.cache.used.set(1);
        metrics.admission("not_mutated");
        let text = render(&registry, &metrics);

        for expected in [
            "# TYPE http_request_count counter",
            "http_request_count{code=\"200\",path=\"/mutate\",verb=\"POST\"} 2",
            "# TYPE http_request_latencies histogram",
            "http_request_latencies_bucket{le=\"125000.0\",path=\"/mutate\",verb=\"POST\"} 1",
            "http_request_latencies_bucket{le=\"250000.0\",path=\"/mutate\",verb=\"POST\"} 1",
            "http_request_latencies_bucket{le=\"500000.0\",path=\"/mutate\",verb=\"POST\"} 2",
            "http_request_latencies_bucket{le=\"8000000.0\",path=\"/mutate\",verb=\"POST\"} 2",
            "http_request_latencies_bucket{le=\"+Inf\",path=\"/mutate\",verb=\"POST\"} 2",
            "http_request_latencies_count{path=\"/mutate\",verb=\"POST\"} 2",
            "# TYPE http_request_duration_microseconds summary",
            "http_request_duration_microseconds_sum{path=\"/mutate\",verb=\"POST\"} 300100",
            "http_request_duration_microseconds_count{path=\"/mutate\",verb=\"POST\"} 2",
            "# TYPE pod_identity_webhook_pod_count counter",
            "pod_identity_webhook_pod_count{method=\"sts_web_identity\"} 1",
            "pod_identity_webhook_missing_sa_count 1",
            "# TYPE pod_identity_webhook_used gauge",
            "pod_identity_webhook_used 1",
            "# TYPE podcred_webhook_admissions_total counter",
            "podcred_webhook_admissions_total{outcome=\"not_mutated\"} 1",
        ] {
            assert!(
                text.lines().any(|line| line == expected),
                "missing line {expected:?} in:\n{text}"
            );
        }
        assert!(!text.contains("http_request_count_total"), "{text}");
        assert!(!text.contains("pod_count_total"), "{text}");
        assert!(!text.contains("missing_sa_count_total"), "{text}");
        assert!(!text.contains("# EOF"));
        let buckets: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("http_request_latencies_bucket"))
            .collect();
        assert_eq!(buckets.len(), 8, "7 bounds + +Inf");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(
                name.starts_with("http_request_")
                    || name.starts_with("pod_identity_webhook_")
                    || name.starts_with("podcred_"),
                "unexpected series {name}"
            );
        }
    }
}
