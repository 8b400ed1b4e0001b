#!/usr/bin/env bash
# Smoke-fuzzes every target for a short time, each from its seed corpus
# (fuzz/corpus/<target>), as many at once as the machine has cores. Fails if
# any target does not build, or finds a crash, panic, broken invariant, leak
# or timeout; libFuzzer leaves the input in fuzz/artifacts/<target>/.
#
#   FUZZ_SECONDS   seconds per target (default 20)
#   FUZZ_TIMEOUT   seconds one input may take before it counts as a hang (default 30)
#   FUZZ_PROFILE   release (default: what cargo fuzz builds) or dev (opt-level 1,
#                  fuzz/Cargo.toml: builds in about three quarters of the time;
#                  what CI uses for its few seconds per target)
#   FUZZ_JOBS      targets run at once (default: the number of cores)
#   FUZZ_CHECK_SEEDS=1  first check the seed corpus is current (a build of its own, ~4 min)
#
# Needs no cargo-fuzz: the targets are built by cargo with the flags that
# `cargo fuzz build -s none` (cargo-fuzz 0.13, FuzzProject::cargo) passes,
# into fuzz/target/<host>/<profile>/, and the libFuzzer binaries are run
# directly. `-s none` (no sanitizer) is what runs on stable Rust.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-20}"
timeout="${FUZZ_TIMEOUT:-30}"
profile="${FUZZ_PROFILE:-release}"
parallel="${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}"
# cargo-fuzz's instrumentation: libFuzzer's coverage counters, comparison
# tracing and stack depth, `cfg(fuzzing)`, and debug assertions.
sancov="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4"
sancov+=" -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table"
sancov+=" -Cllvm-args=-sanitizer-coverage-trace-compares -Cllvm-args=-sanitizer-coverage-stack-depth"
sancov+=" -Cllvm-args=-simplifycfg-branch-fold-threshold=0 --cfg fuzzing -Cdebug-assertions"
case "$profile" in
  # One codegen unit, as cargo fuzz has it: slower to build, faster to run.
  release) profile_args=(--release); profile_dir=release; sancov+=" -Ccodegen-units=1" ;;
  dev) profile_args=(); profile_dir=debug ;;
  *) echo "smoke: FUZZ_PROFILE must be release or dev, not $profile" >&2; exit 2 ;;
esac

if [[ "${FUZZ_CHECK_SEEDS:-}" == 1 ]]; then
  # Stale seeds still fuzz, but no longer start past the signature checks.
  (cd fuzz && cargo run --locked --quiet --release --example seed -- --check)
fi

host=$(rustc -vV | sed -n 's/^host: //p')
start=$SECONDS
# --target keeps the flags off build scripts and proc macros, as cargo fuzz does.
RUSTFLAGS="$sancov ${RUSTFLAGS:-}" cargo build --locked --manifest-path fuzz/Cargo.toml \
  --target "$host" --target-dir fuzz/target ${profile_args[@]+"${profile_args[@]}"} \
  --config "profile.$profile.debug=\"line-tables-only\"" --bins
echo "smoke: built ($profile) in $((SECONDS - start)) s"
bin="fuzz/target/$host/$profile_dir"

targets=()
for source in fuzz/fuzz_targets/*.rs; do
  targets+=("$(basename "$source" .rs)")
done
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

# One target: libFuzzer adds what it finds to a scratch corpus, not to the seeds.
run_target() {
  local target=$1
  mkdir -p "$logs/$target.corpus" "fuzz/artifacts/$target"
  if "$bin/$target" "$logs/$target.corpus" "fuzz/corpus/$target" \
    -max_total_time="$seconds" -timeout="$timeout" -print_final_stats=1 \
    -artifact_prefix="fuzz/artifacts/$target/" >"$logs/$target.log" 2>&1; then
    echo "smoke: $target ok, $(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$target.log") runs in $seconds s"
  else
    echo "smoke: $target FAILED:" >&2
    tail -n 40 "$logs/$target.log" >&2
    touch "$logs/$target.failed"
  fi
}

start=$SECONDS
for target in "${targets[@]}"; do
  while (($(jobs -rp | wc -l) >= parallel)); do
    wait -n || true
  done
  run_target "$target" &
done
wait

failed=()
for target in "${targets[@]}"; do
  if [[ -e "$logs/$target.failed" ]]; then failed+=("$target"); fi
done
if ((${#failed[@]})); then
  echo "smoke: FAILED: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
echo "smoke: all ${#targets[@]} targets ran $seconds s without a failure ($parallel at once, $((SECONDS - start)) s)"
