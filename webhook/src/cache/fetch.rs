//! Direct API lookups of ServiceAccounts missing from the cache (spec §5.3), and the token bucket that
//! rate-limits them (10/s, burst 20).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::Api;

use crate::identity::BoxFuture;

/// Upstream's per-fetch timeout.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(1);
/// Upstream's limiter: 10 requests/s, burst 20.
pub const FETCH_RATE_PER_SECOND: f64 = 10.0;
pub const FETCH_BURST: f64 = 20.0;
/// Upstream's fetch queue capacity. When full, the request is dropped (logged) instead of blocking admission.
pub const FETCH_QUEUE: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("serviceaccounts \"{0}\" not found")]
    NotFound(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Api(#[source] kube::Error),
}

/// Reads one ServiceAccount's annotations from the API server.
pub trait ServiceAccountFetcher: Send + Sync + 'static {
    fn fetch<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<BTreeMap<String, String>, FetchError>>;
}

/// `GET /api/v1/namespaces/<ns>/serviceaccounts/<name>` through a kube client.
#[derive(Clone)]
pub struct ApiServiceAccountFetcher {
    client: kube::Client,
}

impl ApiServiceAccountFetcher {
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }
}

impl ServiceAccountFetcher for ApiServiceAccountFetcher {
    fn fetch<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<BTreeMap<String, String>, FetchError>> {
        Box::pin(async move {
            let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
            match api.get_opt(name).await {
                Ok(Some(sa)) => Ok(sa.metadata.annotations.unwrap_or_default()),
                Ok(None) => Err(FetchError::NotFound(name.to_owned())),
                Err(error) => Err(FetchError::Api(error)),
            }
        })
    }
}

/// Token bucket on tokio's clock (so tests can pause time).
#[derive(Debug)]
pub(crate) struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: tokio::time::Instant,
}

impl TokenBucket {
    pub(crate) fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            last: tokio::time::Instant::now(),
        }
    }

    fn refill(&mut self) {
        let now = tokio::time::Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    /// Wait until a token is available and take it.
    pub(crate) async fn acquire(&mut self) {
        self.refill();
        if self.tokens < 1.0 {
            let wait = Duration::from_secs_f64((1.0 - self.tokens) / self.rate);
            tokio::time::sleep(wait).await;
            self.refill();
        }
        self.tokens -= 1.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn token_bucket_allows_burst_then_rate() {
        let mut bucket = TokenBucket::new(10.0, 20.0);
        let start = tokio::time::Instant::now();
        for _ in 0..20 {
            bucket.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "burst of 20 is immediate");
        for _ in 0..10 {
            bucket.acquire().await;
        }
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(990) && elapsed <= Duration::from_millis(1010),
            "10 more take ~1 s at 10/s, took {elapsed:?}"
        );
    }
}
