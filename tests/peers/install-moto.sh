#!/usr/bin/env bash
# Installs the Python test peers into $PODCRED_CACHE/venv (idempotent, pinned):
#   moto[server] 5.2.5 (STS + Lambda; tests/peers/moto_wrapper.py relies on its internals),
#   boto3 and the AWS CLI v1 (real consumers of the container-credentials endpoint).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${PODCRED_CACHE:-$ROOT/.cache}"
VENV="$CACHE/venv"
# Pins: moto's internals are patched by the wrapper, so its version must not float.
PINS=("moto[server]==5.2.5" "boto3==1.44.8" "botocore==1.44.8" "awscli==1.46.3")
STAMP="$VENV/.podcred-python-peers"
WANT="$(printf '%s\n' "${PINS[@]}")"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" && -x "$VENV/bin/moto_server" && -x "$VENV/bin/aws" ]]; then
  echo "python peers already installed in $VENV"
  exit 0
fi

if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  echo "python3 venv/ensurepip missing; installing python3-venv" >&2
  apt-get update -qq && apt-get install -y -qq python3-venv
fi

mkdir -p "$CACHE"
[[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "${PINS[@]}" || {
  # awscli v1 and boto3 share botocore; if the exact trio ever conflicts, pip says so here.
  echo "pip install of ${PINS[*]} failed" >&2
  exit 1
}
"$VENV/bin/python" - <<'PY'
import moto, boto3, botocore, awscli
assert moto.__version__ == "5.2.5", moto.__version__
print("moto", moto.__version__, "boto3", boto3.__version__, "botocore", botocore.__version__, "awscli", awscli.__version__)
PY
printf '%s' "$WANT" > "$STAMP"
