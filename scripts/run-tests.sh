#!/usr/bin/env bash
# Runs the whole test suite. nextest runs each test in a process of its own (tests that use the
# PC/SC library in-process need that); plain `cargo test` is the fallback.
set -euo pipefail
if cargo nextest --version >/dev/null 2>&1; then
    exec cargo nextest run --workspace --no-fail-fast --failure-output final "$@"
else
    exec cargo test --workspace --no-fail-fast "$@"
fi
