#!/usr/bin/env bash
# Installs the serverless-offline test peer (serverless 3.40.0 + serverless-offline 13.10.1, pinned by
# tests/peers/sls/package-lock.json) into tests/peers/sls/node_modules (git-ignored).
# Idempotent: a stamp holding the lock file's hash makes a second run a no-op.
set -euo pipefail
cd "$(dirname "$0")/sls"

for tool in node npm; do
  command -v "$tool" >/dev/null || { echo "install-serverless: '$tool' not found; install Node.js >= 18 (Debian: apt-get install -y nodejs npm)" >&2; exit 1; }
done
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 18 ]; then
  echo "install-serverless: Node.js $(node --version) is too old; serverless-offline 13 needs >= 18" >&2
  exit 1
fi

want=$(sha256sum package-lock.json | cut -d' ' -f1)
stamp=node_modules/.podcred-stamp
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x node_modules/serverless/bin/serverless.js ]; then
  echo "serverless-offline peer already installed ($(node -p 'require("./node_modules/serverless-offline/package.json").version'))"
  exit 0
fi

echo "installing serverless 3 + serverless-offline 13 from package-lock.json (npm ci)"
npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
test "$(node -p 'require("./node_modules/serverless/package.json").version')" = "3.40.0"
test "$(node -p 'require("./node_modules/serverless-offline/package.json").version')" = "13.10.1"
echo "$want" > "$stamp"
echo "serverless-offline peer installed"
