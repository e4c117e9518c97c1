#!/usr/bin/env bash
# Installs the peers of the real-node end-to-end tests (tests/src/node.rs, tests/tests/node_e2e.rs), idempotently:
#   apt-get (system-wide, as root):  containerd 1.6.20~ds1-1+deb12u3, runc 1.1.5+ds1-1+deb12u1,
#                                    containernetworking-plugins 1.1.1+ds1-3+b5   (Debian 12 packages)
#   $PODCRED_CACHE/bin:              kubelet, kube-controller-manager, kube-scheduler of k8s.io/kubernetes v1.34.4,
#                                    built from the Go module proxy by tests/peers/kube-apiserver/ (the module
#                                    that builds kube-apiserver, so the versions agree)
#   $PODCRED_CACHE/node/images:      pause.tar — tests/peers/node/pause.c built static, imported as
#                                    registry.k8s.io/pause:3.10 (the sandbox image; no registry is reachable)
# Needs root (apt-get; the tests run containerd and the kubelet), Go >= 1.24 and gcc with static glibc.
# Cold: ~3-4 min of Go builds after install-kube.sh (shared Go build cache); warm: < 1 s.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${PODCRED_CACHE:-$repo/.cache}"
bin="$cache/bin"
images="$cache/node/images"
module="$here/kube-apiserver"
kube_version="v1.34.4"
apt_packages=(containerd=1.6.20~ds1-1+deb12u3 runc=1.1.5+ds1-1+deb12u1 containernetworking-plugins=1.1.1+ds1-3+b5)

[[ "$(id -u)" == 0 ]] || { echo "install-node.sh: must run as root (apt-get; the node tests run containerd and a kubelet)" >&2; exit 1; }

missing=()
for pinned in "${apt_packages[@]}"; do
  name="${pinned%%=*}" version="${pinned#*=}"
  installed="$(dpkg-query -W -f='${db:Status-Abbrev} ${Version}' "$name" 2>/dev/null || true)"
  [[ "$installed" == "ii  $version" ]] || missing+=("$pinned")
done
if ((${#missing[@]})); then
  echo "install-node.sh: apt-get install ${missing[*]} (system-wide; containerd is not started as a service here)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# The Debian package may start a system containerd where systemd runs; the tests start their own instance
# with their own config, root and socket, so a system one does not interfere.
for tool in containerd containerd-shim-runc-v2 runc ctr /usr/lib/cni/bridge /usr/lib/cni/host-local /usr/lib/cni/loopback; do
  command -v "$tool" >/dev/null || { echo "install-node.sh: $tool missing after apt-get install" >&2; exit 1; }
done

mkdir -p "$bin" "$images"
command -v go >/dev/null || { echo "install-node.sh: Go is required (Go >= 1.24; https://go.dev/dl)" >&2; exit 1; }
fingerprint="$( { echo "$kube_version"; cat "$module/go.mod" "$module/go.sum" "$module"/cmd/{kubelet,kube-controller-manager,kube-scheduler}/main.go "$here/node/pause.c" "$repo/deploy/images/build-images.py"; } | sha256sum | cut -d' ' -f1)"
stamp="$cache/node/.node-peers.stamp"
if [[ -x "$bin/kubelet" && -x "$bin/kube-controller-manager" && -x "$bin/kube-scheduler" && -f "$images/pause.tar" \
      && -f "$stamp" && "$(cat "$stamp")" == "$fingerprint" ]]; then
  echo "node peers already installed: kubelet, kube-controller-manager, kube-scheduler $kube_version; containerd, runc, CNI plugins (apt); pause image"
  exit 0
fi

export GOFLAGS="${GOFLAGS:-} -trimpath -buildvcs=false"
export CGO_ENABLED=0
start=$(date +%s)
version_pkg="k8s.io/component-base/version"
ldflags="-s -w -X $version_pkg.gitVersion=$kube_version -X $version_pkg.gitMajor=1 -X $version_pkg.gitMinor=34 -X $version_pkg.gitTreeState=clean"
for component in kubelet kube-controller-manager kube-scheduler; do
  echo "building $component $kube_version (warm Go build cache: 0.5-2 min each; cold: ~3 min for the kubelet)"
  (cd "$module" && nice -n 10 go build -ldflags "$ldflags" -o "$bin/$component.tmp" "./cmd/$component")
  mv "$bin/$component.tmp" "$bin/$component"
done

echo "building the pause image (tests/peers/node/pause.c, static)"
mkdir -p "$cache/node/build"
gcc -Os -static -o "$cache/node/build/pause" "$here/node/pause.c"
strip "$cache/node/build/pause"
python3 "$repo/deploy/images/build-images.py" --out "$images" --scratch "registry.k8s.io/pause:3.10=$cache/node/build/pause"

"$bin/kubelet" --version
echo "$fingerprint" >"$stamp"
echo "node peers installed in $(( $(date +%s) - start )) s"
