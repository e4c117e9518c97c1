//! Teardown keyed on a run dir, done by a separate process so that it also happens when the test process is
//! killed (SIGKILL, a panic that aborts, a cancelled CI job).
//!
//! Contract:
//! - Everything a harness starts for one run carries the run dir in its command line (data dirs, certificate
//!   and config paths, the containerd socket), so "the processes of this run" = processes whose
//!   `/proc/<pid>/cmdline` contains the run dir. Containers of a node are found through runc's state under
//!   `<run dir>/runc`; mounts through `/proc/self/mounts`.
//! - [`Reaper::watch`] starts `podcred-reaper <run dir> [--bridge NAME] [--cni-network NAME]` in its own process
//!   group with a pipe on its stdin; the test process holds the write end. When that end closes — on drop, or
//!   when the kernel closes it because the test process died — the reaper runs [`teardown`] and exits.
//! - [`teardown`] is idempotent: kill the run's processes, kill and delete its containers, unmount everything
//!   under the run dir (deepest first), delete the bridge, remove the few host files the kubelet, libcni and
//!   the containerd shims write outside the run dir, and finally the run dir itself.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// Options of one teardown: what besides the run dir belongs to the run.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    pub run_dir: PathBuf,
    /// Linux bridge created by the CNI bridge plugin for this run.
    pub bridge: Option<String>,
    /// CNI network name (libcni caches results as `/var/lib/cni/results/<network>-<sandbox id>-<ifname>`).
    pub cni_network: Option<String>,
    /// The run created `/var/lib/kubelet` (the kubelet's device-plugin socket ignores `--root-dir`).
    pub remove_var_lib_kubelet: bool,
    /// Leave the (unmounted) run dir for inspection (`PODCRED_KEEP_TMP`).
    pub keep_run_dir: bool,
    /// Host dirs the run's kubelet, libcni or shims create when missing (`/var/lib/cni`, …): removed at the
    /// end if nothing but empty dirs is left in them.
    pub created_host_dirs: Vec<PathBuf>,
}

impl Scope {
    fn args(&self) -> Vec<String> {
        let mut args = vec![self.run_dir.display().to_string()];
        if let Some(bridge) = &self.bridge {
            args.extend(["--bridge".into(), bridge.clone()]);
        }
        if let Some(network) = &self.cni_network {
            args.extend(["--cni-network".into(), network.clone()]);
        }
        if self.remove_var_lib_kubelet {
            args.push("--remove-var-lib-kubelet".into());
        }
        if self.keep_run_dir {
            args.push("--keep-run-dir".into());
        }
        for dir in &self.created_host_dirs {
            args.extend(["--created-host-dir".into(), dir.display().to_string()]);
        }
        args
    }

    /// Parses the reaper's command line (the inverse of `args`).
    pub fn from_args(mut args: impl Iterator<Item = String>) -> Result<Self, String> {
        let run_dir = args.next().ok_or(
            "usage: podcred-reaper RUN_DIR [--bridge NAME] [--cni-network NAME] [--remove-var-lib-kubelet] \
             [--keep-run-dir] [--created-host-dir DIR]...",
        )?;
        let mut scope = Scope {
            run_dir: PathBuf::from(run_dir),
            ..Scope::default()
        };
        while let Some(flag) = args.next() {
            match flag.as_str() {
                "--bridge" => scope.bridge = Some(args.next().ok_or("--bridge needs a value")?),
                "--cni-network" => {
                    scope.cni_network = Some(args.next().ok_or("--cni-network needs a value")?)
                }
                "--remove-var-lib-kubelet" => scope.remove_var_lib_kubelet = true,
                "--keep-run-dir" => scope.keep_run_dir = true,
                "--created-host-dir" => scope.created_host_dirs.push(PathBuf::from(
                    args.next().ok_or("--created-host-dir needs a value")?,
                )),
                other => return Err(format!("unknown argument {other}")),
            }
        }
        if !scope.run_dir.is_absolute() || scope.run_dir.components().count() < 3 {
            return Err(format!(
                "refusing run dir {}: must be an absolute path at least two levels deep",
                scope.run_dir.display()
            ));
        }
        Ok(scope)
    }
}

/// The watching reaper process of one run; dropping it tears the run down (see module docs).
#[derive(Debug)]
pub struct Reaper {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Reaper {
    /// Starts the reaper for `scope` (the `podcred-reaper` binary of this crate, built by `make build`).
    pub fn watch(scope: &Scope) -> Self {
        let bin = crate::workspace_bin("podcred-reaper");
        let mut child = Command::new(bin)
            .args(scope.args())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            // Its own process group: a Ctrl-C to the test's terminal must not kill the reaper before it works.
            .process_group(0)
            .spawn()
            .expect("start podcred-reaper");
        let stdin = child.stdin.take();
        Self { child, stdin }
    }

    /// Tears the run down now and waits (bounded) for the reaper to finish.
    pub fn reap(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.flush();
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("podcred-reaper did not finish within 120 s");
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        self.reap();
    }
}

/// Idempotent teardown of one run (see module docs). Returns what it did, for the reaper's log.
pub fn teardown(scope: &Scope) -> Vec<String> {
    let mut done = Vec::new();
    let run_dir = scope.run_dir.as_path();
    let run_text = run_dir.display().to_string();

    // 1. The run's processes (kubelet first would be nicer, but SIGKILL to all is immediate and nothing of
    //    ours restarts anything once containerd and the kubelet are gone).
    let killed = kill_processes_mentioning(&run_text);
    if !killed.is_empty() {
        done.push(format!("killed {} processes", killed.len()));
    }
    // 2. Containers: runc's state survives its shim; kill the container's processes, then delete it.
    let mut container_ids = BTreeSet::new();
    for runc_root in subdirs(&run_dir.join("runc")) {
        for id in subdirs(&runc_root) {
            let Some(id) = id.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                continue;
            };
            let root = runc_root.display().to_string();
            let _ =
                quiet(Command::new("runc").args(["--root", &root, "kill", "--all", &id, "KILL"]));
            let _ = quiet(Command::new("runc").args(["--root", &root, "delete", "--force", &id]));
            container_ids.insert((runc_root.clone(), id));
        }
    }
    if !container_ids.is_empty() {
        done.push(format!("killed {} containers", container_ids.len()));
    }
    wait_gone(&killed, Duration::from_secs(10));
    // The shims' sockets: /run/containerd/s/<sha256 of "<containerd address>/<namespace>/<id>">.
    let address = run_dir.join("containerd.sock").display().to_string();
    for (runc_root, id) in &container_ids {
        if let Some(namespace) = runc_root.file_name().and_then(|n| n.to_str()) {
            let digest = sha256_hex(format!("{address}/{namespace}/{id}").as_bytes());
            let _ = std::fs::remove_file(Path::new("/run/containerd/s").join(digest));
        }
    }
    // 3. Mounts under the run dir, deepest first (several passes: the kubelet bind-mounts its root dir onto
    //    itself, so one path can be mounted twice).
    for _ in 0..3 {
        let mounts = mounts_under(&run_text);
        if mounts.is_empty() {
            break;
        }
        for mount in mounts.iter().rev() {
            if quiet(Command::new("umount").arg(mount)).is_err() {
                let _ = quiet(Command::new("umount").args(["-l", mount]));
            }
        }
        done.push(format!("unmounted {} mounts", mounts.len()));
    }
    // 4. Network and the host files written outside the run dir.
    if let Some(bridge) = &scope.bridge {
        if Path::new("/sys/class/net").join(bridge).exists() {
            let _ = quiet(Command::new("ip").args(["link", "delete", bridge]));
            done.push(format!("deleted bridge {bridge}"));
        }
    }
    if let Some(network) = &scope.cni_network {
        remove_matching(Path::new("/var/lib/cni/results"), |name| {
            name.starts_with(&format!("{network}-"))
        });
    }
    for (_, id) in &container_ids {
        remove_matching(Path::new("/var/lib/cni/results"), |name| {
            name.starts_with("cni-loopback-") && name.contains(id.as_str())
        });
    }
    // /var/log/containers/<pod>_<ns>_<container>-<id>.log links into the run's pod log dir.
    if let Ok(entries) = std::fs::read_dir("/var/log/containers") {
        for entry in entries.flatten() {
            if std::fs::read_link(entry.path()).is_ok_and(|t| t.starts_with(run_dir)) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    if scope.remove_var_lib_kubelet {
        let _ = std::fs::remove_dir_all("/var/lib/kubelet");
    }
    for dir in &scope.created_host_dirs {
        remove_empty_tree(dir);
    }
    // 5. The run dir itself.
    if !scope.keep_run_dir && run_dir.exists() && mounts_under(&run_text).is_empty() {
        let _ = std::fs::remove_dir_all(run_dir);
        done.push(format!("removed {run_text}"));
    }
    done
}

/// PIDs whose command line contains `needle` (other than this process), after SIGKILL.
fn kill_processes_mentioning(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    let mut killed = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return killed;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            let _ = quiet(Command::new("kill").args(["-KILL", &pid.to_string()]));
            killed.push(pid);
        }
    }
    killed
}

fn wait_gone(pids: &[u32], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let alive = pids.iter().any(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                // A zombie ("Z") has exited; its parent (possibly gone too) reaps it.
                .is_ok_and(|stat| {
                    !stat
                        .rsplit(')')
                        .next()
                        .unwrap_or("")
                        .trim_start()
                        .starts_with('Z')
                })
        });
        if !alive {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Mount points under `dir`, sorted (so reversed = deepest first).
pub fn mounts_under(dir: &str) -> Vec<String> {
    let prefix = format!("{}/", dir.trim_end_matches('/'));
    let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1))
        // /proc/self/mounts escapes spaces as \040; our run dirs have none.
        .filter(|point| *point == dir || point.starts_with(&prefix))
        .map(str::to_owned)
        .collect();
    mounts.sort();
    mounts
}

/// Removes `dir` if it holds nothing but (nested) empty directories.
fn remove_empty_tree(dir: &Path) {
    for sub in subdirs(dir) {
        remove_empty_tree(&sub);
    }
    let _ = std::fs::remove_dir(dir);
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default()
}

fn remove_matching(dir: &Path, matches: impl Fn(&str) -> bool) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_str().is_some_and(&matches) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

fn quiet(cmd: &mut Command) -> std::io::Result<()> {
    let status = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("{cmd:?}: {status}")))
    }
}

fn sha256_hex(data: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    digest.as_ref().iter().fold(String::new(), |mut hex, byte| {
        use std::fmt::Write as _;
        let _ = write!(hex, "{byte:02x}");
        hex
    })
}
