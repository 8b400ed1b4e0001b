#!/usr/bin/env bash
# Smoke-fuzzes every target for a short time, each from its seed corpus
# (fuzz/corpus/<target>). Fails if any target finds a crash, panic, broken
# invariant, leak or timeout; libFuzzer leaves the input in fuzz/artifacts/<target>/.
#
#   FUZZ_SECONDS   seconds per target (default 20)
#   FUZZ_TIMEOUT   seconds one input may take before it counts as a hang (default 30)
#   FUZZ_CHECK_SEEDS=1  first check the seed corpus is current (a build of its own, ~4 min)
#
# Runs on stable Rust: `-s none` builds without a sanitizer, the one part of
# cargo fuzz that needs nightly.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-20}"
timeout="${FUZZ_TIMEOUT:-30}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

if [[ "${FUZZ_CHECK_SEEDS:-}" == 1 ]]; then
  # Stale seeds still fuzz, but no longer start past the signature checks.
  (cd fuzz && cargo run --quiet --release --example seed -- --check)
fi

start=$SECONDS
cargo fuzz build -s none
echo "smoke: built in $((SECONDS - start)) s"

failed=()
for target in $(cargo fuzz list); do
  echo "smoke: $target for $seconds s"
  if ! cargo fuzz run -s none "$target" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -timeout="$timeout" -print_final_stats=1; then
    failed+=("$target")
  fi
done

if ((${#failed[@]})); then
  echo "smoke: FAILED: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
echo "smoke: all $(cargo fuzz list | wc -l) targets ran ${seconds} s without a failure"
