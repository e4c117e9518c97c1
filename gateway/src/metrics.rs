//! Prometheus metrics, per route and function.
//!
//! - `gateway_requests_total{route,function,status,outcome}`
//! - `gateway_request_duration_seconds{route,function}` (histogram, whole request as the client sees it)
//! - `gateway_lambda_function_errors_total{route,function}` and `gateway_lambda_throttles_total{route,function}`
//! - `gateway_credentials_state{source}` (0 missing, 1 valid, 2 expired), `gateway_credentials_expiry_seconds{source}`
//!   (Unix time), `gateway_credential_fetches_total{source,result}`
//! - `gateway_config_reloads_total{result}`
//! - `gateway_client_connections_closed_total{reason}` — connections the gateway closed on a client
//!   (`header_read_timeout`, `idle_timeout`)
//! - `gateway_panics_total` — requests whose handling panicked (answered 500); always 0 unless there is a bug

use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::model::Outcome;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub function: String,
    pub status: u16,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub function: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FetchLabels {
    pub source: String,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClosedLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

/// One route rule's series for one backend, resolved from the families on first use (so a series appears
/// exactly when the first request creates it, as with a label lookup); later requests skip building the
/// owned labels and hashing them. Only the common case (status 200, outcome `ok`) and the duration are cached.
#[derive(Debug, Clone, Default)]
pub struct RouteHandles {
    ok: OnceLock<Counter>,
    duration: OnceLock<Histogram>,
}

fn latency_histogram() -> Histogram {
    // 100 µs .. ~100 s
    Histogram::new(exponential_buckets(0.0001, 2.5, 16))
}

pub struct Metrics {
    pub registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub function_errors: Family<RouteLabels, Counter>,
    pub throttles: Family<RouteLabels, Counter>,
    pub credentials_state: Family<SourceLabels, Gauge>,
    pub credentials_expiry: Family<SourceLabels, Gauge>,
    pub credential_fetches: Family<FetchLabels, Counter>,
    pub reloads: Family<ResultLabels, Counter>,
    pub connections_closed: Family<ClosedLabels, Counter>,
    pub panics: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("gateway");
        let requests = Family::<RequestLabels, Counter>::default();
        let duration = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let function_errors = Family::<RouteLabels, Counter>::default();
        let throttles = Family::<RouteLabels, Counter>::default();
        let credentials_state = Family::<SourceLabels, Gauge>::default();
        let credentials_expiry = Family::<SourceLabels, Gauge>::default();
        let credential_fetches = Family::<FetchLabels, Counter>::default();
        let reloads = Family::<ResultLabels, Counter>::default();
        let connections_closed = Family::<ClosedLabels, Counter>::default();
        let panics = Counter::default();
        registry.register(
            "requests",
            "Requests served, by route, function, status and outcome",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Request latency as the client sees it",
            duration.clone(),
        );
        registry.register(
            "lambda_function_errors",
            "Invocations that returned X-Amz-Function-Error",
            function_errors.clone(),
        );
        registry.register(
            "lambda_throttles",
            "Invocations Lambda throttled (429)",
            throttles.clone(),
        );
        registry.register(
            "credentials_state",
            "Credential cache state: 0 missing, 1 valid, 2 expired",
            credentials_state.clone(),
        );
        registry.register(
            "credentials_expiry_seconds",
            "Expiry of the cached credentials (Unix time)",
            credentials_expiry.clone(),
        );
        registry.register(
            "credential_fetches",
            "Credential fetch attempts by result",
            credential_fetches.clone(),
        );
        registry.register(
            "config_reloads",
            "Configuration reloads by result",
            reloads.clone(),
        );
        registry.register(
            "client_connections_closed",
            "Client connections the gateway closed, by reason",
            connections_closed.clone(),
        );
        registry.register(
            "panics",
            "Requests whose handling panicked and were answered 500 (a bug)",
            panics.clone(),
        );
        Metrics {
            registry,
            requests,
            duration,
            function_errors,
            throttles,
            credentials_state,
            credentials_expiry,
            credential_fetches,
            reloads,
            connections_closed,
            panics,
        }
    }

    /// Counts one served request: `gateway_requests_total`, `gateway_request_duration_seconds`, and the
    /// function-error/throttle counters for those outcomes. `handles` caches the series of a matched rule.
    pub fn record_request(
        &self,
        route: &str,
        function: &str,
        handles: Option<&RouteHandles>,
        status: u16,
        outcome: Outcome,
        seconds: f64,
    ) {
        let route_labels = || RouteLabels {
            route: route.to_string(),
            function: function.to_string(),
        };
        let request_labels = || RequestLabels {
            route: route.to_string(),
            function: function.to_string(),
            status,
            outcome: outcome.as_str(),
        };
        match handles {
            Some(handles) if status == 200 && outcome == Outcome::Ok => {
                handles
                    .ok
                    .get_or_init(|| self.requests.get_or_create(&request_labels()).clone())
                    .inc();
            }
            _ => {
                self.requests.get_or_create(&request_labels()).inc();
            }
        }
        match handles {
            Some(handles) => handles
                .duration
                .get_or_init(|| self.duration.get_or_create(&route_labels()).clone())
                .observe(seconds),
            None => self
                .duration
                .get_or_create(&route_labels())
                .observe(seconds),
        }
        match outcome {
            Outcome::FunctionError | Outcome::FunctionTimeout => {
                self.function_errors.get_or_create(&route_labels()).inc();
            }
            Outcome::Throttled => {
                self.throttles.get_or_create(&route_labels()).inc();
            }
            _ => {}
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_handles_produce_the_same_series_as_label_lookups() {
        let requests = [
            (200, Outcome::Ok),
            (502, Outcome::FunctionError),
            (200, Outcome::Ok),
            (429, Outcome::Throttled),
            (202, Outcome::Ok),
        ];
        let (route, function) = ("ns/r#0", "arn:aws:lambda:us-east-1:123456789012:function:f");
        let cached = Metrics::new();
        let looked_up = Metrics::new();
        let handles = RouteHandles::default();
        assert!(
            !cached.encode().contains(function),
            "no series before the first request"
        );
        for (status, outcome) in requests {
            cached.record_request(route, function, Some(&handles), status, outcome, 0.001);
            looked_up.record_request(route, function, None, status, outcome, 0.001);
        }
        // Series order within a family follows its hash map, so compare the lines as sets.
        let sorted_lines = |text: &str| {
            let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
            lines.sort();
            lines
        };
        let encoded = cached.encode();
        assert_eq!(sorted_lines(&encoded), sorted_lines(&looked_up.encode()));
        assert!(encoded.contains(
            r#"gateway_requests_total{route="ns/r#0",function="arn:aws:lambda:us-east-1:123456789012:function:f",status="200",outcome="ok"} 2"#
        ), "{encoded}");
        assert!(encoded.contains(r#"gateway_request_duration_seconds_count{route="ns/r#0",function="arn:aws:lambda:us-east-1:123456789012:function:f"} 5"#), "{encoded}");
    }
}
