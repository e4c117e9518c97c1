#!/usr/bin/env bash
# Installs the upstream webhook we replace (github.com/aws/amazon-eks-pod-identity-webhook, pinned tag) into
# $PODCRED_CACHE/bin/amazon-eks-pod-identity-webhook, for the differential tests and side-by-side benchmarks.
# Idempotent: a stamp with the version skips the build (cold build ~2-4 min on 2 cores).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${PODCRED_CACHE:-$repo/.cache}"
bin="$cache/bin"
version="v0.6.17"
module="github.com/aws/amazon-eks-pod-identity-webhook"
target="$bin/amazon-eks-pod-identity-webhook"
stamp="$bin/.upstream-webhook.stamp"

mkdir -p "$bin"
if [[ -x "$target" && -f "$stamp" && "$(cat "$stamp")" == "$version" ]]; then
  echo "upstream webhook $version already installed ($target)"
  exit 0
fi
command -v go >/dev/null || { echo "install-upstream-webhook.sh: Go is required (the module needs Go >= 1.26.3)" >&2; exit 1; }

start=$(date +%s)
# `go install $module@$version` does not work here: it loads the module's deprecation notice from the proxy's
# version list, which answers 403 for this module. tests/peers/upstream-webhook/ pins the same tag (go.mod
# `tool` + `require`, same dependency versions as upstream's go.mod), so a plain build needs no list.
# Upstream's go.mod asks for Go 1.26.3; GOTOOLCHAIN=local makes an older local Go fail with a clear message
# instead of trying to download a toolchain.
grep -Eq "^\s*$module $version( |$)" "$here/upstream-webhook/go.mod" \
  || { echo "install-upstream-webhook.sh: $here/upstream-webhook/go.mod does not pin $module $version" >&2; exit 1; }
(cd "$here/upstream-webhook" && GOTOOLCHAIN=local CGO_ENABLED=0 nice -n 10 \
  go build -trimpath -buildvcs=false -ldflags "-s -w" -o "$target.tmp" "$module")
mv "$target.tmp" "$target"
"$target" --version
echo "$version" >"$stamp"
echo "upstream webhook $version installed in $(( $(date +%s) - start )) s"
