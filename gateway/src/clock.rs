//! The wall clock, injected: signing dates, credential expiry checks, refresh scheduling and API Gateway
//! request times all read it through [`Clock`], so tests can pin or move time. `SystemTime::now` is called only
//! here. (Timers and timeouts use tokio's clock, which tests pause and advance.)

use std::sync::Arc;
use std::time::SystemTime;

/// A source of wall-clock time.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    fn now(&self) -> SystemTime;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// The clock the gateway runs on.
pub type SharedClock = Arc<dyn Clock>;

/// The real clock, shared.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}
