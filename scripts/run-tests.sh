#!/usr/bin/env bash
# Runs the whole test suite with cargo-nextest, which runs each test in a process of its own:
# tests that use the PC/SC library in-process need that (libpcsclite reads the daemon's socket
# path once per process). nextest is installed from crates.io when missing.
set -euo pipefail
if ! cargo nextest --version >/dev/null 2>&1; then
    echo "run-tests: installing cargo-nextest (once)"
    cargo install --locked cargo-nextest
fi
exec cargo nextest run --workspace --no-fail-fast --failure-output final "$@"
