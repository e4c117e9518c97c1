#!/usr/bin/env bash
# Installs the Gateway API CRDs (standard channel) into $PODCRED_CACHE/gateway-api/<version>/ (idempotent, pinned):
# they come from the Go module sigs.k8s.io/gateway-api, whose module zip holds config/crd/standard/*.yaml
# (the same files as upstream's standard-install.yaml release asset). Not copied into this repository.
# v1.6.x is pinned: v1.7's go.mod needs a newer Go than the project machines have. The CRDs are
# apiextensions.k8s.io/v1 and load into kube-apiserver 1.34 (tests/tests/gateway_cluster.rs applies them).
# Only the CustomResourceDefinitions are copied (not the ValidatingAdmissionPolicy in vap_safeupgrades.yaml).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${PODCRED_CACHE:-$repo/.cache}"
version="v1.6.3"
# go.sum-style hash of the module zip, checked so a changed upstream artifact fails loudly.
sum="h1:lKpJa5bGlraC/QeACvCpsHLdmO6y0iKfzVl6gzaFEYc="
dest="$cache/gateway-api/$version"

if [[ -f "$dest/.stamp" && "$(cat "$dest/.stamp")" == "$sum" ]]; then
  echo "Gateway API CRDs already installed: $version ($dest)"
  exit 0
fi
command -v go >/dev/null || { echo "install-gateway-api-crds.sh: Go is required (for the Go module proxy)" >&2; exit 1; }

info="$(go mod download -json "sigs.k8s.io/gateway-api@$version")"
got_sum="$(sed -n 's/^[[:space:]]*"Sum": "\(.*\)",\{0,1\}$/\1/p' <<<"$info")"
dir="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$info")"
if [[ "$got_sum" != "$sum" ]]; then
  echo "install-gateway-api-crds.sh: sigs.k8s.io/gateway-api@$version has hash $got_sum, expected $sum" >&2
  exit 1
fi
rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
for file in "$dir"/config/crd/standard/gateway.networking.k8s.io_*.yaml; do
  if grep -q '^kind: CustomResourceDefinition' "$file"; then
    cp "$file" "$dest.tmp/"
    chmod u+w "$dest.tmp/$(basename "$file")"
  fi
done
ls "$dest.tmp"/*.yaml >/dev/null
echo "$sum" >"$dest.tmp/.stamp"
rm -rf "$dest" && mv "$dest.tmp" "$dest"
echo "Gateway API CRDs $version (standard channel) installed in $dest:"
ls "$dest"
