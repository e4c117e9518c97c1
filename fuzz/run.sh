#!/usr/bin/env bash
# make fuzz [FUZZ_SECONDS=N] [FUZZ_TARGETS="a b"]: runs every cargo-fuzz target N seconds (libFuzzer, nightly).
# Installs what it uses: cargo-fuzz (pinned) into $PODCRED_CACHE/cargo-fuzz, the nightly toolchain via rustup.
# New inputs go to $PODCRED_CACHE/fuzz/<target>/ (git-ignored); seeds are read from fuzz/corpus/<target>/.
# A crash leaves its input in $PODCRED_CACHE/fuzz/artifacts/<target>/ and fails the run: minimise it, copy it
# to fuzz/regressions/<target>/<what-broke>, fix the bug; `make test` then replays it forever.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${PODCRED_CACHE:-$PWD/.cache}"
SECONDS_PER_TARGET="${FUZZ_SECONDS:-30}"
CARGO_FUZZ_VERSION=0.13.2
ALL_TARGETS="webhook_admission webhook_mutate webhook_inject go_parsers credproxy_config credproxy_sts"
TARGETS="${FUZZ_TARGETS:-$ALL_TARGETS}"

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "==> installing the nightly toolchain (rustup)"
  rustup toolchain install nightly --profile minimal
fi
if ! "$CACHE/cargo-fuzz/bin/cargo-fuzz" --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  echo "==> installing cargo-fuzz $CARGO_FUZZ_VERSION into $CACHE/cargo-fuzz"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --root "$CACHE/cargo-fuzz"
fi
export PATH="$CACHE/cargo-fuzz/bin:$PATH"

# No sanitizer (the code is safe Rust: forbid(unsafe_code)); debug assertions on, so overflows are found.
FLAGS=(--fuzz-dir fuzz --features libfuzzer --sanitizer none --debug-assertions)
echo "==> building the fuzz targets (nightly, release + debug assertions)"
for target in $TARGETS; do
  cargo +nightly fuzz build "${FLAGS[@]}" "$target"
done

summary=()
failed=0
for target in $TARGETS; do
  work="$CACHE/fuzz/$target"
  artifacts="$CACHE/fuzz/artifacts/$target/"
  mkdir -p "$work" "$artifacts"
  log="$CACHE/fuzz/$target.log"
  echo "==> $target: ${SECONDS_PER_TARGET}s"
  if cargo +nightly fuzz run "${FLAGS[@]}" "$target" "$work" "fuzz/corpus/$target" -- \
      -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 -rss_limit_mb=2048 -max_len=65536 \
      -artifact_prefix="$artifacts" >"$log" 2>&1; then
    status=ok
  else
    status="FAILED (see $log and $artifacts)"
    failed=1
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
  corpus=$(ls "$work" | wc -l)
  summary+=("| $target | ${execs:-?} | ${cov:-?} | $corpus | $status |")
done
echo
echo "| target | executions | coverage (edges) | new corpus inputs | result |"
echo "| --- | --- | --- | --- | --- |"
printf '%s\n' "${summary[@]}"
exit $failed
