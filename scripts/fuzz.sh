#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/) one after another, each for FUZZ_SECONDS seconds
# (default 30) or until FUZZ_RUNS executions when that is set, and prints one line per target:
#   FUZZ <target> execs=<n> exec_per_sec=<n> seconds=<n> corpus=<n> result=ok|CRASH
# Seeds come from fuzz/corpus/<target> (committed, read only); what the fuzzer learns goes to
# fuzz/target/corpus/<target> and is kept between runs. A crashing input is left in
# fuzz/artifacts/<target>/: copy it to fuzz/regressions/<target>/ so tests/fuzz_regressions.rs
# replays it in every test run, then fix the parser. Exits 1 when a target crashed.
# FUZZ_TARGETS="a b" picks targets. Needs the nightly toolchain; installs cargo-fuzz when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-30}
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz (once)"
    cargo install --locked cargo-fuzz
fi
targets=${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}
limits=(-max_total_time="$seconds")
if [ -n "${FUZZ_RUNS:-}" ]; then
    limits=(-runs="$FUZZ_RUNS")
fi
cargo +nightly fuzz build
mkdir -p fuzz/target/logs
status=0
for target in $targets; do
    work=fuzz/target/corpus/$target
    log=fuzz/target/logs/$target.log
    mkdir -p "$work"
    started=$(date +%s)
    result=ok
    cargo +nightly fuzz run "$target" "$work" "fuzz/corpus/$target" -- \
        "${limits[@]}" -timeout=10 -print_final_stats=1 >"$log" 2>&1 || result=CRASH
    elapsed=$(( $(date +%s) - started ))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    echo "FUZZ $target execs=${execs:-?} exec_per_sec=${rate:-?} seconds=$elapsed" \
         "corpus=$(find "$work" -type f | wc -l) result=$result"
    if [ "$result" != ok ]; then
        grep -E '^(==[0-9]+==|thread .* panicked|SUMMARY|artifact_prefix|Test unit written)' "$log" | head -20 || true
        status=1
    fi
done
exit $status
