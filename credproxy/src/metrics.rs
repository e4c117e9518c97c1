//! Prometheus metrics (`/metrics` on the metrics listener).
//!
//! Contract: metric names are prefixed `credproxy_`; label values are bounded (routes, status codes,
//! role names from config, STS error codes); no secret is ever a label. Time-dependent gauges
//! (seconds until expiry, readiness) are computed at scrape time by the server.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StsLabels {
    pub role: String,
    pub outcome: &'static str,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub role: String,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabels {
    pub role: String,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Histogram,
    pub sts_calls: Family<StsLabels, Counter>,
    pub sts_latency: Histogram,
    pub refresh_failures: Family<FailureLabels, Counter>,
    pub seconds_until_expiry: Family<RoleLabels, Gauge<f64, AtomicU64>>,
    pub ready: Family<RoleLabels, Gauge>,
    /// Pre-resolved counter for the hot path (`route="credentials",status="200"`).
    pub credentials_ok: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("credproxy");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests served, by route and status code",
            requests.clone(),
        );
        // Fine-grained where the cached path lives (µs), coarse for cold starts waiting on STS.
        let latency = Histogram::new([
            0.000_005, 0.000_01, 0.000_02, 0.000_03, 0.000_05, 0.000_075, 0.000_1, 0.000_15,
            0.000_25, 0.000_5, 0.001, 0.002_5, 0.01, 0.1, 1.0, 5.0,
        ]);
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request (server side)",
            latency.clone(),
        );
        let sts_calls = Family::<StsLabels, Counter>::default();
        registry.register(
            "sts_requests",
            "STS AssumeRoleWithWebIdentity calls by role, outcome and error code",
            sts_calls.clone(),
        );
        let sts_latency = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "sts_request_duration_seconds",
            "STS AssumeRoleWithWebIdentity call duration",
            sts_latency.clone(),
        );
        let refresh_failures = Family::<FailureLabels, Counter>::default();
        registry.register(
            "refresh_failures",
            "Failed credential refreshes by role and failure kind",
            refresh_failures.clone(),
        );
        let seconds_until_expiry = Family::<RoleLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "credentials_seconds_until_expiry",
            "Seconds until the cached credentials expire (0 when none are held)",
            seconds_until_expiry.clone(),
        );
        let ready = Family::<RoleLabels, Gauge>::default();
        registry.register(
            "credentials_ready",
            "1 when usable credentials are held for the role",
            ready.clone(),
        );
        let credentials_ok = requests
            .get_or_create(&RequestLabels {
                route: "credentials",
                status: 200,
            })
            .clone();
        Self {
            registry,
            requests,
            latency,
            sts_calls,
            sts_latency,
            refresh_failures,
            seconds_until_expiry,
            ready,
            credentials_ok,
        }
    }

    pub fn count_request(&self, route: &'static str, status: u16) {
        if route == "credentials" && status == 200 {
            self.credentials_ok.inc();
        } else {
            self.requests
                .get_or_create(&RequestLabels { route, status })
                .inc();
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(4096);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
