//! Follow files on disk: the one file-watching helper podcred's programs share (the webhook's TLS pair and
//! container-credentials file, the gateway's config files and mounted Secrets).
//!
//! Contract:
//! - Directories are watched, not files: a Kubernetes ConfigMap/Secret volume swaps its `..data` symlink, which
//!   shows up as events on other names in the directory, never on the file itself.
//! - Events are debounced: after the first event the thread waits [`WatchOptions::debounce`], swallows what
//!   arrived meanwhile, then calls `on_change` once (writers touch several files, editors write in steps).
//! - `on_change` also runs every [`WatchOptions::poll_interval`] without an event — the safety net for missed
//!   events, replaced directories and filesystems that deliver none. `on_change` must therefore be cheap when
//!   nothing changed (compare bytes before parsing).
//! - Access events (reads, including our own) never trigger a call.
//! - Everything runs on one named thread; `on_change` is never called concurrently with itself. Dropping the
//!   [`FileWatch`] stops the thread (after a running `on_change` returns).

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

/// What to watch and how often to look anyway.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// Names the watcher thread and log lines (e.g. `tls-cert`, `gateway-config`).
    pub name: String,
    /// Directories watched non-recursively (usually the parents of the followed files).
    pub dirs: Vec<PathBuf>,
    /// Directories watched recursively (e.g. a tree of mounted Secrets).
    pub recursive_dirs: Vec<PathBuf>,
    pub debounce: Duration,
    pub poll_interval: Duration,
}

impl WatchOptions {
    /// Watch the parent directories of `files` (deduplicated).
    pub fn for_files<'a>(
        name: impl Into<String>,
        files: impl IntoIterator<Item = &'a Path>,
        debounce: Duration,
        poll_interval: Duration,
    ) -> Self {
        let mut dirs: Vec<PathBuf> = files.into_iter().map(parent_dir).collect();
        dirs.sort();
        dirs.dedup();
        WatchOptions {
            name: name.into(),
            dirs,
            recursive_dirs: Vec::new(),
            debounce,
            poll_interval,
        }
    }
}

/// The directory holding `path` (`.` for a bare file name); absolute when the current directory is known, so a
/// later `chdir` does not move the watch.
pub fn parent_dir(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    match absolute.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// The watch could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot watch {}: {source}", path.display())]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error("cannot start the {name} watcher thread: {source}")]
    Thread {
        name: String,
        #[source]
        source: std::io::Error,
    },
}

enum Signal {
    FileEvent,
    Stop,
}

/// Keeps the watch alive; dropping it stops the watcher thread.
pub struct FileWatch {
    _watcher: notify::RecommendedWatcher,
    signals: mpsc::Sender<Signal>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for FileWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWatch").finish_non_exhaustive()
    }
}

impl Drop for FileWatch {
    fn drop(&mut self) {
        let _ = self.signals.send(Signal::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Start watching; `on_change` runs on the watcher thread after each debounced burst of events and on every
/// poll tick. The first call happens on the first event or tick, not now: load the files before calling this.
pub fn watch_files(
    options: WatchOptions,
    mut on_change: impl FnMut() + Send + 'static,
) -> Result<FileWatch, WatchError> {
    let (signals, receiver) = mpsc::channel();
    let events = signals.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if !event.kind.is_access() {
                let _ = events.send(Signal::FileEvent);
            }
        }
    })
    .map_err(|source| WatchError::Watch {
        path: options.dirs.first().cloned().unwrap_or_default(),
        source,
    })?;
    let watched = options
        .dirs
        .iter()
        .map(|dir| (dir, RecursiveMode::NonRecursive))
        .chain(
            options
                .recursive_dirs
                .iter()
                .map(|dir| (dir, RecursiveMode::Recursive)),
        );
    for (dir, mode) in watched {
        watcher
            .watch(dir, mode)
            .map_err(|source| WatchError::Watch {
                path: dir.clone(),
                source,
            })?;
        tracing::info!(watch = %options.name, dir = %dir.display(), "watching directory");
    }
    let WatchOptions {
        name,
        debounce,
        poll_interval,
        ..
    } = options;
    let thread = std::thread::Builder::new()
        .name(format!("{name}-watch"))
        .spawn(move || loop {
            match receiver.recv_timeout(poll_interval) {
                Ok(Signal::FileEvent) => {
                    std::thread::sleep(debounce);
                    while let Ok(signal) = receiver.try_recv() {
                        if matches!(signal, Signal::Stop) {
                            return;
                        }
                    }
                    on_change();
                }
                Err(RecvTimeoutError::Timeout) => on_change(),
                Ok(Signal::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            }
        })
        .map_err(|source| WatchError::Thread {
            name: name.clone(),
            source,
        })?;
    Ok(FileWatch {
        _watcher: watcher,
        signals,
        thread: Some(thread),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

    fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn counting_watch(options: WatchOptions) -> (FileWatch, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let watch = watch_files(options, move || {
            counter.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        (watch, calls)
    }

    #[test]
    fn an_event_in_the_directory_calls_back_once_per_burst() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.yaml");
        std::fs::write(&file, "a").unwrap();
        let options = WatchOptions::for_files(
            "test",
            [file.as_path()],
            Duration::from_millis(300),
            Duration::from_secs(3600),
        );
        let (_watch, calls) = counting_watch(options);
        // A burst of writes to other names (as a ConfigMap volume's symlink swap makes) is one call.
        for i in 0..5 {
            std::fs::write(dir.path().join(format!("..data_{i}")), "x").unwrap();
        }
        wait_until("the callback", || calls.load(Ordering::SeqCst) >= 1);
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one burst, one call");
    }

    #[test]
    fn without_events_the_poll_interval_still_calls_back() {
        let dir = tempfile::tempdir().unwrap();
        let options = WatchOptions {
            name: "poll".into(),
            dirs: vec![dir.path().to_owned()],
            recursive_dirs: Vec::new(),
            debounce: Duration::from_millis(10),
            poll_interval: Duration::from_millis(50),
        };
        let (_watch, calls) = counting_watch(options);
        wait_until("three polls", || calls.load(Ordering::SeqCst) >= 3);
    }

    #[test]
    fn recursive_dirs_see_nested_files_and_reads_do_not_count() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("ns").join("secret");
        std::fs::create_dir_all(&nested).unwrap();
        std::fs::write(nested.join("secretKey"), "old").unwrap();
        let options = WatchOptions {
            name: "secrets".into(),
            dirs: Vec::new(),
            recursive_dirs: vec![dir.path().to_owned()],
            debounce: Duration::from_millis(10),
            poll_interval: Duration::from_secs(3600),
        };
        let (_watch, calls) = counting_watch(options);
        for _ in 0..3 {
            let _ = std::fs::read(nested.join("secretKey")).unwrap();
        }
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(calls.load(Ordering::SeqCst), 0, "reads are not changes");
        std::fs::write(nested.join("secretKey"), "new").unwrap();
        wait_until("the nested change", || calls.load(Ordering::SeqCst) >= 1);
    }

    #[test]
    fn dropping_the_watch_stops_the_thread() {
        let dir = tempfile::tempdir().unwrap();
        let options = WatchOptions {
            name: "drop".into(),
            dirs: vec![dir.path().to_owned()],
            recursive_dirs: Vec::new(),
            debounce: Duration::from_millis(10),
            poll_interval: Duration::from_millis(20),
        };
        let (watch, calls) = counting_watch(options);
        wait_until("a poll", || calls.load(Ordering::SeqCst) >= 1);
        drop(watch);
        let after_drop = calls.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(calls.load(Ordering::SeqCst), after_drop);
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_it() {
        let options = WatchOptions {
            name: "missing".into(),
            dirs: vec![PathBuf::from("/nonexistent/podcred-watch")],
            recursive_dirs: Vec::new(),
            debounce: Duration::from_millis(10),
            poll_interval: Duration::from_secs(1),
        };
        let error = watch_files(options, || {}).unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent/podcred-watch"),
            "{error}"
        );
    }
}
