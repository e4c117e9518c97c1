#!/usr/bin/env bash
# credproxy cached-path benchmark, side by side with nginx serving the same JSON as a static file.
#
#   bash tests/bench/credproxy.sh            # defaults below; results also in bench-results/credproxy-*.txt
#   DURATION=10s RATE=10000 CONNECTIONS=50 bash tests/bench/credproxy.sh
#
# What it does (all on 127.0.0.1, bounded in time):
#   1. builds credproxy in release mode; starts moto 5.2.5 (STS) and credproxy against it;
#   2. saves the credentials JSON credproxy serves and starts Debian nginx (config in a temp dir)
#      serving those exact bytes at /v1/credentials as a static file, keep-alive;
#   3. for each pair (1 worker each, then 2 each): oha at a fixed RATE for DURATION (p50/p99, with
#      latency correction), one connection at 1,000 rps (per-request latency, uncorrected), then oha at
#      saturation (throughput), alternating targets; plus credproxy's own server-side histogram;
#   4. records credproxy's RSS idle and its peak (VmHWM) under load, and the STS call count (must be 1).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${PODCRED_CACHE:-$ROOT/.cache}"
DURATION="${DURATION:-10s}"
RATE="${RATE:-10000}"
CONNECTIONS="${CONNECTIONS:-50}"
OHA="$CACHE/tools/bin/oha"
NGINX=/usr/sbin/nginx

bash "$ROOT/tests/peers/install-moto.sh" >/dev/null
bash "$ROOT/tests/peers/install-nginx.sh" >/dev/null
if [[ ! -x "$OHA" ]]; then
  echo "installing oha into $CACHE/tools (once)…"
  cargo install --root "$CACHE/tools" oha --locked
fi
(cd "$ROOT" && cargo build --release -p credproxy -q)
CREDPROXY="${CARGO_TARGET_DIR:-$ROOT/target}/release/credproxy"

WORK="$(mktemp -d)"
chmod 0711 "$WORK"   # nginx workers (user nobody when started as root) must reach their docroot
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { "$CACHE/venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # url [header]
  for _ in $(seq 1 200); do
    if curl -fsS -o /dev/null ${2:+-H "$2"} "$1" 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "no answer from $1" >&2; return 1
}
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
MOTO_PORT=$(free_port)
"$CACHE/venv/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >"$WORK/moto.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$MOTO_PORT/moto-api/"

printf 'bench-web-identity-token' >"$WORK/wit"

start_credproxy() { # threads -> sets CP_PID CP_PORT
  CP_PORT=$(free_port); local mport; mport=$(free_port)
  AWS_ROLE_ARN=arn:aws:iam::123456789012:role/bench AWS_WEB_IDENTITY_TOKEN_FILE="$WORK/wit" \
  AWS_REGION=us-east-1 AWS_ENDPOINT_URL_STS="http://127.0.0.1:$MOTO_PORT" \
    "$CREDPROXY" --listen "127.0.0.1:$CP_PORT" --metrics-listen "127.0.0.1:$mport" \
      --auth-token-file "$WORK/auth-token" --worker-threads "$1" --log-level warn --drain 0s \
      >"$WORK/credproxy-$1.log" 2>&1 &
  CP_PID=$!; PIDS+=("$CP_PID"); CP_METRICS="127.0.0.1:$mport"
  wait_http "http://127.0.0.1:$CP_PORT/healthz"
  sleep 0.3
}

start_nginx() { # workers -> sets NG_PID NG_PORT
  NG_PORT=$(free_port)
  local dir="$WORK/nginx-$1"; mkdir -p "$dir/www/v1"; chmod -R a+rX "$dir"
  cp "$WORK/credentials.json" "$dir/www/v1/credentials"; chmod 0644 "$dir/www/v1/credentials"
  cat >"$dir/nginx.conf" <<CONF
worker_processes $1;
daemon off;
master_process on;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nodelay on;
  keepalive_timeout 65;
  keepalive_requests 1000000;
  client_body_temp_path $dir/tmp; proxy_temp_path $dir/tmp; fastcgi_temp_path $dir/tmp;
  uwsgi_temp_path $dir/tmp; scgi_temp_path $dir/tmp;
  server {
    listen 127.0.0.1:$NG_PORT;
    root $dir/www;
    location = /v1/credentials { default_type application/json; }
  }
}
CONF
  mkdir -p "$dir/tmp"
  "$NGINX" -c "$dir/nginx.conf" -p "$dir" 2>"$dir/stderr.log" &
  NG_PID=$!; PIDS+=("$NG_PID")
  wait_http "http://127.0.0.1:$NG_PORT/v1/credentials"
}

# oha JSON → "rps p50_us p99_us success_rate"
summarize() {
  "$CACHE/venv/bin/python" - "$1" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
s, p = d["summary"], d["latencyPercentiles"]
codes = d.get("statusCodeDistribution", {})
total = sum(codes.values()) or 1
ok = codes.get("200", 0) / total
rps, p50, p99 = s["requestsPerSec"], p["p50"] * 1e6, p["p99"] * 1e6
print("%.0f %.0f %.0f %.4f" % (rps, p50, p99, ok))
PY
}

# Server-side p50/p99 upper bounds (µs) of the credential requests made during one run, from the
# delta of credproxy's own latency histogram.
server_percentiles() {
  "$CACHE/venv/bin/python" - "$1" "$2" <<'PY'
import re, sys
def buckets(path):
    out = {}
    for line in open(path):
        m = re.match(r'credproxy_http_request_duration_seconds_bucket\{le="([^"]+)"\} (\S+)', line)
        if m:
            out[float(m.group(1))] = float(m.group(2))
    return out
a, b = buckets(sys.argv[1]), buckets(sys.argv[2])
delta = sorted((le, b[le] - a.get(le, 0)) for le in b)
total = delta[-1][1] or 1
def pct(q):
    for le, n in delta:
        if n >= q * total:
            return "<=%gus" % (le * 1e6) if le != float("inf") else ">5s"
print(pct(0.5), pct(0.99))
PY
}

run_oha() { # connections url outfile extra...
  local conns=$1 url=$2 out=$3; shift 3
  "$OHA" --no-tui --output-format json -z "$DURATION" -c "$conns" \
    -H "Authorization: $(cat "$WORK/auth-token")" "$@" "$url" >"$out"
}

RESULTS="$ROOT/bench-results"; mkdir -p "$RESULTS"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
REPORT="$RESULTS/credproxy-$STAMP.txt"
{
echo "credproxy benchmark $STAMP  (oha $("$OHA" --version | awk '{print $2}'), $(nproc) cores, load before: $(cut -d' ' -f1-3 /proc/loadavg))"
echo "rate run: $RATE rps for $DURATION, $CONNECTIONS connections, keep-alive, latency correction; saturation: $DURATION, $CONNECTIONS connections"
printf '%-28s %10s %9s %9s %8s | %12s\n' target "rate-rps" "p50-us" "p99-us" "ok" "sat-rps"
} | tee "$REPORT"

for threads in 1 2; do
  start_credproxy "$threads"
  curl -fsS -H "Authorization: $(cat "$WORK/auth-token")" "http://127.0.0.1:$CP_PORT/v1/credentials" >"$WORK/credentials.json"
  idle_rss=$(rss_kib "$CP_PID")
  start_nginx "$threads"
  CP_URL="http://127.0.0.1:$CP_PORT/v1/credentials"; NG_URL="http://127.0.0.1:$NG_PORT/v1/credentials"
  # Same bytes from both.
  cmp -s "$WORK/credentials.json" <(curl -fsS "$NG_URL") || { echo "nginx serves different bytes" >&2; exit 1; }

  curl -fsS "http://$CP_METRICS/metrics" >"$WORK/metrics-before"
  run_oha "$CONNECTIONS" "$CP_URL" "$WORK/cp-rate.json" -q "$RATE" --latency-correction
  curl -fsS "http://$CP_METRICS/metrics" >"$WORK/metrics-after"
  server_pct=$(server_percentiles "$WORK/metrics-before" "$WORK/metrics-after")
  run_oha "$CONNECTIONS" "$NG_URL" "$WORK/ng-rate.json" -q "$RATE" --latency-correction
  # One keep-alive connection at a modest rate: per-request latency without queueing (no
  # latency correction here, so one scheduler hiccup of the shared machine is not multiplied).
  run_oha 1 "$CP_URL" "$WORK/cp-one.json" -q 1000
  run_oha 1 "$NG_URL" "$WORK/ng-one.json" -q 1000
  run_oha "$CONNECTIONS" "$CP_URL" "$WORK/cp-sat.json"
  run_oha "$CONNECTIONS" "$NG_URL" "$WORK/ng-sat.json"
  peak_rss=$(hwm_kib "$CP_PID")
  for f in cp-rate ng-rate cp-one ng-one cp-sat ng-sat; do cp "$WORK/$f.json" "$RESULTS/credproxy-$STAMP-$f-$threads.json"; done
  sts_calls=$(curl -fsS "http://$CP_METRICS/metrics" | awk '/^credproxy_sts_requests_total/ {s+=$2} END {print s+0}')

  read -r cp_rate cp_p50 cp_p99 cp_ok <<<"$(summarize "$WORK/cp-rate.json")"
  read -r ng_rate ng_p50 ng_p99 ng_ok <<<"$(summarize "$WORK/ng-rate.json")"
  read -r _ cp1_p50 cp1_p99 _ <<<"$(summarize "$WORK/cp-one.json")"
  read -r _ ng1_p50 ng1_p99 _ <<<"$(summarize "$WORK/ng-one.json")"
  read -r cp_sat _ _ cp_sat_ok <<<"$(summarize "$WORK/cp-sat.json")"
  read -r ng_sat _ _ ng_sat_ok <<<"$(summarize "$WORK/ng-sat.json")"
  {
  printf '%-28s %10s %9s %9s %8s | %12s\n' "credproxy ($threads thread(s))" "$cp_rate" "$cp_p50" "$cp_p99" "$cp_ok" "$cp_sat"
  printf '%-28s %10s %9s %9s %8s | %12s\n' "nginx ($threads worker(s))" "$ng_rate" "$ng_p50" "$ng_p99" "$ng_ok" "$ng_sat"
  echo "  one connection at 1,000 rps: credproxy p50 ${cp1_p50} us / p99 ${cp1_p99} us; nginx p50 ${ng1_p50} us / p99 ${ng1_p99} us"
  echo "  credproxy server-side latency during the rate run (own histogram): p50 ${server_pct% *}, p99 ${server_pct#* }"
  echo "  saturation ratio credproxy/nginx = $(awk -v a="$cp_sat" -v b="$ng_sat" 'BEGIN {printf "%.2f", a / b}')  (success rates $cp_sat_ok / $ng_sat_ok)"
  echo "  credproxy RSS: idle $((idle_rss / 1024)).$(( (idle_rss % 1024) * 10 / 1024 )) MiB, peak under load $((peak_rss / 1024)).$(( (peak_rss % 1024) * 10 / 1024 )) MiB; STS calls during the run: $sts_calls"
  } | tee -a "$REPORT"
  kill "$CP_PID" "$NG_PID" 2>/dev/null || true
  wait "$CP_PID" "$NG_PID" 2>/dev/null || true
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$REPORT"
echo "report: $REPORT"
