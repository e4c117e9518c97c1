//! Leader election on a `coordination.k8s.io/v1` Lease, with client-go's semantics (a small implementation on
//! kube's `Api<Lease>`, so no extra crate and no hidden behaviour: the whole protocol is this file).
//!
//! Contract:
//! - A candidate becomes leader by writing its identity into the Lease's `holderIdentity` (creating the Lease
//!   if missing). Writes are `replace`s carrying the `resourceVersion` read, so of two candidates racing for
//!   the same Lease exactly one succeeds (the other gets 409 Conflict and stays a follower).
//! - The leader renews (`renewTime`) every `retry_period`. If it cannot renew for `renew_deadline` it steps
//!   down (the published state turns `false`) before its Lease can expire for others (`renew_deadline <
//!   lease_duration`), so two leaders never act at once as long as clocks run at the same rate.
//! - A follower takes over once the Lease's record (holder, renewTime) has not changed for `lease_duration`,
//!   measured on the follower's own monotonic clock from when it saw the record change (not by comparing
//!   the leader's `renewTime` with the local wall clock: no clock-skew assumption).
//! - On shutdown ([`Elector::release`]) the leader clears `holderIdentity` so a follower takes over at its next
//!   retry instead of after `lease_duration`.
//! - The state is published on a `tokio::sync::watch` channel: `true` while this process is leader.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::Api;
use tokio::sync::watch;

/// Timings of the election (client-go's defaults: 15 s, 10 s, 2 s).
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Timings {
    /// Checks the invariants the safety argument needs.
    pub fn validate(&self) -> Result<(), String> {
        if self.renew_deadline >= self.lease_duration {
            return Err("--renew-deadline must be shorter than --lease-duration".into());
        }
        if self.retry_period >= self.renew_deadline {
            return Err("--retry-period must be shorter than --renew-deadline".into());
        }
        if self.lease_duration < Duration::from_secs(1) {
            return Err("--lease-duration must be at least 1s".into());
        }
        Ok(())
    }
}

/// What a candidate watches for change in the Lease: its holder and last renewal.
type LeaseRecord = (Option<String>, Option<MicroTime>);

/// One candidate for one Lease.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timings: Timings,
    /// The last (holder, renewTime) seen and when (local clock) it was first seen.
    observed: Option<(LeaseRecord, Instant)>,
    leader: watch::Sender<bool>,
}

impl std::fmt::Debug for Elector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Elector")
            .field("lease", &self.name)
            .field("identity", &self.identity)
            .field("leader", &*self.leader.borrow())
            .finish_non_exhaustive()
    }
}

impl Elector {
    pub fn new(api: Api<Lease>, name: &str, identity: &str, timings: Timings) -> Elector {
        let (leader, _) = watch::channel(false);
        Elector {
            api,
            name: name.to_string(),
            identity: identity.to_string(),
            timings,
            observed: None,
            leader,
        }
    }

    /// `true` while this process leads.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leader.subscribe()
    }

    /// Campaigns and renews forever (run it as a task; abort it, then call [`Elector::release`], to stop).
    pub async fn run(&mut self) {
        let mut last_renewal: Option<Instant> = None;
        loop {
            let attempt =
                tokio::time::timeout(self.timings.retry_period, self.try_acquire_or_renew()).await;
            match attempt {
                Ok(Ok(true)) => {
                    last_renewal = Some(Instant::now());
                    if !*self.leader.borrow() {
                        tracing::info!(lease = %self.name, identity = %self.identity, "became leader");
                        self.leader.send_replace(true);
                    }
                }
                Ok(Ok(false)) => {
                    if *self.leader.borrow() {
                        // Someone else holds it now (we were too slow to renew): never lead alongside them.
                        tracing::warn!(lease = %self.name, "lost the lease to another candidate");
                        self.leader.send_replace(false);
                    }
                    last_renewal = None;
                }
                Ok(Err(error)) => {
                    tracing::warn!(lease = %self.name, %error, "cannot read or write the leader Lease (retrying)")
                }
                Err(_) => {
                    tracing::warn!(lease = %self.name, "leader Lease request timed out (retrying)")
                }
            }
            if *self.leader.borrow()
                && last_renewal.is_none_or(|at| at.elapsed() >= self.timings.renew_deadline)
            {
                tracing::warn!(lease = %self.name, deadline = ?self.timings.renew_deadline, "could not renew the lease in time: stepping down");
                self.leader.send_replace(false);
            }
            tokio::time::sleep(self.timings.retry_period).await;
        }
    }

    /// One round: `Ok(true)` when this candidate holds the Lease afterwards.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let duration_seconds =
            i32::try_from(self.timings.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(duration_seconds),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(error) => Err(error),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let record = (spec.holder_identity.clone(), spec.renew_time.clone());
        let changed = self
            .observed
            .as_ref()
            .is_none_or(|(seen, _)| *seen != record);
        if changed {
            self.observed = Some((record, Instant::now()));
        }
        let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
        let ours = holder == Some(self.identity.as_str());
        if let Some(holder) = holder {
            let seen_at = self
                .observed
                .as_ref()
                .map(|(_, at)| *at)
                .unwrap_or_else(Instant::now);
            // The holder's own lease duration decides when its silence means it is gone.
            let their_duration = spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs)
                .unwrap_or(self.timings.lease_duration);
            if !ours && seen_at.elapsed() < their_duration {
                tracing::debug!(lease = %self.name, holder, "lease held by another candidate");
                return Ok(false);
            }
        }
        let transitions = spec.lease_transitions.unwrap_or(0);
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(duration_seconds),
            acquire_time: if ours {
                spec.acquire_time.clone()
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(if ours { transitions } else { transitions + 1 }),
            ..spec
        });
        // `replace` sends the resourceVersion we read: a concurrent writer makes this a 409.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                let spec = written.spec.unwrap_or_default();
                self.observed = Some(((spec.holder_identity, spec.renew_time), Instant::now()));
                Ok(true)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Gives the Lease up if this process holds it (on shutdown), so a follower need not wait for it to expire.
    pub async fn release(&mut self) {
        if !*self.leader.borrow() {
            return;
        }
        self.leader.send_replace(false);
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(lease = %self.name, "released the leader lease"),
            Err(error) => {
                tracing::warn!(lease = %self.name, %error, "could not release the leader lease (it expires on its own)")
            }
        }
    }
}
