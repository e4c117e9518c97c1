//! Config reloads: the config files' directories are watched (so ConfigMap volume symlink swaps are seen), and
//! so is `--secrets-dir`, with the shared helper of `certs::watch` (debounced events plus a poll as the safety
//! net). The files are re-read, and the configuration recompiled, only when their contents changed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use certs::watch::{watch_files, FileWatch, WatchError, WatchOptions};

use crate::state::Gateway;

/// Editors and the kubelet write in several steps.
const DEBOUNCE: Duration = Duration::from_millis(200);
/// Missed events (replaced directories, filesystems without inotify) are caught this often.
const POLL_INTERVAL: Duration = Duration::from_secs(5);

/// Watches the config files (through their directories) and `--secrets-dir`, and reloads when their bytes change.
/// Must be called inside the gateway's Tokio runtime: the reloads run there, one at a time.
pub fn watch_config(gateway: Arc<Gateway>) -> Result<FileWatch, WatchError> {
    let settings = &gateway.settings;
    let mut options = WatchOptions::for_files(
        "gateway-config",
        settings.config_paths.iter().map(PathBuf::as_path),
        DEBOUNCE,
        POLL_INTERVAL,
    );
    // Mounted Secrets (`--secrets-dir`) rotate too.
    options
        .recursive_dirs
        .extend(settings.load_options.secrets_dir.clone());
    let (changed_tx, mut changed_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let paths = settings.config_paths.clone();
    let secrets_dir = settings.load_options.secrets_dir.clone();
    let mut last = fingerprint(&paths, secrets_dir.as_deref());
    let watch = watch_files(options, move || {
        let now = fingerprint(&paths, secrets_dir.as_deref());
        if now != last {
            last = now;
            let _ = changed_tx.send(());
        }
    })?;
    tokio::spawn(async move {
        while changed_rx.recv().await.is_some() {
            // Changes seen while the previous reload ran are covered by this one: it reads the files anew.
            while changed_rx.try_recv().is_ok() {}
            let _ = gateway.reload().await;
        }
    });
    Ok(watch)
}

/// Contents of the config files (and of the Secret files they may use), to skip reloads when nothing changed.
fn fingerprint(paths: &[PathBuf], secrets_dir: Option<&std::path::Path>) -> Vec<Option<Vec<u8>>> {
    let mut contents: Vec<Option<Vec<u8>>> = paths.iter().map(|p| std::fs::read(p).ok()).collect();
    if let Some(dir) = secrets_dir {
        let mut secrets: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|entry| {
                ["accessKey", "secretKey", "sessionToken"].map(|k| entry.path().join(k))
            })
            .collect();
        secrets.sort();
        contents.extend(secrets.iter().map(|p| std::fs::read(p).ok()));
    }
    contents
}
