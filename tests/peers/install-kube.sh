#!/usr/bin/env bash
# Installs the Kubernetes test peers into $PODCRED_CACHE/bin (idempotent, pinned, cached by version):
#   kube-apiserver  k8s.io/kubernetes v1.34.4, built from the Go module proxy via tests/peers/kube-apiserver/
#   etcd            go.etcd.io/etcd/server/v3 v3.6.4 (the version that kube-apiserver's go.mod requires; Debian
#                   bookworm's etcd 3.4 is older than the 3.5+ Kubernetes supports), built from the same module
#   helm            helm.sh/helm/v3 (`helm template` renders deploy/helm/podcred in the e2e tests)
# Needs Go >= 1.24 and the Go module proxy. A cold build takes ~15-25 min on 2 cores; later runs take < 1 s.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${PODCRED_CACHE:-$repo/.cache}"
bin="$cache/bin"
module="$here/kube-apiserver"
kube_version="v1.34.4"
etcd_version="v3.6.4"
helm_version="v3.19.5"

mkdir -p "$bin"
command -v go >/dev/null || { echo "install-kube.sh: Go is required (Go >= 1.24; https://go.dev/dl)" >&2; exit 1; }

# The stamp covers the pinned versions and every input of the build, so editing the module rebuilds.
fingerprint="$( { echo "$kube_version $etcd_version $helm_version"; cat "$module/go.mod" "$module/go.sum" "$module"/cmd/*/main.go; } | sha256sum | cut -d' ' -f1)"
stamp="$bin/.kube-peers.stamp"
if [[ -x "$bin/kube-apiserver" && -x "$bin/etcd" && -x "$bin/helm" && -f "$stamp" && "$(cat "$stamp")" == "$fingerprint" ]]; then
  echo "kube peers already installed: kube-apiserver $kube_version, etcd $etcd_version, helm $helm_version ($bin)"
  exit 0
fi

# No VCS stamping (the module sits inside this repository; CI clones may not allow git queries).
export GOFLAGS="${GOFLAGS:-} -trimpath -buildvcs=false"
export CGO_ENABLED=0
start=$(date +%s)

echo "building kube-apiserver $kube_version and etcd $etcd_version (cold: ~15-25 min on 2 cores)"
version_pkg="k8s.io/component-base/version"
kube_ldflags="-s -w -X $version_pkg.gitVersion=$kube_version -X $version_pkg.gitMajor=1 -X $version_pkg.gitMinor=34 -X $version_pkg.gitTreeState=clean"
(cd "$module" && nice -n 10 go build -ldflags "$kube_ldflags" -o "$bin/kube-apiserver.tmp" ./cmd/kube-apiserver)
(cd "$module" && nice -n 10 go build -ldflags "-s -w" -o "$bin/etcd.tmp" ./cmd/etcd)
mv "$bin/kube-apiserver.tmp" "$bin/kube-apiserver"
mv "$bin/etcd.tmp" "$bin/etcd"

echo "building helm $helm_version"
GOBIN="$bin" nice -n 10 go install -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version" "helm.sh/helm/v3/cmd/helm@$helm_version"

"$bin/kube-apiserver" --version
"$bin/etcd" --version | head -1
"$bin/helm" version --short
echo "$fingerprint" >"$stamp"
echo "kube peers installed in $(( $(date +%s) - start )) s"
