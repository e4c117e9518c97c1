//! One role's credential cache and its background refresher.
//!
//! Contract:
//! - Exactly one task per role ever calls the [`Exchanger`] (single flight by construction, no
//!   polling): requests only read the published [`RoleState`] through a `watch` channel, and at cold
//!   start they wait on it for at most `cold_wait`.
//! - Prefetch at start; after a success, refresh at [`refresh_in`] (≈ half-life with jitter, and
//!   before the credentials stop being usable); after a failure, retry with [`backoff`]. The token
//!   file is re-read before every exchange, and once more right away when STS rejects the token.
//! - Credentials are served while `expiration - now > margin`, whatever STS does meanwhile; never
//!   after. A failure is published so callers can answer 502/503/504 when nothing usable is held.
//! - A failure is logged when its (kind, code) differs from the previous attempt's, so a steady
//!   misconfiguration produces one clear line instead of one per retry.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::credentials::Served;
use crate::exchange::{read_token, Exchanger, Failure, FailureKind};
use crate::metrics::{FailureLabels, Metrics, StsLabels};
use crate::schedule::{backoff, refresh_in, remaining, RefreshPolicy};

/// Wall-clock time source (injected so tests can pause time).
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// Uniform random numbers in `[0, 1)` for jitter (injected so tests are deterministic).
pub type UnitRandom = Arc<dyn Fn() -> f64 + Send + Sync>;

pub fn thread_random() -> UnitRandom {
    Arc::new(rand::random::<f64>)
}

/// What the refresher publishes.
#[derive(Debug, Clone, Default)]
pub struct RoleState {
    pub served: Option<Served>,
    /// The last attempt's failure; cleared by a success.
    pub failure: Option<Failure>,
}

/// What a request gets.
#[derive(Debug, Clone)]
pub enum Lookup {
    Ready(Bytes),
    Failed(Failure),
    /// No attempt finished yet.
    Pending,
}

/// Static settings of one role.
#[derive(Debug, Clone)]
pub struct RoleSettings {
    pub name: String,
    pub role_arn: String,
    pub token_file: PathBuf,
    pub policy: RefreshPolicy,
    /// Never serve credentials with this little life left (or less).
    pub margin: Duration,
    /// `/readyz` needs at least this much life left.
    pub ready_min_life: Duration,
    /// Add `RoleArn` to the JSON.
    pub serve_role_arn: bool,
}

/// Shared, read-mostly view of a role used by the HTTP layer.
pub struct RoleHandle {
    pub settings: RoleSettings,
    state: watch::Receiver<RoleState>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for RoleHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleHandle")
            .field("name", &self.settings.name)
            .finish_non_exhaustive()
    }
}

impl RoleHandle {
    /// The hot path: a read lock and a reference-count increment.
    pub fn lookup(&self) -> Lookup {
        let now = self.clock.now();
        let state = self.state.borrow();
        self.classify(&state, now)
    }

    fn classify(&self, state: &RoleState, now: OffsetDateTime) -> Lookup {
        if let Some(served) = &state.served {
            if served.usable_at(now, self.settings.margin) {
                return Lookup::Ready(served.body.clone());
            }
        }
        match &state.failure {
            Some(f) => Lookup::Failed(f.clone()),
            None => Lookup::Pending,
        }
    }

    /// Like [`lookup`](Self::lookup), but while no attempt has finished yet (cold start) waits up to
    /// `max` for the first one.
    pub async fn lookup_or_wait(&self, max: Duration) -> Lookup {
        let first = self.lookup();
        if !matches!(first, Lookup::Pending) || max.is_zero() {
            return first;
        }
        let mut rx = self.state.clone();
        let clock = self.clock.clone();
        let margin = self.settings.margin;
        let waited = tokio::time::timeout(
            max,
            rx.wait_for(|s| {
                s.failure.is_some()
                    || s.served
                        .as_ref()
                        .is_some_and(|c| c.usable_at(clock.now(), margin))
            }),
        )
        .await;
        match waited {
            Ok(Ok(_)) => self.lookup(),
            _ => Lookup::Pending,
        }
    }

    /// Seconds of life left in the held credentials (`None` if none are held).
    pub fn seconds_until_expiry(&self) -> Option<f64> {
        let now = self.clock.now();
        let state = self.state.borrow();
        state
            .served
            .as_ref()
            .map(|s| (s.expiration - now).as_seconds_f64())
    }

    /// Credentials held with more than `ready_min_life` (and the expiry margin) left.
    pub fn is_ready(&self) -> bool {
        let needed = self.settings.ready_min_life.max(self.settings.margin);
        self.seconds_until_expiry()
            .is_some_and(|s| s > needed.as_secs_f64())
    }
}

/// Starts the refresher task for one role (prefetching immediately) and returns its handle.
pub fn spawn<E: Exchanger>(
    settings: RoleSettings,
    exchanger: E,
    clock: Arc<dyn Clock>,
    random: UnitRandom,
    metrics: Arc<Metrics>,
) -> Arc<RoleHandle> {
    let (tx, rx) = watch::channel(RoleState::default());
    let handle = Arc::new(RoleHandle {
        settings: settings.clone(),
        state: rx,
        clock: clock.clone(),
    });
    let refresher = Refresher {
        settings,
        exchanger,
        clock,
        random,
        metrics,
        tx,
    };
    tokio::spawn(refresher.run());
    handle
}

struct Refresher<E> {
    settings: RoleSettings,
    exchanger: E,
    clock: Arc<dyn Clock>,
    random: UnitRandom,
    metrics: Arc<Metrics>,
    tx: watch::Sender<RoleState>,
}

impl<E: Exchanger> Refresher<E> {
    async fn run(self) {
        let mut attempt: u32 = 0;
        let mut last_failure: Option<(FailureKind, String)> = None;
        let role = self.settings.name.as_str();
        loop {
            let fetched = self.fetch().await.and_then(|served| {
                let left = remaining(served.expiration, self.clock.now());
                if left <= self.settings.margin {
                    Err(Failure::new(
                        FailureKind::Permanent,
                        "CredentialsTooShortLived",
                        format!(
                            "STS returned credentials valid for {}s, not more than the expiry margin of {}s; raise --duration-seconds or lower --expiry-margin",
                            left.as_secs(),
                            self.settings.margin.as_secs()
                        ),
                    ))
                } else {
                    Ok(served)
                }
            });
            let wait = match fetched {
                Ok(served) => {
                    let now = self.clock.now();
                    let left = remaining(served.expiration, now);
                    let wait = refresh_in(
                        served.expiration,
                        now,
                        &self.settings.policy,
                        (self.random)(),
                    )
                    .min(left.saturating_sub(self.settings.margin))
                    .max(self.settings.policy.backoff_floor);
                    if last_failure.take().is_some() {
                        tracing::info!(role, "STS recovered; credentials refreshed");
                    }
                    tracing::info!(
                        role,
                        expires_in_s = left.as_secs(),
                        next_refresh_in_s = wait.as_secs_f64(),
                        "credentials refreshed"
                    );
                    self.tx.send_modify(|s| {
                        s.served = Some(served);
                        s.failure = None;
                    });
                    attempt = 0;
                    wait
                }
                Err(failure) => {
                    attempt = attempt.saturating_add(1);
                    self.metrics
                        .refresh_failures
                        .get_or_create(&FailureLabels {
                            role: role.to_string(),
                            kind: failure.kind.as_str(),
                        })
                        .inc();
                    let wait = backoff(attempt, &self.settings.policy, (self.random)());
                    let key = (failure.kind, failure.code.clone());
                    let still_serving = self
                        .tx
                        .borrow()
                        .served
                        .as_ref()
                        .map(|s| remaining(s.expiration, self.clock.now()).as_secs())
                        .unwrap_or(0);
                    if last_failure.as_ref() != Some(&key) {
                        log_failure(role, &failure, wait, still_serving);
                        last_failure = Some(key);
                    } else {
                        tracing::debug!(role, code = %failure.code, attempt, retry_in_s = wait.as_secs_f64(), "credential refresh failed again");
                    }
                    self.tx.send_modify(|s| s.failure = Some(failure));
                    wait
                }
            };
            tokio::time::sleep(wait).await;
            if self.tx.is_closed() {
                return;
            }
        }
    }

    /// One exchange: read the token, call STS; on a rejected token, re-read it and try once more.
    async fn fetch(&self) -> Result<Served, Failure> {
        let token = read_token(&self.settings.token_file)?;
        let creds = match self.call(&token).await {
            Err(f) if f.kind == FailureKind::TokenRejected => {
                tracing::debug!(role = %self.settings.name, code = %f.code, "STS rejected the web identity token; re-reading the token file and retrying once");
                let fresh = read_token(&self.settings.token_file)?;
                self.call(&fresh).await?
            }
            other => other?,
        };
        let role_arn = self
            .settings
            .serve_role_arn
            .then_some(self.settings.role_arn.as_str());
        Ok(Served::render(&creds, role_arn))
    }

    async fn call(&self, token: &str) -> Result<crate::credentials::Credentials, Failure> {
        let started = Instant::now();
        let result = self.exchanger.exchange(token).await;
        self.metrics
            .sts_latency
            .observe(started.elapsed().as_secs_f64());
        let (outcome, code) = match &result {
            Ok(_) => ("success", String::new()),
            Err(f) => ("error", f.code.clone()),
        };
        self.metrics
            .sts_calls
            .get_or_create(&StsLabels {
                role: self.settings.name.clone(),
                outcome,
                code,
            })
            .inc();
        result
    }
}

fn log_failure(role: &str, failure: &Failure, retry_in: Duration, serving_s: u64) {
    let retry_in_s = retry_in.as_secs_f64();
    let code = failure.code.as_str();
    let message = failure.message.as_str();
    match failure.kind {
        FailureKind::Permanent => tracing::error!(
            role, code, retry_in_s, still_valid_s = serving_s,
            "credential refresh failed with a configuration error (check the role ARN, its trust policy, the session settings and the region): {message}"
        ),
        FailureKind::TokenFile => tracing::error!(
            role, code, retry_in_s, still_valid_s = serving_s,
            "cannot use the web identity token file (is the projected service account token mounted?): {message}"
        ),
        FailureKind::TokenRejected => tracing::warn!(
            role, code, retry_in_s, still_valid_s = serving_s,
            "STS rejected the web identity token even after re-reading it: {message}"
        ),
        FailureKind::Transient | FailureKind::Timeout => tracing::warn!(
            role, code, retry_in_s, still_valid_s = serving_s,
            "credential refresh failed; retrying with backoff: {message}"
        ),
    }
}

#[cfg(test)]
mod tests;
