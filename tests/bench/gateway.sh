#!/usr/bin/env bash
# Gateway benchmark: the gateway (release build, SigV4-signing every request) vs nginx reverse-proxying the same
# requests to the same fast local Invoke-API endpoint (tests/src/bin/bench_invoke_endpoint.rs), side by side in
# one run, loopback only, bounded in time.
#
#   client (wrk) ──► gateway  ──► bench_invoke_endpoint      (route /echo → Backend, passthrough, static keys)
#   client (wrk) ──► nginx    ──► bench_invoke_endpoint      (proxy_pass, upstream keepalive, no signing)
#   client (wrk) ──► bench_invoke_endpoint                   (baseline, for "added latency")
#
# For each round (ROUNDS, alternating targets): throughput at CONNECTIONS connections for DURATION, then latency
# with 1 connection for DURATION (p50/p99). Reports requests/s, p50/p99, the gateway/nginx throughput ratio, the
# CPU each proxy spends per request during the throughput phase (user+system from /proc/<pid>/stat, nginx's master
# and workers summed, divided by the requests served) and the median latency each proxy adds over the direct
# baseline. Both proxies have access logs off, 2 workers.
#
# Variables: DURATION (default 10s), CONNECTIONS (32), ROUNDS (2), THREADS (wrk threads, 2),
#   GATEWAY_BIN (default: the freshly built target/release/gateway; set it to an older build for an A/B run).
# Output: stdout and bench-results/gateway-<timestamp>.txt
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-32}"
ROUNDS="${ROUNDS:-2}"
THREADS="${THREADS:-2}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
GATEWAY_BIN="${GATEWAY_BIN:-$TARGET_DIR/release/gateway}"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
RESULTS="$ROOT/bench-results"
mkdir -p "$RESULTS"
OUT="$RESULTS/gateway-$STAMP.txt"

export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null

if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian)…"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
bash "$ROOT/tests/peers/install-nginx.sh" >/dev/null
NGINX=/usr/sbin/nginx

echo "building release binaries (gateway, bench_invoke_endpoint)…"
(cd "$ROOT" && cargo build --release -q -p gateway --bin gateway -p integration --bin bench_invoke_endpoint)

WORK="$(mktemp -d "${TMPDIR:-/tmp}/podcred-bench-gateway.XXXXXX")"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { local deadline=$((SECONDS + 20)); until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
  (( SECONDS < deadline )) || { echo "nothing listening on $1" >&2; exit 1; }; sleep 0.1; done; }

ENDPOINT_PORT="$(free_port)"; GATEWAY_PORT="$(free_port)"; ADMIN_PORT="$(free_port)"; NGINX_PORT="$(free_port)"

# The Invoke endpoint gets one worker thread: it is the common bottleneck-free backend for both proxies.
"$TARGET_DIR/release/bench_invoke_endpoint" --listen "127.0.0.1:$ENDPOINT_PORT" --threads 1 2>"$WORK/endpoint.log" &
PIDS+=($!)
wait_port "$ENDPOINT_PORT"

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
# Static keys through the standard chain's environment provider: every request is still SigV4-signed.
AWS_ACCESS_KEY_ID=AKIDBENCHEXAMPLE AWS_SECRET_ACCESS_KEY=bench-secret AWS_SESSION_TOKEN=bench-session-token \
RUST_LOG=warn \
  "$GATEWAY_BIN" --config "$WORK/routes.yaml" --listen "127.0.0.1:$GATEWAY_PORT" \
    --admin-listen "127.0.0.1:$ADMIN_PORT" --access-log=false --no-watch 2>"$WORK/gateway.log" &
PIDS+=($!)
wait_port "$GATEWAY_PORT"

mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 2;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  upstream invoke { server 127.0.0.1:$ENDPOINT_PORT; keepalive 128; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location /echo {
      proxy_pass http://invoke/2015-03-31/functions/echo/invocations;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host 127.0.0.1:$ENDPOINT_PORT;
    }
  }
}
EOF
"$NGINX" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" &
NGINX_PID=$!
PIDS+=($NGINX_PID)
GATEWAY_PID=${PIDS[1]}
wait_port "$NGINX_PORT"

cat >"$WORK/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"key1":"value1", "key2":"value2"}'
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
EOF

# Sanity: all three answer the seed's output.
for url in "http://127.0.0.1:$GATEWAY_PORT/echo" "http://127.0.0.1:$NGINX_PORT/echo" \
           "http://127.0.0.1:$ENDPOINT_PORT/2015-03-31/functions/echo/invocations"; do
  body="$(curl -sf "$url" -d '{"key1":"value1", "key2":"value2"}' -X POST)" || { echo "no answer from $url" >&2; cat "$WORK"/*.log >&2; exit 1; }
  [[ "$body" == *"Response from AWS Lambda"* ]] || { echo "unexpected answer from $url: $body" >&2; exit 1; }
done

# wrk output → "rps p50_us p99_us errors"
parse() {
  awk '
    function us(v) { if (v ~ /us$/) { sub(/us$/, "", v); return v+0 } if (v ~ /ms$/) { sub(/ms$/, "", v); return v*1000 } if (v ~ /s$/) { sub(/s$/, "", v); return v*1000000 } return v+0 }
    /^ +50%/ { p50 = us($2) } /^ +99%/ { p99 = us($2) } /^Requests\/sec:/ { rps = $2 }
    /Non-2xx or 3xx responses:/ { err += $5 } /Socket errors:/ { err += 1 }
    END { printf "%.0f %.0f %.0f %d\n", rps, p50, p99, err }'
}
run() { # url connections threads
  wrk -t"$3" -c"$2" -d"$DURATION" --latency -s "$WORK/post.lua" "$1" | parse
}
# CPU clock ticks (user+system) used so far by a process and its children processes (nginx workers).
ticks() { # pid
  local total=0 pid
  for pid in "$1" $(pgrep -P "$1" || true); do
    [[ -r /proc/$pid/stat ]] || continue
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$total"
}
declare -A PID_OF=([gateway]="$GATEWAY_PID" [nginx]="$NGINX_PID" [direct]="")
CLK_TCK=$(getconf CLK_TCK)
SECONDS_RUN=$(echo "$DURATION" | sed 's/s$//')

declare -A URL=(
  [gateway]="http://127.0.0.1:$GATEWAY_PORT/echo"
  [nginx]="http://127.0.0.1:$NGINX_PORT/echo"
  [direct]="http://127.0.0.1:$ENDPOINT_PORT/2015-03-31/functions/echo/invocations"
)
{
  echo "gateway benchmark $STAMP — $(nproc) cores (shared), $(uname -r), wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}'), $($NGINX -v 2>&1 | sed 's/.*: //')"
  echo "load: wrk -t$THREADS -c$CONNECTIONS -d$DURATION (throughput), wrk -t1 -c1 -d$DURATION (latency); $ROUNDS rounds, alternating"
  echo "gateway: $GATEWAY_BIN, release, default --workers (one per CPU = $(nproc)), SigV4 signing per request, access log off; nginx: 2 workers, upstream keepalive, access log off"
} | tee "$OUT"

declare -A RPS P50 P99 LAT50 LAT99 CPU
# Alternate which proxy goes first in each round, so neither always runs right after the other.
for round in $(seq 1 "$ROUNDS"); do
  if (( round % 2 )); then order="direct nginx gateway"; else order="direct gateway nginx"; fi
  for target in $order; do
    pid="${PID_OF[$target]}"
    before=$([[ -n "$pid" ]] && ticks "$pid" || echo 0)
    read -r rps p50 p99 err < <(run "${URL[$target]}" "$CONNECTIONS" "$THREADS")
    after=$([[ -n "$pid" ]] && ticks "$pid" || echo 0)
    cpu_us=$(awk -v t=$((after - before)) -v hz="$CLK_TCK" -v rps="$rps" -v s="$SECONDS_RUN" \
      'BEGIN { if (rps > 0 && t > 0) printf "%.1f", t / hz * 1e6 / (rps * s); else print "0" }')
    read -r _ l50 l99 lerr < <(run "${URL[$target]}" 1 1)
    printf 'round %d %-8s throughput %7d req/s  (p50 %5d us, p99 %6d us, errors %d, CPU %5s us/request) | 1 connection: p50 %4d us, p99 %5d us (errors %d)\n' \
      "$round" "$target" "$rps" "$p50" "$p99" "$err" "$cpu_us" "$l50" "$l99" "$lerr" | tee -a "$OUT"
    RPS[$target]="${RPS[$target]:-} $rps"; LAT50[$target]="${LAT50[$target]:-} $l50"; LAT99[$target]="${LAT99[$target]:-} $l99"
    CPU[$target]="${CPU[$target]:-} $cpu_us"
    P50[$target]="${P50[$target]:-} $p50"; P99[$target]="${P99[$target]:-} $p99"
  done
done

# Median over rounds (ROUNDS values) of each figure.
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END { if (NR%2) print a[(NR+1)/2]; else printf "%.0f\n", (a[NR/2]+a[NR/2+1])/2 }'; }
g_rps=$(echo "${RPS[gateway]}" | median); n_rps=$(echo "${RPS[nginx]}" | median); d_rps=$(echo "${RPS[direct]}" | median)
g_l50=$(echo "${LAT50[gateway]}" | median); n_l50=$(echo "${LAT50[nginx]}" | median); d_l50=$(echo "${LAT50[direct]}" | median)
g_l99=$(echo "${LAT99[gateway]}" | median); n_l99=$(echo "${LAT99[nginx]}" | median)
medianf() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END { if (NR%2) print a[(NR+1)/2]; else printf "%.1f\n", (a[NR/2]+a[NR/2+1])/2 }'; }
g_cpu=$(echo "${CPU[gateway]}" | medianf); n_cpu=$(echo "${CPU[nginx]}" | medianf)
{
  echo "summary (median of rounds):"
  printf '  throughput: gateway %d req/s, nginx %d req/s, direct %d req/s → gateway/nginx = %s\n' \
    "$g_rps" "$n_rps" "$d_rps" "$(awk -v g="$g_rps" -v n="$n_rps" 'BEGIN { printf "%.2f", g/n }')"
  printf '  1-connection latency: p50 gateway %d us, nginx %d us, direct %d us; p99 gateway %d us, nginx %d us\n' \
    "$g_l50" "$n_l50" "$d_l50" "$g_l99" "$n_l99"
  printf '  CPU per request (throughput phase): gateway %s us, nginx %s us\n' "$g_cpu" "$n_cpu"
  printf '  added median latency over direct: gateway %d us, nginx %d us\n' "$((g_l50 - d_l50))" "$((n_l50 - d_l50))"
} | tee -a "$OUT"
echo "results saved to $OUT"
