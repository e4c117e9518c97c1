#!/usr/bin/env bash
# Side-by-side benchmark: the upstream webhook (v0.6.17) and podcred's, both running at the same time against
# the SAME real kube-apiserver (+ etcd), with the same flags, the same serving certificate, the same
# AdmissionReview and the same load tool (oha), alternating who goes first.
#
#   bash tests/bench/webhook-side-by-side.sh
#   DURATION=10s RATE=1000 CONNECTIONS=32 SERVICE_ACCOUNTS=50000 ROUNDS=3 bash tests/bench/webhook-side-by-side.sh
#
# KEEP=1 keeps the work dir (oha JSON, logs).
# Measures (all on 127.0.0.1, bounded in time and count):
#   1. throughput at saturation: oha -z DURATION -c CONNECTIONS, HTTPS keep-alive, POST /mutate;
#   2. latency at a fixed RATE (default 1,000 req/s): p50/p99 with latency correction;
#   3. resident memory (VmRSS) idle, after the load, and with SERVICE_ACCOUNTS ServiceAccounts created in the
#      API server (10 % annotated with a role; created with concurrent POSTs by oha, generateName) once both
#      caches hold them (a ServiceAccount created last is seen by both: watch events arrive in order) and
#      RSS is stable.
# The webhooks share CPU 0 (only one is loaded at a time), oha gets the other CPU(s); the API server and etcd
# are idle during the admission runs (the webhooks answer from their caches).
# Results: stdout and bench-results/webhook-side-by-side-<UTC stamp>.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${PODCRED_CACHE:-$ROOT/.cache}"
DURATION="${DURATION:-10s}"
RATE="${RATE:-1000}"
CONNECTIONS="${CONNECTIONS:-32}"
SERVICE_ACCOUNTS="${SERVICE_ACCOUNTS:-50000}"
ROUNDS="${ROUNDS:-3}"
OHA="$CACHE/tools/bin/oha"
REVIEW="$ROOT/tests/bench/webhook-admission-review.json"
PYTHON="$(command -v python3)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

bash "$ROOT/tests/peers/install-kube.sh" >/dev/null
bash "$ROOT/tests/peers/install-upstream-webhook.sh" >/dev/null
if [[ ! -x "$OHA" ]]; then
  echo "installing oha into $CACHE/tools (once)…"
  cargo install --root "$CACHE/tools" oha --locked
fi
(cd "$ROOT" && cargo build --release -q -p webhook && cargo build --release -q -p certs --example gen)

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ -n "${KEEP:-}" ]]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
wait_for() { # description command...
  local what=$1; shift
  for _ in $(seq 1 1200); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for $what" >&2; return 1
}
PIN_SERVER=(); PIN_LOAD=()
if command -v taskset >/dev/null && (( $(nproc) >= 2 )); then
  PIN_SERVER=(taskset -c 0); PIN_LOAD=(taskset -c "1-$(( $(nproc) - 1 ))")
fi

# --- PKI: one CA for the API server and both webhooks (the same serving certificate for both) ---------------
"$TARGET_DIR/release/examples/gen" "$WORK/pki" localhost 127.0.0.1 >/dev/null
openssl ecparam -genkey -name prime256v1 -noout 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -out "$WORK/sa.key"
openssl ec -in "$WORK/sa.key" -pubout -out "$WORK/sa.pub" 2>/dev/null
TOKEN="$(openssl rand -hex 24)"
echo "$TOKEN,bench-admin,bench-admin,\"system:masters\"" >"$WORK/tokens.csv"

# --- etcd + kube-apiserver ----------------------------------------------------------------------------------
ETCD_PORT=$(free_port); ETCD_PEER=$(free_port); API_PORT=$(free_port)
"$CACHE/bin/etcd" --name bench --data-dir "$WORK/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
  --initial-cluster "bench=http://127.0.0.1:$ETCD_PEER" --unsafe-no-fsync --log-level=warn >"$WORK/etcd.log" 2>&1 &
PIDS+=("$!")
wait_for etcd curl -fsS "http://127.0.0.1:$ETCD_PORT/health"
"$CACHE/bin/kube-apiserver" --etcd-servers "http://127.0.0.1:$ETCD_PORT" --bind-address 127.0.0.1 \
  --advertise-address 127.0.0.1 --secure-port "$API_PORT" \
  --tls-cert-file "$WORK/pki/tls.crt" --tls-private-key-file "$WORK/pki/tls.key" \
  --service-account-key-file "$WORK/sa.pub" --service-account-signing-key-file "$WORK/sa.key" \
  --service-account-issuer https://kubernetes.default.svc.cluster.local --service-cluster-ip-range 10.0.0.0/24 \
  --authorization-mode RBAC --token-auth-file "$WORK/tokens.csv" --endpoint-reconciler-type none \
  --profiling=false >"$WORK/apiserver.log" 2>&1 &
PIDS+=("$!")
API="https://127.0.0.1:$API_PORT"
kcurl() { curl -fsS --cacert "$WORK/pki/ca.crt" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' "$@"; }
wait_for kube-apiserver kcurl "$API/readyz"
cat >"$WORK/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: bench, cluster: {server: "$API", certificate-authority: "$WORK/pki/ca.crt"}}]
users: [{name: bench, user: {token: "$TOKEN"}}]
contexts: [{name: bench, context: {cluster: bench, user: bench}}]
current-context: bench
EOF
kcurl -X POST "$API/api/v1/namespaces" -d '{"metadata":{"name":"bench"}}' >/dev/null
kcurl -X POST "$API/api/v1/namespaces/default/serviceaccounts" \
  -d '{"metadata":{"name":"bench","annotations":{"eks.amazonaws.com/role-arn":"arn:aws:iam::111122223333:role/bench"}}}' >/dev/null

# --- both webhooks, same flags ------------------------------------------------------------------------------
declare -A PID PORT
start_webhook() { # name binary
  PORT[$1]=$(free_port)
  "${PIN_SERVER[@]}" "$2" --in-cluster=false --kubeconfig "$WORK/kubeconfig" --namespace=default \
    --tls-cert "$WORK/pki/tls.crt" --tls-key "$WORK/pki/tls.key" \
    --port "${PORT[$1]}" --metrics-port "$(free_port)" --logtostderr -v=0 >"$WORK/webhook-$1.log" 2>&1 &
  PID[$1]=$!; PIDS+=("$!")
  wait_for "$1 /healthz" curl -fsS --cacert "$WORK/pki/ca.crt" "https://127.0.0.1:${PORT[$1]}/healthz"
}
start_webhook upstream "$CACHE/bin/amazon-eks-pod-identity-webhook"
start_webhook podcred "$TARGET_DIR/release/webhook"

mutated() { # name review-file -> 0 when patched
  curl -fsS --cacert "$WORK/pki/ca.crt" -H 'Content-Type: application/json' --data-binary "@$2" \
    "https://127.0.0.1:${PORT[$1]}/mutate" | grep -q '"patch"'
}
for name in upstream podcred; do wait_for "$name to mutate the bench review" mutated "$name" "$REVIEW"; done
sleep 3
declare -A RSS_IDLE RSS_LOADED RSS_FULL SAT_RPS SAT_P99 RATE_P50 RATE_P99 RATE_OK
for name in upstream podcred; do RSS_IDLE[$name]=$(rss_kib "${PID[$name]}"); done

cat >"$WORK/summarize.py" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
s, p = d["summary"], d["latencyPercentiles"]
codes = d.get("statusCodeDistribution", {})
total = sum(codes.values()) or 1
print("%.0f %.0f %.0f %.4f" % (s["requestsPerSec"], p["p50"] * 1e6, p["p99"] * 1e6, codes.get("200", 0) / total))
EOF
summarize() { "$PYTHON" "$WORK/summarize.py" "$1"; } # oha JSON -> "rps p50_us p99_us success_ratio"
run_oha() { # name out extra...
  local name=$1 out=$2; shift 2
  "${PIN_LOAD[@]}" "$OHA" --no-tui --output-format json -z "$DURATION" -c "$CONNECTIONS" --cacert "$WORK/pki/ca.crt" \
    -m POST -H 'Content-Type: application/json' -D "$REVIEW" "$@" "https://127.0.0.1:${PORT[$name]}/mutate" >"$out"
}

# Alternate the order per round; keep each side's best round (highest throughput; lowest fixed-rate p99).
ROUND_LINES=()
for round in $(seq 1 "$ROUNDS"); do
  order=(upstream podcred); (( round % 2 == 0 )) && order=(podcred upstream)
  for name in "${order[@]}"; do
    run_oha "$name" "$WORK/sat-$name-$round.json"
    read -r rps _ p99 _ <<<"$(summarize "$WORK/sat-$name-$round.json")"
    if (( rps > ${SAT_RPS[$name]:-0} )); then SAT_RPS[$name]=$rps; SAT_P99[$name]=$p99; fi
    run_oha "$name" "$WORK/rate-$name-$round.json" -q "$RATE" --latency-correction
    read -r _ p50 p99 ok <<<"$(summarize "$WORK/rate-$name-$round.json")"
    if [[ -z "${RATE_P99[$name]:-}" ]] || (( p99 < ${RATE_P99[$name]} )); then
      RATE_P50[$name]=$p50; RATE_P99[$name]=$p99; RATE_OK[$name]=$ok
    fi
    ROUND_LINES+=("| $round | $name | $(summarize "$WORK/sat-$name-$round.json" | awk '{print $1 " | " $3}') | $(summarize "$WORK/rate-$name-$round.json" | awk '{print $2 " | " $3}') | $(cut -d' ' -f1 /proc/loadavg) |")
    echo "${ROUND_LINES[-1]}" >&2
  done
done
for name in upstream podcred; do RSS_LOADED[$name]=$(rss_kib "${PID[$name]}"); done

# --- many ServiceAccounts, created in the API server ---------------------------------------------------------
plain=$(( SERVICE_ACCOUNTS * 9 / 10 )); annotated=$(( SERVICE_ACCOUNTS - plain ))
create_sas() { # count body
  "${PIN_LOAD[@]}" "$OHA" --no-tui --output-format json -n "$1" -c 32 --cacert "$WORK/pki/ca.crt" -m POST \
    -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d "$2" \
    "$API/api/v1/namespaces/bench/serviceaccounts" >"$WORK/create.json"
  "$PYTHON" -c '
import json,sys
codes=json.load(open(sys.argv[1])).get("statusCodeDistribution",{})
if set(codes) != {"201"}: sys.exit(f"ServiceAccount creation failed: {codes}")' "$WORK/create.json"
}
created_at=$(date +%s)
create_sas "$plain" '{"metadata":{"generateName":"sa-"}}'
create_sas "$annotated" '{"metadata":{"generateName":"role-","annotations":{"eks.amazonaws.com/role-arn":"arn:aws:iam::111122223333:role/many","eks.amazonaws.com/token-expiration":"3600"}}}'
kcurl -X POST "$API/api/v1/namespaces/bench/serviceaccounts" \
  -d '{"metadata":{"name":"zz-last","annotations":{"eks.amazonaws.com/role-arn":"arn:aws:iam::111122223333:role/last"}}}' >/dev/null
create_seconds=$(( $(date +%s) - created_at ))
"$PYTHON" - "$REVIEW" "$WORK/last-review.json" <<'EOF'
import json, sys
review = json.load(open(sys.argv[1]))
review["request"]["namespace"] = "bench"
review["request"]["object"]["metadata"]["namespace"] = "bench"
review["request"]["object"]["spec"]["serviceAccountName"] = "zz-last"
json.dump(review, open(sys.argv[2], "w"))
EOF
for name in upstream podcred; do wait_for "$name to see the last ServiceAccount" mutated "$name" "$WORK/last-review.json"; done
settled_rss() { # pid -> KiB once stable (±1 %) for 3 s, at most 120 s
  local pid=$1 last=0 stable=0 now=0
  for _ in $(seq 1 120); do
    now=$(rss_kib "$pid")
    if (( now > 0 && (now - last) * 100 / now == 0 && (last - now) * 100 / now == 0 )); then
      stable=$((stable + 1)); (( stable >= 3 )) && break
    else stable=0; fi
    last=$now; sleep 1
  done
  echo "$now"
}
for name in upstream podcred; do RSS_FULL[$name]=$(settled_rss "${PID[$name]}"); done

# --- report --------------------------------------------------------------------------------------------------
RESULTS="$ROOT/bench-results"; mkdir -p "$RESULTS"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
REPORT="$RESULTS/webhook-side-by-side-$STAMP.md"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2f", a / b }'; }
{
echo "# webhook side by side, $STAMP"
echo
echo "Same machine ($(nproc) cores, $(awk '/model name/ {sub(/.*: /, ""); print; exit}' /proc/cpuinfo)), same kube-apiserver $("$CACHE/bin/kube-apiserver" --version | awk '{print $2}'),"
echo "same flags and serving certificate, same $(wc -c <"$REVIEW")-byte AdmissionReview, oha $("$OHA" --version | awk '{print $2}'),"
echo "HTTPS keep-alive, $CONNECTIONS connections, $DURATION per run, $ROUNDS rounds (order alternated); webhooks on CPU 0, oha on the rest."
echo "Release build of podcred; upstream v0.6.17 built with Go $(go env GOVERSION). $SERVICE_ACCOUNTS ServiceAccounts created in ${create_seconds} s."
echo
echo "| measure | upstream | podcred | ratio |"
echo "| --- | --- | --- | --- |"
echo "| throughput at saturation (req/s, best of $ROUNDS rounds) | ${SAT_RPS[upstream]} | ${SAT_RPS[podcred]} | $(ratio "${SAT_RPS[podcred]}" "${SAT_RPS[upstream]}")× |"
echo "| p99 at saturation (µs) | ${SAT_P99[upstream]} | ${SAT_P99[podcred]} | $(ratio "${SAT_P99[upstream]}" "${SAT_P99[podcred]}")× lower |"
echo "| p50 at $RATE req/s (µs, round with the best p99) | ${RATE_P50[upstream]} | ${RATE_P50[podcred]} | $(ratio "${RATE_P50[upstream]}" "${RATE_P50[podcred]}")× lower |"
echo "| p99 at $RATE req/s (µs, best of $ROUNDS rounds) | ${RATE_P99[upstream]} | ${RATE_P99[podcred]} | $(ratio "${RATE_P99[upstream]}" "${RATE_P99[podcred]}")× lower |"
echo "| success ratio at $RATE req/s | ${RATE_OK[upstream]} | ${RATE_OK[podcred]} | |"
echo "| RSS idle (MiB) | $(mib "${RSS_IDLE[upstream]}") | $(mib "${RSS_IDLE[podcred]}") | $(ratio "${RSS_IDLE[podcred]}" "${RSS_IDLE[upstream]}") |"
echo "| RSS after the load (MiB) | $(mib "${RSS_LOADED[upstream]}") | $(mib "${RSS_LOADED[podcred]}") | $(ratio "${RSS_LOADED[podcred]}" "${RSS_LOADED[upstream]}") |"
echo "| RSS with $SERVICE_ACCOUNTS more ServiceAccounts (MiB) | $(mib "${RSS_FULL[upstream]}") | $(mib "${RSS_FULL[podcred]}") | $(ratio "${RSS_FULL[podcred]}" "${RSS_FULL[upstream]}") |"
echo
echo "Every round (1-minute load average of the machine at the end of each run; other work on the machine shows up here):"
echo
echo "| round | webhook | saturation req/s | saturation p99 µs | p50 µs at $RATE/s | p99 µs at $RATE/s | load |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
printf '%s\n' "${ROUND_LINES[@]}"
echo
echo "Command: \`DURATION=$DURATION RATE=$RATE CONNECTIONS=$CONNECTIONS SERVICE_ACCOUNTS=$SERVICE_ACCOUNTS ROUNDS=$ROUNDS bash tests/bench/webhook-side-by-side.sh\`"
} | tee "$REPORT"
echo "report: $REPORT"
