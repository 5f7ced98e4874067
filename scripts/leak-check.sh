#!/usr/bin/env bash
# `make leaks`: card handshakes and iotsafe_dane_verify_client calls (examples/leak_check.rs)
# under valgrind, each at a small and a large count (LEAK_SMALL, default LEAK_COUNT/10, and
# LEAK_COUNT, default 10000). Fails when the bytes valgrind finds definitely or indirectly lost
# grow with the count, or when a run fails. Prints one line per run:
#   LEAKS <mode> count=<n> definitely_lost=<bytes> indirectly_lost=<bytes> in_use_at_exit=<bytes> seconds=<n>
# (in use at exit: what is still allocated, reachable, when the process ends; shown, not judged)
# LEAK_MODES="verify handshakes" picks the workloads. Logs: target/leaks/<mode>-<count>.log.
# Needs valgrind (Debian package valgrind) and what the tests need (pcscd, vpcd, knotd); the
# workspace must be built (`make build`).
set -euo pipefail
cd "$(dirname "$0")/.."
large=${LEAK_COUNT:-10000}
small=${LEAK_SMALL:-$((large / 10))}
modes=${LEAK_MODES:-verify handshakes}
command -v valgrind >/dev/null || { echo "leaks: valgrind is not installed"; exit 1; }
cargo build --quiet --workspace
cargo build --quiet --example leak_check
mkdir -p target/leaks

# Bytes of one kind ("definitely", "indirectly") in a valgrind log's leak summary.
lost() {
    sed -n "s/.*$1 lost: \([0-9,]*\) bytes.*/\1/p" "$2" | tail -1 | tr -d , | grep . || echo 0
}

status=0
for mode in $modes; do
    declare -A total=()
    for count in $small $large; do
        log=target/leaks/$mode-$count.log
        started=$(date +%s)
        valgrind --leak-check=full --show-leak-kinds=definite,indirect \
            --errors-for-leak-kinds=definite,indirect --num-callers=30 \
            target/debug/examples/leak_check "$mode" "$count" >"$log" 2>&1 || true
        if ! grep -q "^LEAKCHECK .* $count\$" "$log"; then
            echo "LEAKS $mode count=$count FAILED (the workload did not finish: $log)"
            status=1
            continue
        fi
        definite=$(lost definitely "$log")
        indirect=$(lost indirectly "$log")
        in_use=$(sed -n 's/.*in use at exit: \([0-9,]*\) bytes.*/\1/p' "$log" | tail -1 | tr -d ,)
        total[$count]=$((definite + indirect))
        echo "LEAKS $mode count=$count definitely_lost=$definite indirectly_lost=$indirect" \
             "in_use_at_exit=${in_use:-?}" \
             "seconds=$(( $(date +%s) - started ))"
    done
    if [ -n "${total[$small]:-}" ] && [ -n "${total[$large]:-}" ] \
        && [ "${total[$large]}" -gt "${total[$small]}" ]; then
        echo "LEAKS $mode: lost bytes grow with the count (${total[$small]} at $small," \
             "${total[$large]} at $large): see target/leaks/$mode-$large.log"
        status=1
    fi
    unset total
done
exit $status
