//! Config reloads: the config files' directories are watched (so ConfigMap volume symlink swaps are seen), and
//! so is `--secrets-dir`; a change is debounced, and the files are re-read only when their contents changed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::state::Gateway;

/// Watches the config files (through their directories, so ConfigMap symlink swaps are seen) and reloads.
pub fn watch_config(gateway: Arc<Gateway>) -> notify::Result<notify::RecommendedWatcher> {
    use notify::Watcher as _;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if !event.kind.is_access() {
                let _ = tx.send(());
            }
        }
    })?;
    let mut dirs: Vec<PathBuf> = gateway
        .settings
        .config_paths
        .iter()
        .map(|p| {
            let absolute = std::path::absolute(p).unwrap_or_else(|_| p.clone());
            absolute
                .parent()
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("."))
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    for dir in &dirs {
        watcher.watch(dir, notify::RecursiveMode::NonRecursive)?;
    }
    // Mounted Secrets (`--secrets-dir`) rotate too.
    if let Some(dir) = &gateway.settings.load_options.secrets_dir {
        watcher.watch(dir, notify::RecursiveMode::Recursive)?;
    }
    tokio::spawn(async move {
        let mut last = fingerprint(
            &gateway.settings.config_paths,
            gateway.settings.load_options.secrets_dir.as_deref(),
        );
        while rx.recv().await.is_some() {
            // Debounce: editors and kubelet write in several steps.
            tokio::time::sleep(Duration::from_millis(200)).await;
            while rx.try_recv().is_ok() {}
            let now = fingerprint(
                &gateway.settings.config_paths,
                gateway.settings.load_options.secrets_dir.as_deref(),
            );
            if now == last {
                continue;
            }
            last = now;
            let _ = gateway.reload().await;
        }
    });
    Ok(watcher)
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
