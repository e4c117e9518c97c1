//! Refresher tests with a fake exchanger and tokio's paused clock.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::*;
use crate::credentials::Credentials;

/// Wall clock derived from tokio's (pausable) clock.
struct TokioClock {
    base: OffsetDateTime,
    start: tokio::time::Instant,
}

impl Clock for TokioClock {
    fn now(&self) -> OffsetDateTime {
        self.base + (tokio::time::Instant::now() - self.start)
    }
}

type Script = dyn Fn(usize, &str) -> Result<Duration, Failure> + Send + Sync;

/// Fake STS: `script(call_index, token)` returns the lifetime of the credentials to issue or a failure.
struct FakeSts {
    calls: Arc<AtomicUsize>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    tokens: Arc<Mutex<Vec<String>>>,
    latency: Duration,
    clock: Arc<dyn Clock>,
    script: Arc<Script>,
}

impl Exchanger for FakeSts {
    async fn exchange(&self, token: &str) -> Result<Credentials, Failure> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let now_in = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now_in, Ordering::SeqCst);
        self.tokens.lock().unwrap().push(token.to_string());
        tokio::time::sleep(self.latency).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let lifetime = (self.script)(n, token)?;
        Ok(Credentials {
            access_key_id: format!("ASIAFAKE{n:012}"),
            secret_access_key: "fake-secret".into(),
            session_token: "fake-session".into(),
            expiration: self.clock.now() + lifetime,
            account_id: Some("123456789012".into()),
            assumed_role_arn: None,
        })
    }
}

struct Harness {
    handle: Arc<RoleHandle>,
    calls: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    tokens: Arc<Mutex<Vec<String>>>,
    token_file: PathBuf,
    _dir: tempfile::TempDir,
}

fn start(
    latency: Duration,
    margin: Duration,
    write_token: bool,
    script: impl Fn(usize, &str) -> Result<Duration, Failure> + Send + Sync + 'static,
) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    if write_token {
        std::fs::write(&token_file, "token-1").unwrap();
    }
    let clock: Arc<dyn Clock> = Arc::new(TokioClock {
        base: time::macros::datetime!(2026-11-25 12:00:00 UTC),
        start: tokio::time::Instant::now(),
    });
    let calls = Arc::new(AtomicUsize::new(0));
    let max_in_flight = Arc::new(AtomicUsize::new(0));
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let fake = FakeSts {
        calls: calls.clone(),
        in_flight: Arc::new(AtomicUsize::new(0)),
        max_in_flight: max_in_flight.clone(),
        tokens: tokens.clone(),
        latency,
        clock: clock.clone(),
        script: Arc::new(script),
    };
    let settings = RoleSettings {
        name: "default".into(),
        role_arn: "arn:aws:iam::123456789012:role/test".into(),
        token_file: token_file.clone(),
        policy: RefreshPolicy::default(),
        margin,
        ready_min_life: Duration::from_secs(1),
        serve_role_arn: false,
    };
    // Deterministic jitter: always the largest draw.
    let random: UnitRandom = Arc::new(|| 1.0);
    let handle = spawn(settings, fake, clock, random, Arc::new(Metrics::new()));
    Harness {
        handle,
        calls,
        max_in_flight,
        tokens,
        token_file,
        _dir: dir,
    }
}

fn access_key(lookup: &Lookup) -> String {
    match lookup {
        Lookup::Ready(body) => {
            let v: serde_json::Value = serde_json::from_slice(body).unwrap();
            v["AccessKeyId"].as_str().unwrap().to_string()
        }
        other => panic!("expected credentials, got {other:?}"),
    }
}

async fn concurrent_lookups(handle: &Arc<RoleHandle>, n: usize, wait: Duration) -> Vec<Lookup> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let h = handle.clone();
            tokio::spawn(async move { h.lookup_or_wait(wait).await })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn transient() -> Failure {
    Failure::new(
        FailureKind::Transient,
        "StsUnreachable",
        "connection refused",
    )
}

#[tokio::test(start_paused = true)]
async fn cold_start_1000_concurrent_requests_make_one_sts_call() {
    let h = start(
        Duration::from_millis(300),
        Duration::from_secs(15),
        true,
        |_, _| Ok(Duration::from_secs(3600)),
    );
    let results = concurrent_lookups(&h.handle, 1000, Duration::from_secs(1)).await;
    assert_eq!(h.calls.load(Ordering::SeqCst), 1);
    assert!(results
        .iter()
        .all(|r| access_key(r) == "ASIAFAKE000000000000"));
}

#[tokio::test(start_paused = true)]
async fn refresh_happens_at_jittered_half_life_and_keeps_serving_meanwhile() {
    let h = start(
        Duration::from_millis(500),
        Duration::from_secs(15),
        true,
        |_, _| Ok(Duration::from_secs(3600)),
    );
    assert!(matches!(
        h.handle.lookup_or_wait(Duration::from_secs(1)).await,
        Lookup::Ready(_)
    ));
    // Jitter draw 1.0 → 0.5 × 3600 s × 0.9 = 1620 s after the first fetch completed.
    tokio::time::sleep(Duration::from_secs(1619)).await;
    assert_eq!(h.calls.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The refresh is in flight (500 ms latency): 1000 concurrent requests get the old credentials
    // at once and cause no extra call.
    assert_eq!(h.calls.load(Ordering::SeqCst), 2);
    let results = concurrent_lookups(&h.handle, 1000, Duration::from_secs(1)).await;
    assert!(results
        .iter()
        .all(|r| access_key(r) == "ASIAFAKE000000000000"));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(access_key(&h.handle.lookup()), "ASIAFAKE000000000001");
    assert_eq!(h.calls.load(Ordering::SeqCst), 2);
    assert_eq!(h.max_in_flight.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn sts_down_serves_cached_until_the_margin_then_the_failure_never_expired() {
    let h = start(
        Duration::from_millis(10),
        Duration::from_secs(5),
        true,
        |n, _| {
            if n == 0 {
                Ok(Duration::from_secs(60))
            } else {
                Err(transient())
            }
        },
    );
    let first = h.handle.lookup_or_wait(Duration::from_secs(1)).await;
    assert_eq!(access_key(&first), "ASIAFAKE000000000000");
    // Refresh at 27 s starts failing; credentials stay served until 60 - 5 = 55 s.
    tokio::time::sleep(Duration::from_secs(54)).await;
    assert!(h.calls.load(Ordering::SeqCst) > 2, "retries happened");
    assert_eq!(access_key(&h.handle.lookup()), "ASIAFAKE000000000000");
    tokio::time::sleep(Duration::from_secs(2)).await;
    match h.handle.lookup() {
        Lookup::Failed(f) => {
            assert_eq!(f.kind, FailureKind::Transient);
            assert_eq!(f.kind.http_status(), 502);
        }
        other => panic!("expected the failure, got {other:?}"),
    }
    assert!(!h.handle.is_ready());
    // Retries are spaced by capped exponential backoff, one call at a time.
    assert_eq!(h.max_in_flight.load(Ordering::SeqCst), 1);
    let calls = h.calls.load(Ordering::SeqCst);
    assert!(calls < 20, "backoff keeps the retry count low, got {calls}");
}

#[tokio::test(start_paused = true)]
async fn backoff_delays_grow_between_failed_attempts() {
    let stamps = Arc::new(Mutex::new(Vec::new()));
    let s2 = stamps.clone();
    let _h = start(Duration::ZERO, Duration::from_secs(5), true, move |_, _| {
        s2.lock().unwrap().push(tokio::time::Instant::now());
        Err(transient())
    });
    tokio::time::sleep(Duration::from_secs(10)).await;
    let stamps = stamps.lock().unwrap();
    let gaps: Vec<u128> = stamps
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis())
        .collect();
    // Jitter draw 1.0 → 200, 400, 800, 1600, 3200 ms …
    assert_eq!(&gaps[..4], &[200, 400, 800, 1600]);
}

#[tokio::test(start_paused = true)]
async fn rejected_token_is_re_read_once_and_retried() {
    let dir_token: Arc<Mutex<Option<PathBuf>>> = Arc::new(Mutex::new(None));
    let path_slot = dir_token.clone();
    let h = start(
        Duration::ZERO,
        Duration::from_secs(5),
        true,
        move |_, token| {
            if token == "token-1" {
                // The kubelet rotates the token between our read and STS's verdict.
                let path = path_slot.lock().unwrap().clone().unwrap();
                std::fs::write(path, "token-2\n").unwrap();
                Err(Failure::new(
                    FailureKind::TokenRejected,
                    "ExpiredTokenException",
                    "expired",
                ))
            } else {
                Ok(Duration::from_secs(3600))
            }
        },
    );
    *dir_token.lock().unwrap() = Some(h.token_file.clone());
    // The first attempt may race the slot being filled; give the refresher time.
    let got = h.handle.lookup_or_wait(Duration::from_secs(5)).await;
    let got = match got {
        Lookup::Failed(_) => {
            tokio::time::sleep(Duration::from_secs(1)).await;
            h.handle.lookup()
        }
        other => other,
    };
    assert!(matches!(got, Lookup::Ready(_)));
    let tokens = h.tokens.lock().unwrap().clone();
    assert_eq!(&tokens[tokens.len() - 2..], &["token-1", "token-2"]);
}

#[tokio::test(start_paused = true)]
async fn missing_token_file_is_reported_and_recovers_when_it_appears() {
    let h = start(Duration::ZERO, Duration::from_secs(5), false, |_, _| {
        Ok(Duration::from_secs(3600))
    });
    match h.handle.lookup_or_wait(Duration::from_secs(1)).await {
        Lookup::Failed(f) => {
            assert_eq!(f.kind, FailureKind::TokenFile);
            assert_eq!(f.kind.http_status(), 503);
            assert!(f.message.contains("cannot read web identity token file"));
        }
        other => panic!("expected a token-file failure, got {other:?}"),
    }
    assert_eq!(
        h.calls.load(Ordering::SeqCst),
        0,
        "STS is not called without a token"
    );
    std::fs::write(&h.token_file, "token-1").unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(matches!(h.handle.lookup(), Lookup::Ready(_)));
    assert!(h.handle.is_ready());
}

#[tokio::test(start_paused = true)]
async fn credentials_shorter_than_the_margin_are_never_served() {
    let h = start(Duration::ZERO, Duration::from_secs(30), true, |_, _| {
        Ok(Duration::from_secs(20))
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    match h.handle.lookup() {
        Lookup::Failed(f) => assert_eq!(f.code, "CredentialsTooShortLived"),
        other => panic!("expected a failure, got {other:?}"),
    }
    assert!(!h.handle.is_ready());
    // Backoff, not a spin: a handful of calls in 10 s.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(h.calls.load(Ordering::SeqCst) < 10);
}
