#!/usr/bin/env bash
# Webhook benchmarks: /mutate over TLS with keep-alive, and resident memory idle / with many ServiceAccounts.
#
#   bash tests/bench/webhook.sh                      # podcred (release build)
#   WEBHOOK=upstream bash tests/bench/webhook.sh     # the upstream Go binary, same method
#   WEBHOOK=both bash tests/bench/webhook.sh         # both, one after the other, same run
#   DURATION=10s RATE=1000 CONNECTIONS=32 SERVICE_ACCOUNTS=50000 ROUNDS=3 bash tests/bench/webhook.sh
#
# What it does (all on 127.0.0.1, bounded in time and count):
#   1. builds podcred's webhook in release mode (and/or uses the pinned upstream binary from
#      tests/peers/install-upstream-webhook.sh), a CA + serving certificate from the `certs` crate;
#   2. starts tests/bench/webhook_fake_apiserver.py (LIST of ServiceAccounts + idle WATCH; `default/bench`
#      annotated with a role) and the webhook against it with the same upstream flags for both binaries;
#   3. checks that the realistic AdmissionReview (tests/bench/webhook-admission-review.json: a 3-container
#      Deployment pod as the API server sends it) is mutated;
#   4. oha over HTTPS (HTTP/1.1 keep-alive, CONNECTIONS connections), ROUNDS rounds, targets alternating
#      within each round (so load drift on a shared machine hits both): saturation for DURATION
#      (throughput), then a fixed RATE for DURATION with latency correction (p50/p99); medians reported;
#   5. RSS idle (1 ServiceAccount) and peak under load; then, one target at a time, a fresh API with
#      SERVICE_ACCOUNTS ServiceAccounts (10 % annotated): wait for the cache to fill and RSS to settle.
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
ROUNDS="${ROUNDS:-3}"
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

# median over runs of each summarize field → "rps p50_us p99_us success_rate"
median() {
  "$PYTHON" - "$@" <<'PY'
import json, statistics, sys
rows = []
for path in sys.argv[1:]:
    d = json.load(open(path))
    s, p = d["summary"], d["latencyPercentiles"]
    codes = d.get("statusCodeDistribution", {})
    ok = sum(v for k, v in codes.items() if k == "200") / (sum(codes.values()) or 1)
    rows.append((s["requestsPerSec"], p["p50"] * 1e6, p["p99"] * 1e6, ok))
cols = list(zip(*rows))
print("%.0f %.0f %.0f %.4f" % (statistics.median(cols[0]), statistics.median(cols[1]),
                               statistics.median(cols[2]), min(cols[3])))
PY
}

run_oha() { # outfile extra...
  local out=$1; shift
  "${PIN_LOAD[@]}" "$OHA" --no-tui --output-format json -z "$DURATION" -c "$CONNECTIONS" --cacert "$WORK/tls/ca.crt" \
    -m POST -H 'Content-Type: application/json' -D "$REVIEW" "$@" "https://127.0.0.1:$WH_PORT/mutate" >"$out"
}

RESULTS="$ROOT/bench-results"; mkdir -p "$RESULTS"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
REPORT="$RESULTS/webhook-$WEBHOOK-$STAMP.txt"
{
echo "webhook benchmark ($WEBHOOK) $STAMP  (oha $("$OHA" --version | awk '{print $2}'), $(nproc) cores, webhook pinned: ${PIN_SERVER[*]:-no}, load before: $(cut -d' ' -f1-3 /proc/loadavg))"
echo "request: $(wc -c <"$REVIEW") byte AdmissionReview to /mutate, HTTPS HTTP/1.1 keep-alive, $CONNECTIONS connections; $ROUNDS rounds of $DURATION per measurement, medians"
} | tee "$REPORT"

# Throughput and latency: all targets up at once against one API, measured alternately.
declare -A PID_OF PORT_OF IDLE_OF
start_api 0
for target in "${TARGETS[@]}"; do
  start_webhook "$target"
  wait_for "$target: the bench ServiceAccount in the cache (patch returned)" mutated
  PID_OF[$target]=$WH_PID; PORT_OF[$target]=$WH_PORT
done
sleep 2
for target in "${TARGETS[@]}"; do IDLE_OF[$target]=$(rss_kib "${PID_OF[$target]}"); done
for round in $(seq 1 "$ROUNDS"); do
  for target in "${TARGETS[@]}"; do WH_PORT=${PORT_OF[$target]} run_oha "$WORK/$target-sat-$round.json"; done
  for target in "${TARGETS[@]}"; do
    WH_PORT=${PORT_OF[$target]} run_oha "$WORK/$target-rate-$round.json" -q "$RATE" --latency-correction
  done
done
declare -A SAT_OF RATE_OF PEAK_OF
for target in "${TARGETS[@]}"; do
  PEAK_OF[$target]=$(awk '/^VmHWM/ {print $2}' "/proc/${PID_OF[$target]}/status")
  stop "${PID_OF[$target]}"
  SAT_OF[$target]=$(median "$WORK/$target-sat-"*.json)
  RATE_OF[$target]=$(median "$WORK/$target-rate-"*.json)
done
stop "$API_PID"

# Memory with many ServiceAccounts: one target at a time.
declare -A FULL_OF
for target in "${TARGETS[@]}"; do
  start_api "$SERVICE_ACCOUNTS"
  start_webhook "$target"
  if [[ $target == podcred ]]; then
    wait_for "podcred /readyz" curl -fsS --cacert "$WORK/tls/ca.crt" "https://127.0.0.1:$WH_PORT/readyz"
  fi
  wait_for "$target: the bench ServiceAccount in the cache (patch returned)" mutated
  FULL_OF[$target]=$(settled_rss "$WH_PID")
  stop "$WH_PID"; stop "$API_PID"
done

{
printf '%-9s | %18s %9s %9s | %14s %9s %9s | %9s %9s %14s\n' target "saturation req/s" "p50 µs" "p99 µs" "@$RATE/s req/s" "p50 µs" "p99 µs" "RSS idle" "RSS peak" "RSS $((SERVICE_ACCOUNTS + 1)) SAs"
for target in "${TARGETS[@]}"; do
  read -r sat_rps sat_p50 sat_p99 _ <<<"${SAT_OF[$target]}"
  read -r rate_rps rate_p50 rate_p99 _ <<<"${RATE_OF[$target]}"
  printf '%-9s | %18s %9s %9s | %14s %9s %9s | %7s M %7s M %12s M\n' "$target" "$sat_rps" "$sat_p50" "$sat_p99" \
    "$rate_rps" "$rate_p50" "$rate_p99" "$(mib "${IDLE_OF[$target]}")" "$(mib "${PEAK_OF[$target]}")" "$(mib "${FULL_OF[$target]}")"
done
if [[ $WEBHOOK == both ]]; then
  read -r ours _ <<<"${SAT_OF[podcred]}"; read -r theirs _ <<<"${SAT_OF[upstream]}"
  echo "throughput podcred/upstream = $(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%.2f", a / b }'); RSS with $((SERVICE_ACCOUNTS + 1)) SAs podcred/upstream = $(awk -v a="${FULL_OF[podcred]}" -v b="${FULL_OF[upstream]}" 'BEGIN { printf "%.2f", a / b }')"
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee -a "$REPORT"
echo "report: $REPORT"
