//! A real single-node Kubernetes for end-to-end tests: the [`ControlPlane`] (etcd + kube-apiserver) plus
//! containerd (Debian's, with runc and the CNI plugins), and the kubelet, kube-controller-manager and
//! kube-scheduler of the same pinned Kubernetes version, running pods from locally imported image archives.
//!
//! Contract:
//! - Peers come from `tests/peers/install-kube.sh` and `tests/peers/install-node.sh` (a missing one panics
//!   naming the installer). Needs root (containerd, runc, mounts, a bridge).
//! - Per run: the control plane's temp dir is the run dir (containerd root/state/socket, runc state, kubelet
//!   root, pod logs, CNI config and IPAM, certificates, logs); every port is picked free; the bridge
//!   `pcn<6 hex>` with its own /24 of 10.244.0.0/16 and the CNI network `podcred-<6 hex>`.
//! - Networking: pods reach the host at [`Node::host_ip`] (the bridge's gateway address). There is no
//!   kube-proxy, so Service IPs do not route: the API server runs with `--enable-aggregator-routing=true`
//!   (it calls webhooks at their endpoint IPs, which the host reaches through the bridge), and pods that
//!   need the API server get [`Node::in_cluster_env`] (`host_ip:<port>`, forwarded to 127.0.0.1).
//! - Waits are bounded polls. Teardown: [`Node::shutdown`] deletes every pod through the API and waits until
//!   the kubelet has stopped them; then — and on drop, on panic, or when the test process is killed — the
//!   run's reaper (`reaper.rs`) kills what is left, unmounts, deletes the bridge and the host files.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Node as KubeNode, Pod, ServiceAccount};
use kube::api::{DeleteParams, DynamicObject, ListParams, PostParams};
use kube::core::GroupVersionKind;
use kube::{Api, Client};

use crate::kube::{log_file, peer_bin, tail, write, ControlPlane, ControlPlaneOptions};
use crate::reaper::{Reaper, Scope};
use crate::{cache_dir, free_port, require_peer, ChildGuard};

/// The node's name: the API server reaches the kubelet (logs, exec) at `localhost`.
pub const NODE_NAME: &str = "localhost";
/// The sandbox image containerd asks for; `install-node.sh` builds it.
const PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.10";
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// A running single-node cluster (see module docs).
pub struct Node {
    /// Dropped first (see `Drop`): tears everything of the run down.
    reaper: Option<Reaper>,
    plane: ControlPlane,
    dir: PathBuf,
    host_ip: Ipv4Addr,
    bridge: String,
    api_forward_port: u16,
    forwarder_stop: Arc<AtomicBool>,
    containerd: Option<ChildGuard>,
    kubelet: Option<ChildGuard>,
    controller_manager: Option<ChildGuard>,
    scheduler: Option<ChildGuard>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("dir", &self.dir)
            .field("host_ip", &self.host_ip)
            .field("bridge", &self.bridge)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Starts the whole node and imports `images` (archives such as `target/images/*.tar`) into containerd.
    /// Returns once the node is Ready and the `default` ServiceAccount exists.
    pub async fn start(images: &[PathBuf]) -> Self {
        let started = Instant::now();
        for bin in ["kubelet", "kube-controller-manager", "kube-scheduler"] {
            peer_bin(bin, "install-node.sh");
        }
        let pause = require_peer(cache_dir().join("node/images/pause.tar"), "install-node.sh");
        for tool in ["containerd", "ctr", "runc", "ip", "/usr/lib/cni/bridge"] {
            let found = Path::new(tool).exists()
                || Command::new("sh")
                    .args(["-c", &format!("command -v {tool}")])
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
            assert!(
                found,
                "{tool} missing: install it with `bash tests/peers/install-node.sh` or run `make test`"
            );
        }
        let octet = free_pod_subnet();
        let host_ip = Ipv4Addr::new(10, 244, octet, 1);
        let plane = ControlPlane::start_with(ControlPlaneOptions {
            extra_apiserver_args: vec![
                "--authorization-mode=Node".into(),
                "--enable-admission-plugins=NodeRestriction".into(),
                // Node name `localhost`: logs and exec go to the kubelet on 127.0.0.1.
                "--kubelet-preferred-address-types=Hostname,InternalIP".into(),
                // No kube-proxy: call webhooks (and aggregated APIs) at the Service's endpoint IPs.
                "--enable-aggregator-routing=true".into(),
            ],
            extra_ips: vec![IpAddr::V4(host_ip)],
        })
        .await;
        let run_dir = plane.dir().to_path_buf();
        let tag = run_tag(&run_dir);
        let bridge = format!("pcn{tag}");
        let network = format!("podcred-{tag}");
        let reaper = Reaper::watch(&Scope {
            run_dir: run_dir.clone(),
            bridge: Some(bridge.clone()),
            cni_network: Some(network.clone()),
            remove_var_lib_kubelet: !Path::new("/var/lib/kubelet").exists(),
            keep_run_dir: std::env::var_os("PODCRED_KEEP_TMP").is_some(),
            // Written regardless of configuration: libcni's result cache, the kubelet's log links, the
            // shims' sockets.
            created_host_dirs: ["/var/lib/cni", "/var/log/containers", "/run/containerd"]
                .iter()
                .map(PathBuf::from)
                .filter(|dir| !dir.exists())
                .collect(),
        });
        let dir = run_dir.join("node");
        for sub in ["logs", "cni/net.d", "kubelet", "pod-logs"] {
            std::fs::create_dir_all(dir.join(sub)).expect("create node dirs");
        }

        // The bridge exists before the first pod so the API forwarder can bind its address; the CNI bridge
        // plugin adopts it (same name, gateway address already set).
        run("ip", &["link", "add", "name", &bridge, "type", "bridge"]);
        run(
            "ip",
            &["addr", "add", &format!("{host_ip}/24"), "dev", &bridge],
        );
        run("ip", &["link", "set", &bridge, "up"]);
        let forwarder_stop = Arc::new(AtomicBool::new(false));
        let api_forward_port = forward_tcp(
            host_ip,
            SocketAddr::from(([127, 0, 0, 1], plane.api_port())),
            forwarder_stop.clone(),
        );

        let mut node = Self {
            reaper: Some(reaper),
            plane,
            dir,
            host_ip,
            bridge,
            api_forward_port,
            forwarder_stop,
            containerd: None,
            kubelet: None,
            controller_manager: None,
            scheduler: None,
        };
        node.start_containerd(octet, &network);
        node.import_image(&pause);
        for image in images {
            node.import_image(image);
        }
        node.start_kubelet();
        node.wait_node_ready().await;
        node.start_controllers();
        node.wait_default_service_account().await;
        eprintln!(
            "node up in {:.1} s (run dir {}, bridge {}, host address {})",
            started.elapsed().as_secs_f64(),
            node.plane.dir().display(),
            node.bridge,
            node.host_ip
        );
        node
    }

    pub fn plane(&self) -> &ControlPlane {
        &self.plane
    }

    pub async fn client(&self) -> Client {
        self.plane.client().await
    }

    /// The host's address on the pod network: servers on the host that pods call listen here.
    pub fn host_ip(&self) -> Ipv4Addr {
        self.host_ip
    }

    /// The run dir (everything of this run lives below it).
    pub fn run_dir(&self) -> &Path {
        self.plane.dir()
    }

    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// `KUBERNETES_SERVICE_HOST`/`_PORT` for pods that talk to the API server (the Service IP does not route
    /// without kube-proxy). The API server's certificate includes [`Node::host_ip`].
    pub fn in_cluster_env(&self) -> [(&'static str, String); 2] {
        [
            ("KUBERNETES_SERVICE_HOST", self.host_ip.to_string()),
            ("KUBERNETES_SERVICE_PORT", self.api_forward_port.to_string()),
        ]
    }

    fn containerd_socket(&self) -> PathBuf {
        self.plane.dir().join("containerd.sock")
    }

    /// `ctr` against this run's containerd, in the CRI namespace. Panics with stderr on failure.
    pub fn ctr(&self, args: &[&str]) -> String {
        let out = Command::new("ctr")
            .arg("-a")
            .arg(self.containerd_socket())
            .args(["-n", "k8s.io"])
            .args(args)
            .output()
            .expect("run ctr");
        assert!(
            out.status.success(),
            "ctr {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `ctr images import` of one archive (the test that the archive format is accepted).
    pub fn import_image(&self, archive: &Path) {
        self.ctr(&["images", "import", &archive.display().to_string()]);
    }

    /// Runs `helm` with this cluster's admin kubeconfig; returns stdout, panics with stderr on failure.
    pub fn helm(&self, args: &[&str]) -> String {
        let helm = peer_bin("helm", "install-kube.sh");
        let out = Command::new(helm)
            .args(args)
            .arg("--kubeconfig")
            .arg(self.plane.admin_kubeconfig())
            .output()
            .expect("run helm");
        assert!(
            out.status.success(),
            "helm {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The last lines of one component's log (kubelet, containerd, …), for assertion messages.
    pub fn component_log(&self, name: &str, lines: usize) -> String {
        tail(&self.dir.join("logs").join(format!("{name}.log")), lines)
    }

    fn start_containerd(&mut self, octet: u8, network: &str) {
        let r = self.plane.dir().display().to_string();
        let config = format!(
            r#"version = 2
root = "{r}/containerd/root"
state = "{r}/containerd/state"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "{r}/containerd.sock"
[ttrpc]
  address = "{r}/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  netns_mounts_under_state_dir = true
  # Without CAP_SYS_RESOURCE runc cannot lower oom_score_adj (sandboxes ask for -998): clamp to ours.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{r}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{r}/node/cni/net.d"
"#
        );
        write(self.dir.join("containerd.toml"), &config);
        let conflist = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": network,
            "plugins": [{
                "type": "bridge", "bridge": self.bridge, "isGateway": true, "ipMasq": false, "hairpinMode": true,
                "ipam": {"type": "host-local", "dataDir": format!("{r}/node/cni/ipam"),
                         "ranges": [[{"subnet": format!("10.244.{octet}.0/24"), "gateway": self.host_ip.to_string()}]]}
            }]
        });
        write(
            self.dir.join("cni/net.d/10-podcred.conflist"),
            &conflist.to_string(),
        );
        let mut cmd = Command::new("containerd");
        cmd.arg("--config").arg(self.dir.join("containerd.toml"));
        self.containerd = Some(self.spawn("containerd", &mut cmd));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = Command::new("ctr")
                .arg("-a")
                .arg(self.containerd_socket())
                .arg("version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                break;
            }
            self.assert_alive("containerd");
            assert!(
                Instant::now() < deadline,
                "containerd not answering within 30 s:\n{}",
                self.component_log("containerd", 30)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn start_kubelet(&mut self) {
        let r = self.plane.dir().display().to_string();
        let (port, healthz_port) = (free_port(), free_port());
        let config = format!(
            r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: {port}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {healthz_port}
authentication: {{anonymous: {{enabled: true}}, webhook: {{enabled: false}}}}
authorization: {{mode: AlwaysAllow}}
containerRuntimeEndpoint: unix://{r}/containerd.sock
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
failCgroupV1: false
podLogsDir: {r}/node/pod-logs
volumePluginDir: {r}/node/kubelet/volume-plugins
evictionHard: {{memory.available: "1Mi", nodefs.available: "1%", imagefs.available: "1%"}}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
syncFrequency: 5s
fileCheckFrequency: 5s
"#
        );
        write(self.dir.join("kubelet.yaml"), &config);
        let kubeconfig = self
            .plane
            .user_kubeconfig(&format!("system:node:{NODE_NAME}"), &["system:nodes"]);
        let mut cmd = Command::new(peer_bin("kubelet", "install-node.sh"));
        // PATH without /usr/sbin: no iptables, so the kubelet adds no KUBE-* chains to the host.
        cmd.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .arg(format!(
                "--config={}",
                self.dir.join("kubelet.yaml").display()
            ))
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg(format!("--root-dir={r}/node/kubelet"))
            .arg(format!("--cert-dir={r}/node/kubelet/pki"))
            .arg(format!("--hostname-override={NODE_NAME}"))
            .arg("--v=1");
        self.kubelet = Some(self.spawn("kubelet", &mut cmd));
    }

    fn start_controllers(&mut self) {
        let d = self.plane.dir().to_path_buf();
        let kcm_kubeconfig = self
            .plane
            .user_kubeconfig("system:kube-controller-manager", &[]);
        let mut cmd = Command::new(peer_bin("kube-controller-manager", "install-node.sh"));
        cmd.args([
            format!("--kubeconfig={}", kcm_kubeconfig.display()),
            format!("--authentication-kubeconfig={}", kcm_kubeconfig.display()),
            format!("--authorization-kubeconfig={}", kcm_kubeconfig.display()),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={}", free_port()),
            "--leader-elect=false".into(),
            "--use-service-account-credentials=true".into(),
            format!(
                "--service-account-private-key-file={}",
                d.join("sa.key").display()
            ),
            format!("--root-ca-file={}", d.join("ca.crt").display()),
            format!("--cert-dir={}", self.dir.join("kcm-pki").display()),
            "--v=1".into(),
        ]);
        self.controller_manager = Some(self.spawn("kube-controller-manager", &mut cmd));
        let scheduler_kubeconfig = self.plane.user_kubeconfig("system:kube-scheduler", &[]);
        let mut cmd = Command::new(peer_bin("kube-scheduler", "install-node.sh"));
        cmd.args([
            format!("--kubeconfig={}", scheduler_kubeconfig.display()),
            format!(
                "--authentication-kubeconfig={}",
                scheduler_kubeconfig.display()
            ),
            format!(
                "--authorization-kubeconfig={}",
                scheduler_kubeconfig.display()
            ),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={}", free_port()),
            "--leader-elect=false".into(),
            format!("--cert-dir={}", self.dir.join("scheduler-pki").display()),
            "--v=1".into(),
        ]);
        self.scheduler = Some(self.spawn("kube-scheduler", &mut cmd));
    }

    fn spawn(&self, name: &str, cmd: &mut Command) -> ChildGuard {
        let logs = self.dir.join("logs");
        cmd.stdin(Stdio::null())
            .stdout(log_file(&logs, &format!("{name}.log")))
            .stderr(log_file(&logs, &format!("{name}.log")));
        ChildGuard::spawn(name, cmd)
    }

    fn assert_alive(&mut self, name: &str) {
        let guard = match name {
            "containerd" => self.containerd.as_mut(),
            "kubelet" => self.kubelet.as_mut(),
            "kube-controller-manager" => self.controller_manager.as_mut(),
            _ => self.scheduler.as_mut(),
        };
        if let Some(guard) = guard {
            if let Ok(Some(status)) = guard.child_mut().try_wait() {
                panic!(
                    "{name} exited with {status}; log tail:\n{}",
                    self.component_log(name, 40)
                );
            }
        }
    }

    async fn wait_node_ready(&mut self) {
        let nodes: Api<KubeNode> = Api::all(self.client().await);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let ready = nodes
                .get_opt(NODE_NAME)
                .await
                .ok()
                .flatten()
                .is_some_and(|n| {
                    n.status
                        .and_then(|s| s.conditions)
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                });
            if ready {
                return;
            }
            self.assert_alive("kubelet");
            self.assert_alive("containerd");
            assert!(
                Instant::now() < deadline,
                "node {NODE_NAME} not Ready within {START_TIMEOUT:?}; kubelet log:\n{}",
                self.component_log("kubelet", 40)
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn wait_default_service_account(&mut self) {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client().await, "default");
        let deadline = Instant::now() + START_TIMEOUT;
        while accounts.get_opt("default").await.ok().flatten().is_none() {
            self.assert_alive("kube-controller-manager");
            self.assert_alive("kube-scheduler");
            assert!(
                Instant::now() < deadline,
                "no default ServiceAccount within {START_TIMEOUT:?}; controller-manager log:\n{}",
                self.component_log("kube-controller-manager", 40)
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Deletes every pod (and the workloads that would re-create them) in the test namespaces through the
    /// API, and waits (bounded) until containerd runs no task: the kubelet has torn the pods down itself
    /// (CNI DEL, unmounts). Whatever is left is the reaper's.
    pub async fn shutdown(mut self) {
        let client = self.client().await;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let names: Vec<String> = namespaces
            .list(&ListParams::default())
            .await
            .map(|l| {
                l.items
                    .into_iter()
                    .filter_map(|n| n.metadata.name)
                    .collect()
            })
            .unwrap_or_default();
        for namespace in names
            .iter()
            .filter(|n| !n.starts_with("kube-") && *n != "default")
        {
            let _ = namespaces.delete(namespace, &DeleteParams::default()).await;
        }
        let pods: Api<Pod> = Api::all(client.clone());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let remaining = pods
                .list(&ListParams::default())
                .await
                .map(|l| l.items)
                .unwrap_or_default();
            for pod in &remaining {
                let (Some(name), Some(namespace)) = (&pod.metadata.name, &pod.metadata.namespace)
                else {
                    continue;
                };
                let _ = Api::<Pod>::namespaced(client.clone(), namespace)
                    .delete(name, &DeleteParams::default().grace_period(1))
                    .await;
            }
            let tasks = Command::new("ctr")
                .arg("-a")
                .arg(self.containerd_socket())
                .args(["-n", "k8s.io", "tasks", "ls", "-q"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default();
            if remaining.is_empty() && tasks.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                eprintln!(
                    "shutdown: {} pods / tasks {tasks:?} left after 60 s; the reaper kills them",
                    remaining.len()
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        self.stop();
    }

    fn stop(&mut self) {
        self.forwarder_stop.store(true, Ordering::SeqCst);
        for guard in [
            self.scheduler.take(),
            self.controller_manager.take(),
            self.kubelet.take(),
            self.containerd.take(),
        ]
        .into_iter()
        .flatten()
        {
            drop(guard);
        }
        if let Some(mut reaper) = self.reaper.take() {
            reaper.reap();
        }
    }

    /// Creates every document of a multi-document YAML (any kind the API server serves), in order.
    pub async fn create_yaml(&self, yaml: &str) {
        let client = self.client().await;
        for document in serde_yaml_ng::Deserializer::from_str(yaml) {
            let value = serde_yaml_ng::Value::deserialize(document).expect("YAML document");
            if value.is_null() {
                continue;
            }
            let object: DynamicObject =
                serde_yaml_ng::from_value(value).expect("a Kubernetes object");
            create_object(&client, object).await;
        }
    }
}

use serde::Deserialize as _;

/// Creates one object of any kind, resolving its resource through discovery.
pub async fn create_object(client: &Client, object: DynamicObject) {
    let types = object.types.clone().expect("apiVersion and kind");
    let gvk = GroupVersionKind::try_from(&types).expect("apiVersion/kind");
    let (resource, capabilities) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .unwrap_or_else(|e| panic!("discover {gvk:?}: {e}"));
    let api: Api<DynamicObject> = match capabilities.scope {
        kube::discovery::Scope::Namespaced => Api::namespaced_with(
            client.clone(),
            object.metadata.namespace.as_deref().unwrap_or("default"),
            &resource,
        ),
        kube::discovery::Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    let name = object.metadata.name.clone().unwrap_or_default();
    api.create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("create {} {name}: {e}", types.kind));
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Six hex characters from the run dir's random suffix: names the bridge and the CNI network.
fn run_tag(run_dir: &Path) -> String {
    let name = run_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("run");
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, name.as_bytes());
    digest.as_ref()[..3]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A third octet X such that nothing on the host routes or owns 10.244.X.0/24 yet.
fn free_pod_subnet() -> u8 {
    let routes = Command::new("ip")
        .args(["-4", "route", "show"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let addresses = Command::new("ip")
        .args(["-4", "addr", "show"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let start = (std::process::id() % 200) as u8 + 20;
    (0..=250u8)
        .map(|i| start.wrapping_add(i).max(1))
        .find(|octet| {
            let prefix = format!("10.244.{octet}.");
            !routes.contains(&prefix) && !addresses.contains(&prefix)
        })
        .expect("a free 10.244.X.0/24")
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Forwards TCP connections accepted on `ip:<free port>` to `upstream` until `stop` is set; returns the port.
fn forward_tcp(ip: Ipv4Addr, upstream: SocketAddr, stop: Arc<AtomicBool>) -> u16 {
    let listener =
        TcpListener::bind((ip, 0)).expect("bind the API forwarder on the bridge address");
    let port = listener.local_addr().expect("local addr").port();
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((client, _)) => {
                    let _ = client.set_nonblocking(false);
                    let Ok(server) = TcpStream::connect_timeout(&upstream, Duration::from_secs(5))
                    else {
                        continue;
                    };
                    pipe(client, server);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    port
}

fn pipe(client: TcpStream, server: TcpStream) {
    let (Ok(client_read), Ok(server_write)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let copy = |mut from: TcpStream, mut to: TcpStream| {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Write);
        });
    };
    copy(client_read, server_write);
    copy(server, client);
}

/// Polls `check` every 250 ms until it returns `Some`, or panics with `what` and the last detail after `timeout`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(detail) => {
                assert!(
                    Instant::now() < deadline,
                    "timed out after {timeout:?} waiting for {what}: {detail}"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

// Shared by the real-node tests (tests/tests/node_e2e.rs, tests/tests/node_controller.rs).

/// The body the seed documents for its curl.
pub const SEED_RESPONSE: &str = r#"{"statusCode":200,"body":"Response from AWS Lambda. Here's the request you just sent me: {\"key1\":\"value1\",\"key2\":\"value2\"}"}"#;

/// The images `make images` built (`target/images/<name>.tar`); panics naming the missing one.
pub fn image_archives() -> Vec<PathBuf> {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target"))
        .join("images");
    ["webhook", "credproxy", "gateway"]
        .iter()
        .map(|name| {
            let path = dir.join(format!("{name}.tar"));
            assert!(
                path.exists(),
                "{} missing: run `make images` (make test does)",
                path.display()
            );
            path
        })
        .collect()
}

/// The seed's curl, aimed at a gateway pod instead of a port-forward to localhost.
pub fn seed_curl(pod_ip: &str) -> Result<String, String> {
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "10",
            &format!("{pod_ip}:8080/echo"),
            "-d",
            r#"{"key1":"value1", "key2":"value2"}"#,
            "-X",
            "POST",
        ])
        .output()
        .expect("curl is installed");
    let body = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() && body == SEED_RESPONSE {
        Ok(body)
    } else {
        Err(format!("curl {}: {body:?}", out.status))
    }
}

/// The pods matching `selector` that are Running and not being deleted.
pub async fn running_pods(client: &Client, namespace: &str, selector: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    pods.list(&ListParams::default().labels(selector))
        .await
        .expect("list pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .collect()
}

/// One container's log, or a line saying why there is none.
pub async fn container_log(client: &Client, namespace: &str, pod: &str, container: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    pods.logs(
        pod,
        &kube::api::LogParams {
            container: Some(container.into()),
            ..kube::api::LogParams::default()
        },
    )
    .await
    .unwrap_or_else(|e| format!("(no log: {e})"))
}
