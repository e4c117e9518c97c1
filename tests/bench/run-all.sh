#!/usr/bin/env bash
# `make bench`: every benchmark, one after the other (never concurrently: they share 2 cores).
# Each script writes its figures to stdout and bench-results/. Release builds; loopback only; bounded in time.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
cargo bench -p webhook --bench mutate -- --warm-up-time 2 --measurement-time 5
bash tests/bench/webhook.sh
bash tests/bench/credproxy.sh
bash tests/bench/gateway.sh
bash tests/bench/webhook-side-by-side.sh
