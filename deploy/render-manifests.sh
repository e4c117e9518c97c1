#!/usr/bin/env bash
# Renders deploy/manifests/podcred-webhook.yaml from the Helm chart with its default values (cert-manager
# issues the serving certificate), for users who apply plain manifests. The e2e suite checks the file is
# up to date and that the API server accepts it (server-side dry-run).
# Usage: bash deploy/render-manifests.sh   (needs helm: bash tests/peers/install-kube.sh installs it)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
helm="${HELM:-$(command -v helm || echo "${PODCRED_CACHE:-$repo/.cache}/bin/helm")}"
namespace=podcred-system
{
  echo "# Rendered by deploy/render-manifests.sh from deploy/helm/podcred (default values). Do not edit."
  echo "# Requires cert-manager (serving certificate); see deploy/README.md for the other certificate options."
  echo "apiVersion: v1"
  echo "kind: Namespace"
  echo "metadata:"
  echo "  name: $namespace"
  "$helm" template podcred-webhook "$here/helm/podcred" --namespace "$namespace" | sed '/^# Source: /d'
} >"$here/manifests/podcred-webhook.yaml"
echo "wrote deploy/manifests/podcred-webhook.yaml"
