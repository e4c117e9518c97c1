#!/usr/bin/env bash
# Installs Debian's nginx (benchmark peer for credproxy and gateway). Idempotent; the service is
# never started by the package (benchmarks start their own instance on a loopback port).
set -euo pipefail
if command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]]; then
  echo "nginx already installed: $(/usr/sbin/nginx -v 2>&1)"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
SUDO=""
[[ "$(id -u)" == 0 ]] || SUDO="sudo"
# Do not start the packaged service (port 80) during installation.
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  REMOVE_POLICY=1
fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends nginx >/dev/null
[[ "${REMOVE_POLICY:-0}" == 1 ]] && $SUDO rm -f /usr/sbin/policy-rc.d
/usr/sbin/nginx -v
