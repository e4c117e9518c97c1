#!/usr/bin/env bash
# `make demo`: the seed's flow ("Access AWS Lambda with a service account") on one machine, no AWS account.
#
#   moto (STS) <- credproxy (web-identity token -> AssumeRoleWithWebIdentity, container-credentials endpoint)
#                   <- gateway (seed manifests; AWS_CONTAINER_CREDENTIALS_FULL_URI) -> serverless-offline (echo)
#   curl localhost:8080/echo -d '{"key1":"value1", "key2":"value2"}' -X POST
#
# Builds the workspace, installs the pinned peers (idempotent), prints the pod the webhook makes of the seed's
# gateway Deployment, starts everything on 127.0.0.1, runs the seed's curl, prints the response, and stops
# everything it started (also on Ctrl-C or failure).
#
# Variables:
#   DEMO_AWS=1            use real AWS instead of moto + serverless-offline; then also set AWS_LAMBDA_REGION,
#                         AWS_ACCOUNT_ID, AWS_ROLE_ARN (the seed's lambda-role) and AWS_WEB_IDENTITY_TOKEN_FILE
#                         (a service-account token the role trusts); see gateway/README.md
#   DEMO_SKIP_BUILD=1     do not run `cargo build` (binaries already in target/debug)
#   GATEWAY_PORT          the seed's port, default 8080;  CREDPROXY_PORT default 9911 (metrics = +1);
#   GATEWAY_ADMIN_PORT    default 9091
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${PODCRED_CACHE:-$ROOT/.cache}"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug"
GATEWAY_PORT="${GATEWAY_PORT:-8080}"
GATEWAY_ADMIN_PORT="${GATEWAY_ADMIN_PORT:-9091}"
CREDPROXY_PORT="${CREDPROXY_PORT:-9911}"
CREDPROXY_METRICS_PORT=$((CREDPROXY_PORT + 1))
EXPECTED='{"statusCode":200,"body":"Response from AWS Lambda. Here'"'"'s the request you just sent me: {\"key1\":\"value1\",\"key2\":\"value2\"}"}'

# Nothing in the demo may reach a real account or IMDS unless DEMO_AWS=1 asks for it.
export AWS_EC2_METADATA_DISABLED=true
if [[ "${DEMO_AWS:-0}" != 1 ]]; then
  export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
  unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE AWS_ENDPOINT_URL || true
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/podcred-demo.XXXXXX")"
PIDS=()
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [[ $status -ne 0 ]]; then
    for log in "$WORK"/*.log; do
      [[ -f "$log" ]] || continue
      echo "--- last lines of $(basename "$log") ---" >&2
      tail -n 20 "$log" >&2
    done
  fi
  rm -rf "$WORK"
  echo "==> stopped everything the demo started"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '\n==> %s\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # url what timeout_s
  local deadline=$((SECONDS + $3))
  until curl -sf -o /dev/null "$1"; do
    (( SECONDS < deadline )) || die "$2 did not become ready at $1 within $3 s"
    sleep 0.2
  done
}
wait_port() { # port what timeout_s
  local deadline=$((SECONDS + $3))
  until port_in_use "$1"; do
    (( SECONDS < deadline )) || die "$2 did not listen on 127.0.0.1:$1 within $3 s"
    sleep 0.2
  done
}

for p in "$GATEWAY_PORT" "$GATEWAY_ADMIN_PORT" "$CREDPROXY_PORT" "$CREDPROXY_METRICS_PORT"; do
  port_in_use "$p" && die "127.0.0.1:$p is already in use (set GATEWAY_PORT / GATEWAY_ADMIN_PORT / CREDPROXY_PORT)"
done
command -v curl >/dev/null || die "curl is required (apt-get install -y curl)"

if [[ "${DEMO_SKIP_BUILD:-0}" != 1 ]]; then
  step "building the workspace (cargo build --workspace --bins)"
  (cd "$ROOT" && cargo build --workspace --bins)
fi
for b in gateway credproxy webhook; do
  [[ -x "$BIN/$b" ]] || die "$BIN/$b missing: run cargo build --workspace --bins"
done

ROUTES="$ROOT/deploy/demo/seed-routes.yaml"
if [[ "${DEMO_AWS:-0}" == 1 ]]; then
  : "${AWS_LAMBDA_REGION:?DEMO_AWS=1 needs AWS_LAMBDA_REGION}" "${AWS_ACCOUNT_ID:?DEMO_AWS=1 needs AWS_ACCOUNT_ID}"
  : "${AWS_ROLE_ARN:?DEMO_AWS=1 needs AWS_ROLE_ARN}" "${AWS_WEB_IDENTITY_TOKEN_FILE:?DEMO_AWS=1 needs AWS_WEB_IDENTITY_TOKEN_FILE}"
  step "real AWS: Lambda in $AWS_LAMBDA_REGION, account $AWS_ACCOUNT_ID, role $AWS_ROLE_ARN"
  sed -e "s/region: us-east-1/region: $AWS_LAMBDA_REGION/" -e "s/\"123456789012\"/\"$AWS_ACCOUNT_ID\"/" "$ROUTES" > "$WORK/seed-routes.yaml"
  ROUTES="$WORK/seed-routes.yaml"
  REGION="$AWS_LAMBDA_REGION"
  ROLE_ARN="$AWS_ROLE_ARN"
  TOKEN_FILE="$AWS_WEB_IDENTITY_TOKEN_FILE"
  STS_ENV=()
  LAMBDA_ENV=()
else
  step "installing the pinned peers (idempotent): moto 5.2.5, serverless 3 + serverless-offline 13"
  bash "$ROOT/tests/peers/install-moto.sh"
  bash "$ROOT/tests/peers/install-serverless.sh"

  MOTO_PORT="$(free_port)"
  step "starting moto (STS) on 127.0.0.1:$MOTO_PORT"
  "$CACHE/venv/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >"$WORK/moto.log" 2>&1 &
  PIDS+=($!)
  wait_http "http://127.0.0.1:$MOTO_PORT/moto-api/" moto 30

  SLS_LAMBDA_PORT="$(free_port)"
  SLS_HTTP_PORT="$(free_port)"
  step "starting serverless-offline with the seed's echo function (Node.js) on 127.0.0.1:$SLS_LAMBDA_PORT"
  (cd "$ROOT/tests/peers/sls" && SLS_TELEMETRY_DISABLED=1 SLS_NOTIFICATIONS_MODE=off SLS_DEPRECATION_DISABLE='*' \
    exec node node_modules/serverless/bin/serverless.js offline start --host 127.0.0.1 \
      --httpPort "$SLS_HTTP_PORT" --lambdaPort "$SLS_LAMBDA_PORT" --noPrependStageInUrl) >"$WORK/serverless.log" 2>&1 &
  PIDS+=($!)
  wait_port "$SLS_LAMBDA_PORT" serverless-offline 60

  REGION=us-east-1
  ROLE_ARN="arn:aws:iam::123456789012:role/lambda-role"
  # A JWT-shaped projected service-account token for system:serviceaccount:kgateway-system:http (moto does not
  # verify it; real STS would).
  TOKEN_FILE="$WORK/token/token"
  mkdir -p "$WORK/token"
  python3 - "$TOKEN_FILE" <<'PY'
import base64, json, sys, time
b = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()
now = int(time.time())
claims = {"iss": "https://oidc.demo.podcred", "aud": "sts.amazonaws.com", "sub": "system:serviceaccount:kgateway-system:http", "iat": now, "exp": now + 86400}
open(sys.argv[1], "w").write(b({"alg": "RS256", "kid": "demo"}) + "." + b(claims) + ".ZGVtbw")
PY
  STS_ENV=(AWS_ENDPOINT_URL_STS="http://127.0.0.1:$MOTO_PORT")
  LAMBDA_ENV=(AWS_ENDPOINT_URL_LAMBDA="http://127.0.0.1:$SLS_LAMBDA_PORT")
fi

step "the pod the webhook makes of the seed's gateway Deployment + ServiceAccount (webhook inject)"
if "$BIN/webhook" inject --sidecar-image=ghcr.io/podcred/credproxy:0.1.0 -f "$ROOT/deploy/demo/gateway-pod.yaml" >"$WORK/pod.yaml" 2>"$WORK/inject.log" \
   && [[ -s "$WORK/pod.yaml" ]] && ! grep -q "not built yet" "$WORK/pod.yaml"; then
  cat "$WORK/pod.yaml"
else
  echo "(webhook inject is not available in this build: $(head -c 300 "$WORK/inject.log" "$WORK/pod.yaml" 2>/dev/null | tr '\n' ' '))"
  echo "(running credproxy and gateway per the webhook's sidecar contract instead)"
fi

AUTH_DIR="$WORK/podcred-auth"   # the pod's in-memory emptyDir /var/run/podcred/auth
mkdir -p "$AUTH_DIR"
step "starting credproxy as the injected sidecar: 127.0.0.1:$CREDPROXY_PORT, role $ROLE_ARN"
env AWS_ROLE_ARN="$ROLE_ARN" AWS_WEB_IDENTITY_TOKEN_FILE="$TOKEN_FILE" AWS_REGION="$REGION" AWS_DEFAULT_REGION="$REGION" \
    AWS_STS_REGIONAL_ENDPOINTS=regional "${STS_ENV[@]}" \
  "$BIN/credproxy" --listen="127.0.0.1:$CREDPROXY_PORT" --metrics-listen="127.0.0.1:$CREDPROXY_METRICS_PORT" \
    --auth-token-file="$AUTH_DIR/token" >"$WORK/credproxy.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$CREDPROXY_METRICS_PORT/readyz" credproxy 30

step "starting the gateway as the pod's gateway container: the seed's manifests, credentials from credproxy"
env AWS_CONTAINER_CREDENTIALS_FULL_URI="http://127.0.0.1:$CREDPROXY_PORT/v1/credentials" \
    AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE="$AUTH_DIR/token" AWS_REGION="$REGION" "${LAMBDA_ENV[@]}" \
  "$BIN/gateway" --config="$ROUTES" --listen="127.0.0.1:$GATEWAY_PORT" --admin-listen="127.0.0.1:$GATEWAY_ADMIN_PORT" \
    >"$WORK/gateway.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$GATEWAY_ADMIN_PORT/readyz" gateway 30
curl -s "http://127.0.0.1:$GATEWAY_ADMIN_PORT/readyz"; echo

step "the seed's request"
echo "\$ curl localhost:$GATEWAY_PORT/echo -d '{\"key1\":\"value1\", \"key2\":\"value2\"}' -X POST"
RESPONSE="$(curl -s "localhost:$GATEWAY_PORT/echo" -d '{"key1":"value1", "key2":"value2"}' -X POST)"
echo "$RESPONSE"
if [[ "$RESPONSE" != "$EXPECTED" ]]; then
  echo "demo: unexpected response; the seed documents:" >&2
  echo "$EXPECTED" >&2
  exit 1
fi
echo
echo "==> the gateway served the seed's documented response"
