#!/usr/bin/env bash
# `make demo`: the seed's flow ("Access AWS Lambda with a service account") on one machine, no AWS account.
#
#   moto (STS) <- credproxy (web-identity token -> AssumeRoleWithWebIdentity, container-credentials endpoint)
#                   <- gateway (seed manifests; AWS_CONTAINER_CREDENTIALS_FULL_URI) -> serverless-offline (echo)
#   curl localhost:8080/echo -d '{"key1":"value1", "key2":"value2"}' -X POST
#
# Builds the workspace, installs the pinned peers (idempotent), runs `webhook inject` on the seed's gateway
# Deployment + ServiceAccount (deploy/demo/gateway-pod.yaml: IRSA role annotation + podcred.dev/inject: "true")
# and prints the mutated pod, then derives how to run the pod locally from that output (deploy/demo/
# pod_to_local.py): the credproxy sidecar's args and env, the gateway container's args and env, each pod volume
# as a directory under the demo's temp dir (printed), in-pod addresses on 127.0.0.1. It writes a demo
# web-identity token where the projected token volume is mapped, starts credproxy (the native sidecar, first)
# and the gateway on 127.0.0.1, runs the seed's curl, prints the response, and stops everything it started
# (also on Ctrl-C or failure). The only settings not taken from the injected pod are the demo-local endpoints:
# AWS_ENDPOINT_URL_STS (moto) for credproxy and AWS_ENDPOINT_URL_LAMBDA (serverless-offline) for the gateway;
# both are printed as such.
#
# Variables:
#   DEMO_AWS=1            use real AWS instead of moto + serverless-offline (no demo-local endpoints); then also
#                         set AWS_LAMBDA_REGION, AWS_ACCOUNT_ID, AWS_ROLE_ARN (the seed's lambda-role, written
#                         into the ServiceAccount's role-arn annotation before injection) and
#                         AWS_WEB_IDENTITY_TOKEN_FILE (a service-account token the role trusts, copied to where
#                         the pod's projected token is mapped); see gateway/README.md
#   DEMO_SKIP_BUILD=1     do not run `cargo build` (binaries already in target/debug)
#   GATEWAY_PORT          the seed's port, default 8080;  CREDPROXY_PORT default 9911 (metrics = +1; passed to
#                         `webhook inject --sidecar-port`);  GATEWAY_ADMIN_PORT default 9091
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
# A free loopback port for a peer, never one of the ports the pod itself will use (they are bound later).
free_port() {
  python3 - "$GATEWAY_PORT" "$GATEWAY_ADMIN_PORT" "$CREDPROXY_PORT" "$CREDPROXY_METRICS_PORT" <<'PY'
import socket, sys
reserved = {int(p) for p in sys.argv[1:]}
while True:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    if port not in reserved:
        print(port)
        break
PY
}
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

SEED_POD="$ROOT/deploy/demo/gateway-pod.yaml"
ROUTES_DIR="$WORK/config-maps/http-routes"   # the gateway's `routes` volume (configMap http-routes)
mkdir -p "$ROUTES_DIR"
cp "$ROOT/deploy/demo/seed-routes.yaml" "$ROUTES_DIR/seed-routes.yaml"
PY="$CACHE/venv/bin/python"   # has PyYAML (moto depends on it)
if [[ "${DEMO_AWS:-0}" == 1 ]]; then
  : "${AWS_LAMBDA_REGION:?DEMO_AWS=1 needs AWS_LAMBDA_REGION}" "${AWS_ACCOUNT_ID:?DEMO_AWS=1 needs AWS_ACCOUNT_ID}"
  : "${AWS_ROLE_ARN:?DEMO_AWS=1 needs AWS_ROLE_ARN}" "${AWS_WEB_IDENTITY_TOKEN_FILE:?DEMO_AWS=1 needs AWS_WEB_IDENTITY_TOKEN_FILE}"
  [[ -r "$AWS_WEB_IDENTITY_TOKEN_FILE" ]] || die "AWS_WEB_IDENTITY_TOKEN_FILE=$AWS_WEB_IDENTITY_TOKEN_FILE is not readable"
  step "real AWS: Lambda in $AWS_LAMBDA_REGION, account $AWS_ACCOUNT_ID, role $AWS_ROLE_ARN"
  REGION="$AWS_LAMBDA_REGION"
  USER_TOKEN_FILE="$AWS_WEB_IDENTITY_TOKEN_FILE"
  # The seed's manifests with your region, account and role; everything else is the seed's.
  sed -e "s/region: us-east-1/region: $REGION/" -e "s/\"123456789012\"/\"$AWS_ACCOUNT_ID\"/" \
    "$ROOT/deploy/demo/seed-routes.yaml" > "$ROUTES_DIR/seed-routes.yaml"
  sed -e "s|eks.amazonaws.com/role-arn: .*|eks.amazonaws.com/role-arn: $AWS_ROLE_ARN|" -e "s/value: us-east-1/value: $REGION/" \
    "$SEED_POD" > "$WORK/gateway-pod.yaml"
  SEED_POD="$WORK/gateway-pod.yaml"
  # From here on only the injected pod's environment counts.
  unset AWS_ROLE_ARN AWS_WEB_IDENTITY_TOKEN_FILE AWS_REGION AWS_DEFAULT_REGION
  [[ -x "$PY" ]] || bash "$ROOT/tests/peers/install-moto.sh"
  DEMO_LOCAL_SIDECAR_ENV=()
  DEMO_LOCAL_APP_ENV=()
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
  USER_TOKEN_FILE=""
  DEMO_LOCAL_SIDECAR_ENV=(AWS_ENDPOINT_URL_STS="http://127.0.0.1:$MOTO_PORT")
  DEMO_LOCAL_APP_ENV=(AWS_ENDPOINT_URL_LAMBDA="http://127.0.0.1:$SLS_LAMBDA_PORT")
fi

SIDECAR_IMAGE=ghcr.io/podcred/credproxy:0.1.0
GATEWAY_IMAGE=ghcr.io/podcred/gateway:0.1.0
step "the pod the webhook makes of the seed's gateway Deployment + ServiceAccount"
echo "\$ webhook inject --sidecar-image=$SIDECAR_IMAGE --sidecar-port=$CREDPROXY_PORT --aws-default-region=$REGION -f $SEED_POD"
"$BIN/webhook" inject --sidecar-image="$SIDECAR_IMAGE" --sidecar-port="$CREDPROXY_PORT" --aws-default-region="$REGION" \
  -f "$SEED_POD" >"$WORK/pod.yaml" 2>"$WORK/inject.log" || die "webhook inject failed: $(cat "$WORK/inject.log")"
cat "$WORK/pod.yaml"

step "running that pod on this machine: what comes from the injected pod, and where its paths live here"
"$PY" "$ROOT/deploy/demo/pod_to_local.py" --pod "$WORK/pod.yaml" --root "$WORK/pod" --out "$WORK/pod.env" \
  --sidecar credproxy --app gateway \
  --image "$SIDECAR_IMAGE=$BIN/credproxy" --image "$GATEWAY_IMAGE=$BIN/gateway" \
  --config-map "http-routes=$ROUTES_DIR" --port "8080=$GATEWAY_PORT" --port "9091=$GATEWAY_ADMIN_PORT"
# shellcheck source=/dev/null
source "$WORK/pod.env"
[[ -n "$WEB_IDENTITY_TOKEN_PATH" ]] || die "the injected sidecar has no AWS_WEB_IDENTITY_TOKEN_FILE (is the ServiceAccount annotated with eks.amazonaws.com/role-arn?)"
[[ -n "$SIDECAR_READY_URL" && -n "$APP_READY_URL" ]] || die "the injected pod has no HTTP probes to wait on"
mkdir -p "$(dirname "$WEB_IDENTITY_TOKEN_PATH")"
if [[ -n "$USER_TOKEN_FILE" ]]; then
  cp "$USER_TOKEN_FILE" "$WEB_IDENTITY_TOKEN_PATH"
  echo "  projected service-account token: copied from your AWS_WEB_IDENTITY_TOKEN_FILE to $WEB_IDENTITY_TOKEN_PATH"
else
  # A JWT-shaped projected service-account token for system:serviceaccount:kgateway-system:http (moto does not
  # verify it; real STS would).
  python3 - "$WEB_IDENTITY_TOKEN_PATH" <<'PYTOKEN'
import base64, json, sys, time
b = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()
now = int(time.time())
claims = {"iss": "https://oidc.demo.podcred", "aud": "sts.amazonaws.com", "sub": "system:serviceaccount:kgateway-system:http", "iat": now, "exp": now + 86400}
open(sys.argv[1], "w").write(b({"alg": "RS256", "kid": "demo"}) + "." + b(claims) + ".ZGVtbw")
PYTOKEN
  echo "  projected service-account token: a demo JWT (sub system:serviceaccount:kgateway-system:http) at $WEB_IDENTITY_TOKEN_PATH"
fi
for e in "${DEMO_LOCAL_SIDECAR_ENV[@]}"; do echo "  $SIDECAR_NAME: env $e  (demo-local addition: moto instead of AWS STS)"; done
for e in "${DEMO_LOCAL_APP_ENV[@]}"; do echo "  $APP_NAME: env $e  (demo-local addition: serverless-offline instead of AWS Lambda)"; done

step "starting $SIDECAR_NAME (the native sidecar starts first; ready at $SIDECAR_READY_URL)"
env "${SIDECAR_ENV[@]}" "${DEMO_LOCAL_SIDECAR_ENV[@]}" "$SIDECAR_BIN" "${SIDECAR_ARGS[@]}" >"$WORK/credproxy.log" 2>&1 &
PIDS+=($!)
wait_http "$SIDECAR_READY_URL" credproxy 30

step "starting $APP_NAME (the seed's manifests, credentials from $SIDECAR_NAME; ready at $APP_READY_URL)"
env "${APP_ENV[@]}" "${DEMO_LOCAL_APP_ENV[@]}" "$APP_BIN" "${APP_ARGS[@]}" >"$WORK/gateway.log" 2>&1 &
PIDS+=($!)
wait_http "$APP_READY_URL" gateway 30
curl -s "$APP_READY_URL"; echo

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
