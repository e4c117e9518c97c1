#!/usr/bin/env bash
# Gateway CPU per request, A/B: two gateway builds (default: the fresh release build vs GATEWAY_B) alternate under
# the same fixed wrk load against the local Invoke endpoint (tests/src/bin/bench_invoke_endpoint.rs); the
# gateway process's user+system CPU (/proc/<pid>/stat) is divided by the requests served. CPU per request is far
# less sensitive than req/s to other jobs on shared cores, so it is the better metric for a code A/B.
#
# Variables: GATEWAY_A (default target/release/gateway, rebuilt), GATEWAY_B (required: e.g. a saved older
#   build), ROUNDS (3), DURATION (seconds, 8), CONNECTIONS (16).
# Output: stdout and bench-results/gateway-cpu-<timestamp>.txt
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
GATEWAY_A="${GATEWAY_A:-$TARGET_DIR/release/gateway}"
: "${GATEWAY_B:?set GATEWAY_B to the gateway binary to compare against (e.g. a copy of an older release build)}"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-8}"
CONNECTIONS="${CONNECTIONS:-16}"
mkdir -p "$ROOT/bench-results"
OUT="$ROOT/bench-results/gateway-cpu-$(date -u +%Y%m%dT%H%M%SZ).txt"
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null

command -v wrk >/dev/null || { echo "wrk is required (apt-get install -y wrk, or run tests/bench/gateway.sh once)" >&2; exit 1; }
[[ -x "$GATEWAY_B" ]] || { echo "GATEWAY_B=$GATEWAY_B is not an executable" >&2; exit 1; }
echo "building release binaries (gateway, bench_invoke_endpoint)…"
(cd "$ROOT" && cargo build --release -q -p gateway --bin gateway -p integration --bin bench_invoke_endpoint)

WORK="$(mktemp -d "${TMPDIR:-/tmp}/podcred-bench-gateway-cpu.XXXXXX")"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() { local deadline=$((SECONDS + 20)); until curl -sf -o /dev/null "$1"; do
  (( SECONDS < deadline )) || { echo "$1 not ready" >&2; exit 1; }; sleep 0.1; done; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

ENDPOINT_PORT="$(free_port)"
"$TARGET_DIR/release/bench_invoke_endpoint" --listen "127.0.0.1:$ENDPOINT_PORT" --threads 1 2>"$WORK/endpoint.log" &
PIDS+=($!)
until (exec 3<>"/dev/tcp/127.0.0.1/$ENDPOINT_PORT") 2>/dev/null; do sleep 0.1; done

cat >"$WORK/routes.yaml" <<EOF
kind: Gateway
apiVersion: gateway.networking.k8s.io/v1
metadata: {name: http, namespace: bench}
spec:
  gatewayClassName: podcred
  listeners: [{protocol: HTTP, port: 8080, name: http}]
---
apiVersion: gateway.kgateway.dev/v1alpha1
kind: Backend
metadata: {name: lambda, namespace: bench}
spec:
  type: AWS
  aws:
    region: us-east-1
    accountId: "123456789012"
    lambda: {functionName: echo, endpointURL: "http://127.0.0.1:$ENDPOINT_PORT"}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: lambda, namespace: bench}
spec:
  parentRefs: [{name: http}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /echo}}]
    backendRefs: [{group: gateway.kgateway.dev, kind: Backend, name: lambda}]
EOF
cat >"$WORK/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"key1":"value1", "key2":"value2"}'
wrk.headers["Content-Type"] = "application/json"
EOF

TICKS_PER_SECOND="$(getconf CLK_TCK)"
{
  echo "gateway CPU per request A/B — $(nproc) cores (shared), wrk -t1 -c$CONNECTIONS -d${DURATION}s, $ROUNDS rounds, alternating"
  echo "A: $GATEWAY_A"
  echo "B: $GATEWAY_B"
} | tee "$OUT"
for round in $(seq "$ROUNDS"); do
  for label in A B; do
    if [[ $label == A ]]; then bin="$GATEWAY_A"; else bin="$GATEWAY_B"; fi
    port="$(free_port)"; admin="$(free_port)"
    # Static keys through the environment provider: every request is still SigV4-signed.
    AWS_ACCESS_KEY_ID=AKIDBENCHEXAMPLE AWS_SECRET_ACCESS_KEY=bench-secret AWS_SESSION_TOKEN=bench-session-token \
    RUST_LOG=warn "$bin" --config "$WORK/routes.yaml" --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" \
      --access-log=false --no-watch 2>"$WORK/gateway-$label.log" &
    pid=$!
    PIDS+=("$pid")
    wait_ready "http://127.0.0.1:$admin/readyz"
    wrk -t1 -c"$CONNECTIONS" -d2s -s "$WORK/post.lua" "http://127.0.0.1:$port/echo" >/dev/null   # warm-up
    before="$(cpu_ticks "$pid")"
    result="$(wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s "$WORK/post.lua" "http://127.0.0.1:$port/echo")"
    after="$(cpu_ticks "$pid")"
    kill "$pid"; wait "$pid" 2>/dev/null || true
    requests="$(awk '/requests in/{print $1}' <<<"$result")"
    errors="$(awk '/Non-2xx/{print $NF}' <<<"$result")"
    awk -v r="$round" -v l="$label" -v q="$requests" -v t=$((after - before)) -v hz="$TICKS_PER_SECOND" \
        -v e="${errors:-0}" -v load="$(cut -d' ' -f1 /proc/loadavg)" \
      'BEGIN { printf "round %d %s: %8d requests, gateway CPU %.2f s -> %5.1f us/request (non-2xx %s, load %s)\n", r, l, q, t / hz, t / hz * 1e6 / q, e, load }' \
      | tee -a "$OUT"
  done
done
echo "results saved to $OUT"
