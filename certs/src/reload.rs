//! A rustls certificate resolver that follows `--tls-cert` / `--tls-key` on disk.
//!
//! The watcher listens on the files' parent directories (a Kubernetes Secret volume swaps its `..data`
//! symlink, which shows up as events on other names in that directory, never on `tls.crt` itself) and also
//! re-checks every `poll_interval` as a safety net (missed events, replaced directories). A reload happens
//! only when the bytes on disk differ from the last attempt; a pair that fails to load (half-written, key
//! and certificate out of step, garbage) is logged once and the previous pair keeps being served.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::load::{parse_certified_key, CertError};
use crate::watch::{watch_files, FileWatch, WatchError, WatchOptions};

/// Events arriving within this window are handled by one reload (writers touch cert and key separately).
const DEBOUNCE: Duration = Duration::from_millis(100);

/// Serves the current certificate; swapped atomically on successful reloads.
pub struct ReloadingCertResolver {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    /// Bytes of the last attempted (cert, key) pair, good or bad: avoids re-parsing and re-logging.
    last_attempt: Mutex<(Vec<u8>, Vec<u8>)>,
    reloads: AtomicU64,
    failures: AtomicU64,
}

impl std::fmt::Debug for ReloadingCertResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingCertResolver")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

/// Result of one reload check.
#[derive(Debug)]
pub enum ReloadOutcome {
    Unchanged,
    Reloaded,
    /// The new files did not load; the previous certificate is still served.
    Failed(CertError),
}

/// Counters for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReloadStats {
    pub reloads: u64,
    pub failures: u64,
}

fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|source| CertError::Read {
        path: path.to_owned(),
        source,
    })
}

impl ReloadingCertResolver {
    /// Load the pair once; failure here is fatal for the caller (nothing to serve yet).
    pub fn load(
        cert_path: impl Into<PathBuf>,
        key_path: impl Into<PathBuf>,
    ) -> Result<Arc<Self>, CertError> {
        let cert_path = cert_path.into();
        let key_path = key_path.into();
        let cert = read(&cert_path)?;
        let key = read(&key_path)?;
        let certified = parse_certified_key(&cert, &key, &cert_path, &key_path)?;
        Ok(Arc::new(Self {
            cert_path,
            key_path,
            current: RwLock::new(certified),
            last_attempt: Mutex::new((cert, key)),
            reloads: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }))
    }

    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    pub fn key_path(&self) -> &Path {
        &self.key_path
    }

    /// The pair served right now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn stats(&self) -> ReloadStats {
        ReloadStats {
            reloads: self.reloads.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }

    /// Re-read both files; swap in the new pair if the bytes changed and load. Logs the outcome.
    pub fn reload_if_changed(&self) -> ReloadOutcome {
        let outcome = self.try_reload();
        match &outcome {
            ReloadOutcome::Unchanged => {}
            ReloadOutcome::Reloaded => tracing::info!(
                cert = %self.cert_path.display(),
                key = %self.key_path.display(),
                "reloaded TLS certificate"
            ),
            ReloadOutcome::Failed(error) => tracing::warn!(
                %error,
                "TLS certificate reload failed; still serving the previous certificate"
            ),
        }
        outcome
    }

    fn try_reload(&self) -> ReloadOutcome {
        let pair = read(&self.cert_path).and_then(|cert| Ok((cert, read(&self.key_path)?)));
        let (cert, key) = match pair {
            Ok(pair) => pair,
            // A missing file mid-swap is transient: don't record it, the next event or poll retries.
            Err(error) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                return ReloadOutcome::Failed(error);
            }
        };
        let mut last = self
            .last_attempt
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if last.0 == cert && last.1 == key {
            return ReloadOutcome::Unchanged;
        }
        let parsed = parse_certified_key(&cert, &key, &self.cert_path, &self.key_path);
        *last = (cert, key);
        match parsed {
            Ok(certified) => {
                *self
                    .current
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = certified;
                self.reloads.fetch_add(1, Ordering::Relaxed);
                ReloadOutcome::Reloaded
            }
            Err(error) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                ReloadOutcome::Failed(error)
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// Watch the resolver's files: reload on any event in their directories and every `poll_interval`.
pub fn watch(
    resolver: Arc<ReloadingCertResolver>,
    poll_interval: Duration,
) -> Result<FileWatch, WatchError> {
    let options = WatchOptions::for_files(
        "tls-cert",
        [resolver.cert_path.as_path(), resolver.key_path.as_path()],
        DEBOUNCE,
        poll_interval,
    );
    watch_files(options, move || {
        resolver.reload_if_changed();
    })
}
