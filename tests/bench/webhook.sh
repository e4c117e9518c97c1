#!/usr/bin/env bash
# Webhook benchmarks: /mutate over TLS with keep-alive, and resident memory idle / with many ServiceAccounts.
#
#   bash tests/bench/webhook.sh                      # podcred (release build)
#   WEBHOOK=upstream bash tests/bench/webhook.sh     # the upstream Go binary, same method
#   WEBHOOK=both bash tests/bench/webhook.sh         # both, one after the other, same run
#   DURATION=10s RATE=1000 CONNECTIONS=32 SERVICE_ACCOUNTS=50000 bash tests/bench/webhook.sh
#
# What it does (all on 127.0.0.1, bounded in time and count):
#   1. builds podcred's webhook in release mode (and/or uses the pinned upstream binary from
#      tests/peers/install-upstream-webhook.sh), a CA + serving certificate from the `certs` crate;
#   2. starts tests/bench/webhook_fake_apiserver.py (LIST of ServiceAccounts + idle WATCH; `default/bench`
#      annotated with a role) and the webhook against it with the same upstream flags for both binaries;
#   3. checks that the realistic AdmissionReview (tests/bench/webhook-admission-review.json: a 3-container
#      Deployment pod as the API server sends it) is mutated;
#   4. oha over HTTPS (HTTP/1.1 keep-alive, CONNECTIONS connections): saturation for DURATION (throughput),
#      then a fixed RATE for DURATION with latency correction (p50/p99);
#   5. RSS idle (1 ServiceAccount), then restarts with SERVICE_ACCOUNTS ServiceAccounts (10 % annotated),
#      waits for the cache to fill and RSS to settle, records RSS.
# The webhook is pinned to CPU 0 and oha to the other CPUs when taskset and ≥ 2 CPUs are available.
# Results: stdout and bench-results/webhook-<binary>-<UTC stamp>.txt.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${PODCRED_CACHE:-$ROOT/.cache}"
WEBHOOK="${WEBHOOK:-podcred}"
DURATION="${DURATION:-10s}"
RATE="${RATE:-1000}"
CONNECTIONS="${CONNECTIONS:-32}"
SERVICE_ACCOUNTS="${SERVICE_ACCOUNTS:-50000}"
OHA="$CACHE/tools/bin/oha"
REVIEW="$ROOT/tests/bench/webhook-admission-review.json"
FAKE_API="$ROOT/tests/bench/webhook_fake_apiserver.py"
PYTHON="$(command -v python3)"

case "$WEBHOOK" in
  podcred|upstream) TARGETS=("$WEBHOOK") ;;
  both) TARGETS=(podcred upstream) ;;
  *) echo "WEBHOOK must be podcred, upstream or both (got $WEBHOOK)" >&2; exit 64 ;;
esac

if [[ ! -x "$OHA" ]]; then
  echo "installing oha into $CACHE/tools (once)…"
  cargo install --root "$CACHE/tools" oha --locked
fi
for target in "${TARGETS[@]}"; do
  if [[ $target == upstream ]]; then bash "$ROOT/tests/peers/install-upstream-webhook.sh" >/dev/null; fi
  if [[ $target == podcred ]]; then (cd "$ROOT" && cargo build --release -q -p webhook); fi
done
(cd "$ROOT" && cargo build --release -q -p certs --example gen)
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

"$TARGET_DIR/release/examples/gen" "$WORK/tls" localhost 127.0.0.1 >/dev/null

PIN_SERVER=(); PIN_LOAD=()
if command -v taskset >/dev/null && (( $(nproc) >= 2 )); then
  PIN_SERVER=(taskset -c 0); PIN_LOAD=(taskset -c "1-$(( $(nproc) - 1 ))")
fi

free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
wait_for() { # description command...
  local what=$1; shift
  for _ in $(seq 1 600); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for $what" >&2; return 1
}

start_api() { # service_accounts -> API_PID API_PORT
  API_PORT=$(free_port)
  "$PYTHON" "$FAKE_API" "$API_PORT" "$1" >"$WORK/api.log" 2>&1 &
  API_PID=$!; PIDS+=("$API_PID")
  wait_for "fake API server" curl -fsS -o /dev/null "http://127.0.0.1:$API_PORT/api/v1/namespaces/default/serviceaccounts/bench"
}

start_webhook() { # target -> WH_PID WH_PORT WH_METRICS
  local target=$1 binary
  WH_PORT=$(free_port); WH_METRICS=$(free_port)
  case "$target" in
    podcred) binary="$TARGET_DIR/release/webhook" ;;
    upstream) binary="$CACHE/bin/amazon-eks-pod-identity-webhook" ;;
  esac
  # The same upstream flags for both binaries.
  "${PIN_SERVER[@]}" "$binary" --in-cluster=false --kube-api="http://127.0.0.1:$API_PORT" --namespace=default \
    --tls-cert="$WORK/tls/tls.crt" --tls-key="$WORK/tls/tls.key" \
    --port="$WH_PORT" --metrics-port="$WH_METRICS" --logtostderr -v=0 >"$WORK/webhook-$target.log" 2>&1 &
  WH_PID=$!; PIDS+=("$WH_PID")
  wait_for "webhook /healthz" curl -fsS --cacert "$WORK/tls/ca.crt" "https://127.0.0.1:$WH_PORT/healthz"
}

stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

mutated() { # -> 0 when the bench review gets a patch
  curl -fsS --cacert "$WORK/tls/ca.crt" -H 'Content-Type: application/json' --data-binary "@$REVIEW" \
    "https://127.0.0.1:$WH_PORT/mutate" | grep -q '"patch"'
}

# RSS once the cache has filled: podcred reports readiness; for both, wait until RSS is stable for 3 s.
settled_rss() { # pid -> KiB
  local pid=$1 last=0 stable=0 now
  for _ in $(seq 1 120); do
    now=$(rss_kib "$pid")
    if (( now > 0 && (now - last) * 100 / now == 0 && (last - now) * 100 / now == 0 )); then
      stable=$((stable + 1)); (( stable >= 3 )) && { echo "$now"; return; }
    else stable=0; fi
    last=$now; sleep 1
  done
  echo "$now"
}

# oha JSON → "rps p50_us p99_us success_rate"
summarize() {
  "$PYTHON" -c '
import json,sys
d=json.load(open(sys.argv[1]))
s=d["summary"]; p=d["latencyPercentiles"]
codes=d.get("statusCodeDistribution",{})
ok=sum(v for k,v in codes.items() if k=="200"); total=sum(codes.values()) or 1
print(f"{s[\"requestsPerSec\"]:.0f} {p[\"p50\"]*1e6:.0f} {p[\"p99\"]*1e6:.0f} {ok/total:.4f}")' "$1"
}

run_oha() { # outfile extra...
  local out=$1; shift
  "${PIN_LOAD[@]}" "$OHA" --no-tui --output-format json -z "$DURATION" -c "$CONNECTIONS" --cacert "$WORK/tls/ca.crt" \
    -m POST -H 'Content-Type: application/json' -D "$REVIEW" "$@" "https://127.0.0.1:$WH_PORT/mutate" >"$out"
}

RESULTS="$ROOT/bench-results"; mkdir -p "$RESULTS"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
for target in "${TARGETS[@]}"; do
  REPORT="$RESULTS/webhook-$target-$STAMP.txt"
  {
  echo "webhook benchmark ($target) $STAMP  (oha $("$OHA" --version | awk '{print $2}'), $(nproc) cores, pinned: ${PIN_SERVER[*]:-no}, load before: $(cut -d' ' -f1-3 /proc/loadavg))"
  echo "request: $(wc -c <"$REVIEW") byte AdmissionReview, HTTPS HTTP/1.1 keep-alive, $CONNECTIONS connections"
  } | tee "$REPORT"

  start_api 0
  start_webhook "$target"
  wait_for "the bench ServiceAccount in the cache (patch returned)" mutated
  sleep 2
  idle=$(rss_kib "$WH_PID")
  run_oha "$WORK/sat.json"
  run_oha "$WORK/rate.json" -q "$RATE" --latency-correction
  read -r sat_rps sat_p50 sat_p99 sat_ok <<<"$(summarize "$WORK/sat.json")"
  read -r rate_rps rate_p50 rate_p99 rate_ok <<<"$(summarize "$WORK/rate.json")"
  loaded=$(awk '/^VmHWM/ {print $2}' "/proc/$WH_PID/status")
  stop "$WH_PID"; stop "$API_PID"

  start_api "$SERVICE_ACCOUNTS"
  start_webhook "$target"
  if [[ $target == podcred ]]; then
    wait_for "podcred /readyz" curl -fsS --cacert "$WORK/tls/ca.crt" "https://127.0.0.1:$WH_PORT/readyz"
  fi
  wait_for "the bench ServiceAccount in the cache (patch returned)" mutated
  full=$(settled_rss "$WH_PID")
  cached=$(curl -fsS "http://127.0.0.1:$WH_METRICS/metrics" | awk '/^podcred_webhook_service_accounts_cached/ {print $2}')
  stop "$WH_PID"; stop "$API_PID"

  {
  printf 'saturation:   %s req/s (p50 %s µs, p99 %s µs, ok %s)\n' "$sat_rps" "$sat_p50" "$sat_p99" "$sat_ok"
  printf 'fixed %s/s:  %s req/s achieved, p50 %s µs, p99 %s µs (latency-corrected), ok %s\n' "$RATE" "$rate_rps" "$rate_p50" "$rate_p99" "$rate_ok"
  printf 'RSS idle (1 SA): %s MiB; peak under load: %s MiB; with %s SAs: %s MiB%s\n' \
    "$(mib "$idle")" "$(mib "$loaded")" "$((SERVICE_ACCOUNTS + 1))" "$(mib "$full")" "${cached:+ (cache holds $cached)}"
  } | tee -a "$REPORT"
  echo "report: $REPORT"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
