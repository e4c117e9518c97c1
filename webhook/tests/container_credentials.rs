//! The container-credentials config file is followed on disk, including a ConfigMap volume's `..data`
//! symlink swap (intentional improvement: upstream only reacted to events on the exact path).

use std::path::Path;
use std::time::{Duration, Instant};

use webhook::container_credentials::{watch, ContainerCredentials};

fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn identities(pairs: &[(&str, &str)]) -> String {
    let items: Vec<String> = pairs
        .iter()
        .map(|(ns, sa)| format!(r#"{{"namespace":"{ns}","serviceAccount":"{sa}"}}"#))
        .collect();
    format!(r#"{{"identities":[{}]}}"#, items.join(","))
}

/// The kubelet's ConfigMap-volume update: new timestamped dir, `..data_tmp` → rename over `..data`.
fn kubelet_swap(dir: &Path, generation: &str, content: &str) {
    let target = dir.join(generation);
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("config.json"), content).unwrap();
    std::os::unix::fs::symlink(generation, dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
}

#[test]
fn config_map_volume_symlink_swap_is_followed() {
    let dir = tempfile::tempdir().unwrap();
    kubelet_swap(dir.path(), "..2026_01", &identities(&[("a", "x")]));
    std::os::unix::fs::symlink("..data/config.json", dir.path().join("config.json")).unwrap();
    let cc = ContainerCredentials::new();
    // Hour-long poll: only directory events can trigger the reload.
    let _watch = watch(
        cc.clone(),
        dir.path().join("config.json"),
        Duration::from_secs(3600),
    )
    .unwrap();
    assert!(cc.contains("a", "x"), "loaded at start");

    kubelet_swap(dir.path(), "..2026_02", &identities(&[("b", "y")]));
    std::fs::remove_dir_all(dir.path().join("..2026_01")).unwrap();
    wait_until("swapped content", || cc.contains("b", "y"));
    assert!(!cc.contains("a", "x"));

    // Malformed update: once the watcher has read (and rejected) it, the last good set is still there.
    let rejected = cc.rejected_loads();
    kubelet_swap(dir.path(), "..2026_03", "{broken");
    wait_until("malformed file read", || cc.rejected_loads() > rejected);
    assert!(cc.contains("b", "y"), "last good set kept");

    // Empty file clears.
    kubelet_swap(dir.path(), "..2026_04", "");
    wait_until("cleared", || cc.is_empty());
}

#[test]
fn direct_rewrite_create_and_removal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pod-identity.json");
    let cc = ContainerCredentials::new();
    let _watch = watch(cc.clone(), path.clone(), Duration::from_secs(3600)).unwrap();
    assert!(cc.is_empty(), "missing file = no identities");
    std::fs::write(&path, identities(&[("ns", "sa")])).unwrap();
    wait_until("created", || cc.contains("ns", "sa"));
    std::fs::write(&path, identities(&[("ns", "sa"), ("ns", "other")])).unwrap();
    wait_until("rewritten", || cc.len() == 2);
    std::fs::remove_file(&path).unwrap();
    wait_until("removed", || cc.is_empty());
}

#[test]
fn poll_catches_changes_when_no_event_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let watched = dir.path().join("watched");
    std::fs::create_dir(&watched).unwrap();
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    // The watched path is a symlink into a directory the watch does not cover.
    std::os::unix::fs::symlink(elsewhere.join("c.json"), watched.join("c.json")).unwrap();
    let cc = ContainerCredentials::new();
    let _watch = watch(
        cc.clone(),
        watched.join("c.json"),
        Duration::from_millis(200),
    )
    .unwrap();
    std::fs::write(elsewhere.join("c.json"), identities(&[("p", "q")])).unwrap();
    wait_until("polled", || cc.contains("p", "q"));
}
