//! Nothing of a run outlives its test process, even when that process is SIGKILLed: the reaper keyed on the
//! run dir (tests/src/reaper.rs) kills the run's processes and containers, unmounts, deletes the bridge and
//! removes the run dir. Each test runs a child copy of this test binary that starts a control plane (or a
//! whole node with a running pod), kills it with SIGKILL, and checks what is left.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use integration::kube::ControlPlane;
use integration::node::{wait_for, Node};
use integration::reaper::mounts_under;
use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use kube::Api;

const CHILD_ENV: &str = "PODCRED_TEARDOWN_CHILD";

/// Runs `test` of this binary in a child process with [`CHILD_ENV`] set, reads the run dir (and bridge) it
/// prints, SIGKILLs it, and returns them.
fn run_child_and_kill_it(test: &str) -> (PathBuf, Option<String>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--include-ignored", "--nocapture"])
        .env(CHILD_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the child test process");
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (mut run_dir, mut bridge) = (None, None);
    for line in stdout.lines() {
        let line = line.unwrap();
        if let Some(dir) = line.strip_prefix("RUN_DIR=") {
            run_dir = Some(PathBuf::from(dir));
        }
        if let Some(name) = line.strip_prefix("BRIDGE=") {
            bridge = Some(name.to_string());
        }
        if line == "READY" {
            break;
        }
    }
    let run_dir = run_dir.expect("the child printed its run dir");
    assert!(
        !processes_mentioning(&run_dir).is_empty(),
        "the child runs nothing under {}",
        run_dir.display()
    );
    child.kill().expect("SIGKILL the child");
    let _ = child.wait();
    (run_dir, bridge)
}

fn processes_mentioning(dir: &Path) -> Vec<String> {
    let needle = dir.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            // The reaper itself names the run dir until it is done.
            (cmdline.contains(&needle) && !cmdline.contains("podcred-reaper")).then_some(cmdline)
        })
        .collect()
}

/// Polls (bounded) until nothing of the run is left.
fn assert_nothing_left(run_dir: &Path, bridge: Option<&str>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let processes = processes_mentioning(run_dir);
        let mounts = mounts_under(&run_dir.display().to_string());
        let bridge_left = bridge.is_some_and(|b| Path::new("/sys/class/net").join(b).exists());
        let links_left: Vec<PathBuf> = std::fs::read_dir("/var/log/containers")
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t.starts_with(run_dir)))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default();
        // Host dirs a node run creates when missing are gone again (or were there before, and are empty).
        let host_dirs_left: Vec<&str> = [
            "/var/lib/cni/results",
            "/var/log/containers",
            "/run/containerd/s",
        ]
        .into_iter()
        .filter(|d| std::fs::read_dir(d).is_ok_and(|mut entries| entries.next().is_some()))
        .collect();
        if processes.is_empty()
            && mounts.is_empty()
            && !bridge_left
            && links_left.is_empty()
            && host_dirs_left.is_empty()
            && !run_dir.exists()
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "left behind after SIGKILL: processes {processes:?}, mounts {mounts:?}, bridge {bridge_left}, \
             log links {links_left:?}, non-empty host dirs {host_dirs_left:?}, run dir exists {}",
            run_dir.exists()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "needs peers: run make test"]
fn a_control_plane_is_reaped_when_its_test_process_is_killed() {
    let (run_dir, _) = run_child_and_kill_it("child_holds_a_control_plane_until_killed");
    assert_nothing_left(&run_dir, None);
}

#[test]
#[ignore = "needs peers: run make test"]
fn a_node_with_a_running_pod_is_reaped_when_its_test_process_is_killed() {
    let (run_dir, bridge) = run_child_and_kill_it("child_holds_a_node_until_killed");
    assert!(bridge.is_some());
    assert_nothing_left(&run_dir, bridge.as_deref());
}

/// The child of `a_control_plane_is_reaped_…` (a no-op unless started by it).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs peers: run make test"]
async fn child_holds_a_control_plane_until_killed() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let plane = ControlPlane::start().await;
    println!("RUN_DIR={}\nREADY", plane.dir().display());
    tokio::time::sleep(Duration::from_secs(300)).await;
    panic!("not killed within 300 s");
}

/// The child of `a_node_with_a_running_pod_…` (a no-op unless started by it): a node running one pod (the
/// pause image as the app), so there are containers, mounts, a network namespace and a veth to clean up.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs peers: run make test"]
async fn child_holds_a_node_until_killed() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let node = Node::start(&[]).await;
    println!(
        "RUN_DIR={}\nBRIDGE={}",
        node.run_dir().display(),
        node.bridge()
    );
    let pods: Api<Pod> = Api::namespaced(node.client().await, "default");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "sleeper"},
        "spec": {"containers": [{"name": "sleeper", "image": "registry.k8s.io/pause:3.10", "imagePullPolicy": "Never"}],
                 "terminationGracePeriodSeconds": 1}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    wait_for(Duration::from_secs(60), "pod sleeper running", || async {
        let p = pods.get("sleeper").await.map_err(|e| e.to_string())?;
        match p.status.and_then(|s| s.phase) {
            Some(phase) if phase == "Running" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    println!("READY");
    tokio::time::sleep(Duration::from_secs(300)).await;
    panic!("not killed within 300 s");
}
