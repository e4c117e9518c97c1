//! Credentials for signing: fetched in the background, cached, refreshed well before they expire.
//!
//! Contract:
//! - The request path never waits for a fetch: it reads the cached credentials, or gets `None` (→ 503).
//!   Credentials within [`EXPIRY_SKEW`] of their expiry count as expired: nothing is ever sent unsigned or
//!   signed with dead keys.
//! - The source is the container-credentials endpoint when `AWS_CONTAINER_CREDENTIALS_FULL_URI` (or
//!   `_RELATIVE_URI`) is set — with `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`, re-read on every fetch — else the
//!   standard AWS chain (environment, profile, web identity, IMDS); or a Secret's static keys.
//! - Refresh happens at half the remaining lifetime (at most one hour ahead, at least [`MIN_REFRESH`] apart);
//!   a failed fetch keeps the cached credentials and retries with capped exponential backoff and jitter.
//! - [`CredentialCell::refresh_now`] asks for an early fetch (no credentials, or Lambda rejected them). Wake-ups
//!   are coalesced and never bypass the backoff: while fetches fail, a wake-up does not shorten the backoff
//!   wait; after a success, early fetches are at least [`MIN_WAKE_INTERVAL`] apart, doubling while wake-ups keep
//!   coming (up to [`RETRY_CAP`]). So under any request rate against a failing source the fetch rate stays
//!   bounded (see the `wake_ups_never_bypass_the_backoff` test for the figure).
//! - Wall-clock time comes from the injected [`crate::clock::Clock`]; waits use tokio's clock.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use tokio::sync::Notify;

use crate::clock::SharedClock;

/// Credentials closer than this to their expiry are not used.
pub const EXPIRY_SKEW: Duration = Duration::from_secs(10);
const MIN_REFRESH: Duration = Duration::from_secs(5);
const MAX_REFRESH: Duration = Duration::from_secs(3600);
/// Credentials without an expiry (environment, static) are re-read this often.
const NO_EXPIRY_REFRESH: Duration = Duration::from_secs(900);
const RETRY_START: Duration = Duration::from_millis(500);
/// The longest wait between fetch attempts while failing, and between wake-up-triggered fetches.
pub const RETRY_CAP: Duration = Duration::from_secs(30);
/// Wake-up-triggered fetches after a success are at least this far apart.
pub const MIN_WAKE_INTERVAL: Duration = Duration::from_secs(1);

/// Cached credentials (the signer reads them directly; `Debug` never shows the secret parts).
#[derive(Debug)]
pub struct Held {
    pub credentials: Credentials,
    pub expiry: Option<SystemTime>,
}

impl Held {
    pub fn new(credentials: Credentials) -> Held {
        Held {
            expiry: credentials.expiry(),
            credentials,
        }
    }

    pub fn usable_at(&self, now: SystemTime) -> bool {
        self.expiry.is_none_or(|expiry| now + EXPIRY_SKEW < expiry)
    }
}

/// State of a credential cell, for `/readyz` and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialState {
    /// Nothing fetched yet (or every fetch failed).
    Missing,
    Valid,
    Expired,
}

impl CredentialState {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialState::Missing => "missing",
            CredentialState::Valid => "valid",
            CredentialState::Expired => "expired",
        }
    }
}

/// One credential source and its cache.
#[derive(Debug)]
pub struct CredentialCell {
    /// Human-readable name of the source (never a secret).
    pub source: String,
    current: ArcSwapOption<Held>,
    wake: Notify,
    last_error: std::sync::Mutex<Option<String>>,
}

impl CredentialCell {
    pub fn new(source: impl Into<String>) -> Arc<CredentialCell> {
        Arc::new(CredentialCell {
            source: source.into(),
            current: ArcSwapOption::empty(),
            wake: Notify::new(),
            last_error: std::sync::Mutex::new(None),
        })
    }

    /// A cell holding fixed keys (a Secret); never refreshed.
    pub fn fixed(source: impl Into<String>, credentials: Credentials) -> Arc<CredentialCell> {
        let cell = CredentialCell::new(source);
        cell.store(credentials);
        cell
    }

    pub fn store(&self, credentials: Credentials) {
        self.current.store(Some(Arc::new(Held::new(credentials))));
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Credentials usable at `now`, or None.
    pub fn get(&self, now: SystemTime) -> Option<Arc<Held>> {
        self.current.load_full().filter(|held| held.usable_at(now))
    }

    pub fn state(&self, now: SystemTime) -> CredentialState {
        match self.current.load().as_ref() {
            None => CredentialState::Missing,
            Some(held) if held.usable_at(now) => CredentialState::Valid,
            Some(_) => CredentialState::Expired,
        }
    }

    pub fn expiry(&self) -> Option<SystemTime> {
        self.current.load().as_ref().and_then(|h| h.expiry)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Asks the refresher to fetch now (e.g. Lambda answered ExpiredTokenException).
    pub fn refresh_now(&self) {
        self.wake.notify_one();
    }
}

/// `2026-11-25T14:11:37Z`
pub fn rfc3339(at: SystemTime) -> String {
    time::OffsetDateTime::from(at)
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// When to refresh credentials expiring at `expiry`: half the remaining lifetime, within bounds.
pub fn refresh_delay(now: SystemTime, expiry: Option<SystemTime>) -> Duration {
    match expiry {
        None => NO_EXPIRY_REFRESH,
        Some(expiry) => {
            let remaining = expiry.duration_since(now).unwrap_or_default();
            (remaining / 2).clamp(MIN_REFRESH, MAX_REFRESH)
        }
    }
}

/// Backoff after `failures` consecutive failed fetches.
pub fn retry_delay(failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
    (RETRY_START * factor).min(RETRY_CAP)
}

/// The provider for "no `auth` on the Backend", chosen from the environment.
pub async fn default_provider() -> (String, SharedCredentialsProvider) {
    let full = std::env::var("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        .ok()
        .filter(|v| !v.is_empty());
    let relative = std::env::var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        .ok()
        .filter(|v| !v.is_empty());
    if let Some(uri) = full
        .clone()
        .or(relative.map(|r| format!("http://169.254.170.2{r}")))
    {
        let provider = aws_config::ecs::EcsCredentialsProvider::builder().build();
        return (
            format!("container credentials endpoint {uri}"),
            SharedCredentialsProvider::new(provider),
        );
    }
    let chain = aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
        .build()
        .await;
    (
        "default AWS credential chain".to_string(),
        SharedCredentialsProvider::new(chain),
    )
}

/// A backoff with "equal jitter": uniformly between half of `base` and `base`, so many gateways failing
/// together do not retry in lockstep.
fn jittered(base: Duration) -> Duration {
    let half = base / 2;
    half + half.mul_f64(rand::random::<f64>())
}

/// Keeps `cell` filled from `provider` until the task is dropped. `on_fetch` reports each attempt
/// (`true` = success) for metrics.
pub async fn refresh_loop(
    cell: Arc<CredentialCell>,
    provider: SharedCredentialsProvider,
    clock: SharedClock,
    on_fetch: impl Fn(bool) + Send + 'static,
) {
    let mut failures = 0u32;
    // Consecutive fetches triggered by wake-ups; each doubles the minimum spacing of the next one.
    let mut wake_streak = 0u32;
    loop {
        let attempted_at = tokio::time::Instant::now();
        let (scheduled, earliest_early) = match provider.provide_credentials().await {
            Ok(credentials) => {
                failures = 0;
                let now = clock.now();
                let expiry = credentials.expiry();
                tracing::info!(
                    source = %cell.source,
                    access_key_id = credentials.access_key_id(),
                    expires = expiry.map(rfc3339).unwrap_or_else(|| "never".into()),
                    "credentials fetched"
                );
                cell.store(credentials);
                on_fetch(true);
                let spacing = MIN_WAKE_INTERVAL
                    .saturating_mul(2u32.saturating_pow(wake_streak.min(16)))
                    .min(RETRY_CAP);
                (refresh_delay(now, expiry), spacing)
            }
            Err(error) => {
                failures += 1;
                // The SDK's error text names the provider and the failure, never the keys or the token.
                let message = aws_smithy_types_display(&error);
                tracing::warn!(source = %cell.source, failures, error = %message, "credential fetch failed; keeping cached credentials until they expire");
                *cell.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(message);
                on_fetch(false);
                // While failing, a wake-up cannot shorten the backoff.
                let backoff = jittered(retry_delay(failures));
                (backoff, backoff)
            }
        };
        let scheduled_at = attempted_at + scheduled;
        tokio::select! {
            _ = tokio::time::sleep_until(scheduled_at) => wake_streak = 0,
            _ = cell.wake.notified() => {
                let early_at = attempted_at + earliest_early;
                if early_at < scheduled_at {
                    tokio::time::sleep_until(early_at).await;
                    wake_streak = wake_streak.saturating_add(1);
                } else {
                    tokio::time::sleep_until(scheduled_at).await;
                    wake_streak = 0;
                }
            }
        }
    }
}

fn aws_smithy_types_display(
    error: &aws_credential_types::provider::error::CredentialsError,
) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(expiry: Option<SystemTime>) -> Credentials {
        Credentials::new(
            "ASIAEXAMPLE",
            "secret-value",
            Some("token-value".into()),
            expiry,
            "test",
        )
    }

    #[test]
    fn refresh_happens_at_half_the_remaining_lifetime_within_bounds() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let cases = [
            (Some(Duration::from_secs(3600)), Duration::from_secs(1800)),
            (Some(Duration::from_secs(900)), Duration::from_secs(450)),
            (Some(Duration::from_secs(6)), MIN_REFRESH),
            (Some(Duration::from_secs(12 * 3600)), MAX_REFRESH),
            (None, NO_EXPIRY_REFRESH),
        ];
        for (lifetime, want) in cases {
            assert_eq!(
                refresh_delay(now, lifetime.map(|l| now + l)),
                want,
                "{lifetime:?}"
            );
        }
        // Already expired: retry soon rather than never.
        assert_eq!(
            refresh_delay(now, Some(now - Duration::from_secs(5))),
            MIN_REFRESH
        );
    }

    #[test]
    fn retries_back_off_exponentially_up_to_a_cap() {
        let delays: Vec<_> = (1..=9).map(retry_delay).collect();
        assert_eq!(delays[0], Duration::from_millis(500));
        assert_eq!(delays[1], Duration::from_secs(1));
        assert_eq!(delays[2], Duration::from_secs(2));
        assert_eq!(*delays.last().expect("nine"), RETRY_CAP);
        assert!(delays.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn credentials_near_or_past_expiry_are_not_served() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let cell = CredentialCell::new("test");
        assert_eq!(cell.state(now), CredentialState::Missing);
        assert!(cell.get(now).is_none());

        cell.store(creds(Some(now + Duration::from_secs(600))));
        assert_eq!(cell.state(now), CredentialState::Valid);
        assert!(cell.get(now).is_some());

        let later = now + Duration::from_secs(600) - EXPIRY_SKEW;
        assert_eq!(cell.state(later), CredentialState::Expired);
        assert!(cell.get(later).is_none());

        cell.store(creds(None));
        assert!(
            cell.get(now + Duration::from_secs(10 * 365 * 86400))
                .is_some(),
            "no expiry = always usable"
        );
    }

    #[test]
    fn debug_output_never_contains_the_secret_or_token() {
        let held = Held::new(creds(None));
        let text = format!("{held:?}");
        assert!(!text.contains("secret-value"), "{text}");
        assert!(!text.contains("token-value"), "{text}");
    }

    /// A provider that counts its calls and fails (or succeeds) as told.
    #[derive(Debug)]
    struct CountingProvider {
        calls: Arc<std::sync::atomic::AtomicUsize>,
        succeed: bool,
    }

    impl ProvideCredentials for CountingProvider {
        fn provide_credentials<'a>(
            &'a self,
        ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            self.calls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            aws_credential_types::provider::future::ProvideCredentials::ready(if self.succeed {
                Ok(creds(Some(
                    SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + 3600),
                )))
            } else {
                Err(
                    aws_credential_types::provider::error::CredentialsError::provider_error(
                        "endpoint down",
                    ),
                )
            })
        }
    }

    #[derive(Debug)]
    struct Pinned;
    impl crate::clock::Clock for Pinned {
        fn now(&self) -> SystemTime {
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000)
        }
    }

    /// Runs the refresher for `minutes` of (paused, auto-advancing) tokio time while a request path asks for
    /// an early refresh every 10 ms, and counts fetches. (Wake-ups coalesce into one pending permit, so 100 or
    /// 1,000 a second — a busy gateway's 503/rejection rate — wake the refresher alike.)
    async fn fetches_under_wake_storm(succeed: bool, minutes: u64) -> usize {
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let cell = CredentialCell::new("test");
        let provider = SharedCredentialsProvider::new(CountingProvider {
            calls: calls.clone(),
            succeed,
        });
        let refresher = tokio::spawn(refresh_loop(
            cell.clone(),
            provider,
            Arc::new(Pinned),
            |_| {},
        ));
        let storm = {
            let cell = cell.clone();
            tokio::spawn(async move {
                loop {
                    cell.refresh_now();
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        };
        tokio::time::sleep(Duration::from_secs(60 * minutes)).await;
        storm.abort();
        refresher.abort();
        calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Figures (continuous wake-ups): a failing source is fetched at most 11 times in the first minute
    /// (backoff 0.25–0.5, 0.5–1, 1–2, … s, capped at 15–30 s) and at most 4 times a minute after; a source
    /// whose credentials Lambda keeps rejecting is re-fetched on the same doubling schedule.
    #[tokio::test(start_paused = true)]
    async fn wake_ups_never_bypass_the_backoff() {
        let failing_first_minute = fetches_under_wake_storm(false, 1).await;
        assert!(
            (5..=11).contains(&failing_first_minute),
            "failing source, first minute: {failing_first_minute} fetches"
        );
        let failing_ten_minutes = fetches_under_wake_storm(false, 10).await;
        assert!(
            failing_ten_minutes <= 11 + 9 * 4,
            "failing source, ten minutes: {failing_ten_minutes} fetches"
        );
        let rejected_ten_minutes = fetches_under_wake_storm(true, 10).await;
        assert!(
            rejected_ten_minutes <= 11 + 9 * 4,
            "rejected credentials, ten minutes: {rejected_ten_minutes} fetches"
        );
        eprintln!(
            "fetches under continuous wake-ups: failing {failing_first_minute} in 1 min, {failing_ten_minutes} in 10 min; rejected {rejected_ten_minutes} in 10 min"
        );
    }
}
