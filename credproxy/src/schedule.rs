//! Pure refresh and retry timing. No clocks, no randomness: callers pass `now` and a uniform
//! random number in `[0, 1)`, so every schedule is reproducible in tests.
//!
//! Contract:
//! - [`refresh_in`]: after a successful exchange, how long to wait before the next one. About
//!   `fraction` of the remaining lifetime, shortened by up to `jitter` of it (so a fleet of sidecars
//!   started together spreads out), and early enough that at least `min_remaining` of life is left at
//!   refresh time whenever the lifetime allows (botocore refetches below 15 min; we keep > 15 min).
//! - [`backoff`]: capped exponential backoff with full jitter (`uniform(0, min(cap, base·2^n))`),
//!   never below `floor` so a failing STS is not hammered.

use std::time::Duration;

use time::OffsetDateTime;

/// When to refresh and how to back off. Validated by the config layer (fractions in range).
#[derive(Debug, Clone, PartialEq)]
pub struct RefreshPolicy {
    /// Refresh after this fraction of the remaining lifetime (default 0.5).
    pub fraction: f64,
    /// Shorten the wait by up to this fraction of it, uniformly at random (default 0.1).
    pub jitter: f64,
    /// Keep at least this much life left at refresh time when the lifetime allows (default 20 min).
    pub min_remaining: Duration,
    /// First retry delay ceiling (default 200 ms).
    pub backoff_base: Duration,
    /// Largest retry delay (default 30 s).
    pub backoff_max: Duration,
    /// Smallest retry delay, whatever the jitter draws (default 50 ms).
    pub backoff_floor: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self {
            fraction: 0.5,
            jitter: 0.1,
            min_remaining: Duration::from_secs(20 * 60),
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            backoff_floor: Duration::from_millis(50),
        }
    }
}

/// Remaining life of a credential expiring at `expiry`, zero if already expired.
pub fn remaining(expiry: OffsetDateTime, now: OffsetDateTime) -> Duration {
    let left = expiry - now;
    if left.is_negative() {
        Duration::ZERO
    } else {
        left.unsigned_abs()
    }
}

/// Delay before refreshing credentials that expire at `expiry`, fetched at `now`.
/// `unit` is a uniform random number in `[0, 1)`.
pub fn refresh_in(
    expiry: OffsetDateTime,
    now: OffsetDateTime,
    policy: &RefreshPolicy,
    unit: f64,
) -> Duration {
    let left = remaining(expiry, now);
    let unit = unit.clamp(0.0, 1.0);
    let mut wait = left
        .mul_f64(policy.fraction)
        .mul_f64(1.0 - policy.jitter * unit);
    // Long lifetimes: make sure clients are never handed less than `min_remaining` while STS is healthy.
    if left > policy.min_remaining * 2 {
        let latest = left - policy.min_remaining;
        wait = wait.min(latest);
    }
    wait
}

/// Delay before retry number `attempt` (1 = first retry) after a failed exchange.
pub fn backoff(attempt: u32, policy: &RefreshPolicy, unit: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let ceiling = policy
        .backoff_base
        .saturating_mul(1u32 << exp)
        .min(policy.backoff_max);
    ceiling
        .mul_f64(unit.clamp(0.0, 1.0))
        .max(policy.backoff_floor.min(ceiling))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-25 12:00:00 UTC);

    #[test]
    fn one_hour_credentials_refresh_at_about_half_life() {
        let p = RefreshPolicy::default();
        let expiry = NOW + Duration::from_secs(3600);
        assert_eq!(refresh_in(expiry, NOW, &p, 0.0), Duration::from_secs(1800));
        // Maximum jitter shortens the wait by 10 %.
        assert_eq!(refresh_in(expiry, NOW, &p, 1.0), Duration::from_secs(1620));
    }

    #[test]
    fn long_lifetimes_keep_min_remaining_for_clients() {
        let p = RefreshPolicy {
            fraction: 0.99,
            jitter: 0.0,
            ..RefreshPolicy::default()
        };
        let expiry = NOW + Duration::from_secs(12 * 3600);
        let wait = refresh_in(expiry, NOW, &p, 0.5);
        assert_eq!(wait, Duration::from_secs(12 * 3600 - 20 * 60));
    }

    #[test]
    fn short_lifetimes_use_the_fraction_only() {
        let p = RefreshPolicy::default();
        let expiry = NOW + Duration::from_secs(10);
        assert_eq!(refresh_in(expiry, NOW, &p, 0.0), Duration::from_secs(5));
    }

    #[test]
    fn expired_credentials_refresh_immediately() {
        let p = RefreshPolicy::default();
        assert_eq!(
            refresh_in(NOW - Duration::from_secs(1), NOW, &p, 0.3),
            Duration::ZERO
        );
    }

    #[test]
    fn backoff_grows_exponentially_and_is_capped() {
        let p = RefreshPolicy::default();
        assert_eq!(backoff(1, &p, 1.0), Duration::from_millis(200));
        assert_eq!(backoff(2, &p, 1.0), Duration::from_millis(400));
        assert_eq!(backoff(5, &p, 1.0), Duration::from_millis(3200));
        assert_eq!(backoff(30, &p, 1.0), Duration::from_secs(30));
        assert_eq!(backoff(u32::MAX, &p, 1.0), Duration::from_secs(30));
    }

    #[test]
    fn backoff_has_full_jitter_with_a_floor() {
        let p = RefreshPolicy::default();
        assert_eq!(backoff(10, &p, 0.5), Duration::from_secs(15));
        assert_eq!(backoff(10, &p, 0.0), Duration::from_millis(50));
    }
}
