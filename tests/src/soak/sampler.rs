//! Samples resident memory (`VmRSS` in `/proc/<pid>/status`) and open file descriptors (entries of
//! `/proc/<pid>/fd`) of registered processes at a fixed interval, and judges whether they stayed flat.
//!
//! Contract:
//! - [`Sampler::track`] registers a process instance (a restarted process is a new instance); sampling stops
//!   for it once `/proc/<pid>` is gone. [`Sampler::track_peer`] registers a test peer's process: sampled and
//!   reported the same way, but not ours to judge ([`Instance::judged`] is false).
//! - [`Instance::flatness`] compares the instance's settled level with its level at the end: samples in the
//!   first quarter of its life are warm-up (allocator arenas, connection pools and caches filling) and
//!   ignored; the *baseline* is the maximum over the second quarter, the *end* the maximum over the last
//!   quarter. RSS is flat when `end ≤ baseline × (1 + RSS_GROWTH) + RSS_SLACK_KIB`, fds when
//!   `end ≤ baseline + FD_SLACK`. Instances sampled fewer than [`MIN_SAMPLES`] times are not judged.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::unix_now;

/// Allowed relative RSS growth from baseline to end.
pub const RSS_GROWTH: f64 = 0.20;
/// Allowed absolute RSS growth on top of [`RSS_GROWTH`] (KiB).
pub const RSS_SLACK_KIB: u64 = 2048;
/// Allowed growth in open file descriptors (a few connections may be open at the last sample).
pub const FD_SLACK: u64 = 8;
/// Fewer samples than this: too short-lived to judge.
pub const MIN_SAMPLES: usize = 20;

/// One sample.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub at: f64,
    pub rss_kib: u64,
    pub fds: u64,
}

/// One process instance and its samples.
#[derive(Clone, Debug)]
pub struct Instance {
    pub name: String,
    pub pid: u32,
    pub samples: Vec<Sample>,
    pub gone: bool,
    /// Ours (held to the flatness targets), not a test peer's.
    pub judged: bool,
}

/// The verdict on one instance.
#[derive(Clone, Debug)]
pub struct Flatness {
    pub rss_baseline_kib: u64,
    pub rss_end_kib: u64,
    pub rss_max_kib: u64,
    pub fds_baseline: u64,
    pub fds_end: u64,
    pub fds_max: u64,
    pub rss_flat: bool,
    pub fds_flat: bool,
}

impl Instance {
    /// `None` when there are too few samples to judge.
    pub fn flatness(&self) -> Option<Flatness> {
        let n = self.samples.len();
        if n < MIN_SAMPLES {
            return None;
        }
        let quarter = |from: usize, to: usize| &self.samples[n * from / 4..n * to / 4];
        let max_rss = |s: &[Sample]| s.iter().map(|s| s.rss_kib).max().unwrap_or(0);
        let max_fds = |s: &[Sample]| s.iter().map(|s| s.fds).max().unwrap_or(0);
        let (baseline, end) = (quarter(1, 2), quarter(3, 4));
        let rss_baseline_kib = max_rss(baseline);
        let rss_end_kib = max_rss(end);
        let fds_baseline = max_fds(baseline);
        let fds_end = max_fds(end);
        Some(Flatness {
            rss_baseline_kib,
            rss_end_kib,
            rss_max_kib: max_rss(&self.samples),
            fds_baseline,
            fds_end,
            fds_max: max_fds(&self.samples),
            rss_flat: rss_end_kib as f64
                <= rss_baseline_kib as f64 * (1.0 + RSS_GROWTH) + RSS_SLACK_KIB as f64,
            fds_flat: fds_end <= fds_baseline + FD_SLACK,
        })
    }

    pub fn first(&self) -> Option<Sample> {
        self.samples.first().copied()
    }

    pub fn last(&self) -> Option<Sample> {
        self.samples.last().copied()
    }
}

/// The sampler (see the module docs).
#[derive(Clone, Default)]
pub struct Sampler {
    instances: Arc<Mutex<Vec<Instance>>>,
}

impl Sampler {
    pub fn track(&self, name: &str, pid: u32) {
        self.register(name, pid, true);
    }

    pub fn track_peer(&self, name: &str, pid: u32) {
        self.register(name, pid, false);
    }

    fn register(&self, name: &str, pid: u32, judged: bool) {
        self.instances
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Instance {
                name: name.to_string(),
                pid,
                samples: Vec::new(),
                gone: false,
                judged,
            });
    }

    /// Samples every live instance each `interval` until the task is aborted.
    pub fn spawn(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let instances = self.instances.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            loop {
                tick.tick().await;
                let mut instances = instances.lock().unwrap_or_else(|e| e.into_inner());
                for instance in instances.iter_mut().filter(|i| !i.gone) {
                    match sample(instance.pid) {
                        Some(sample) => instance.samples.push(sample),
                        None => instance.gone = true,
                    }
                }
            }
        })
    }

    pub fn instances(&self) -> Vec<Instance> {
        self.instances
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The processes whose command line contains every one of `parts` (e.g. a peer's binary name and its port).
pub fn pids_with_args(parts: &[&str]) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline);
            // A shell that starts the peer (`sh -c "node … "`) carries the same words; it is not the peer.
            let program = cmdline.split('\0').next()?;
            if program == "sh" || program.ends_with("/sh") {
                return None;
            }
            let cmdline = cmdline.replace('\0', " ");
            parts.iter().all(|p| cmdline.contains(p)).then_some(pid)
        })
        .collect()
}

/// RSS and fd count of `pid`, `None` if it is gone (or a zombie, which has no `VmRSS`).
pub fn sample(pid: u32) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some(Sample {
        at: unix_now(),
        rss_kib,
        fds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(rss: &[u64]) -> Instance {
        Instance {
            name: "p".into(),
            pid: 1,
            samples: rss
                .iter()
                .enumerate()
                .map(|(i, &rss_kib)| Sample {
                    at: i as f64,
                    rss_kib,
                    fds: 10,
                })
                .collect(),
            gone: false,
            judged: true,
        }
    }

    #[test]
    fn warm_up_growth_is_ignored_and_later_growth_is_not() {
        let mut settled = vec![1_000; 5];
        settled.extend([20_000; 15]);
        assert!(instance(&settled).flatness().unwrap().rss_flat);
        let leaking: Vec<u64> = (0..20).map(|i| 20_000 + i * 1_000).collect();
        let verdict = instance(&leaking).flatness().unwrap();
        assert!(!verdict.rss_flat, "{verdict:?}");
        assert!(instance(&[1; 5]).flatness().is_none());
    }

    #[test]
    fn this_process_can_be_sampled() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_kib > 0 && s.fds > 0);
    }
}
