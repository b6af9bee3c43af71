#!/usr/bin/env bash
# Runs every check and test Switchboard has, installing what they need first.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
step() { printf '\n== %s (%ss)\n' "$1" "$(( $(date +%s) - start ))"; }

step "dependencies"
scripts/ensure-deps.sh

step "format"
cargo fmt --all -- --check

step "lint"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "template"
scripts/sam-validate.sh

step "unit and integration tests (DynamoDB Local, local stack, coturn)"
cargo test --workspace --quiet 2>&1 | tee .cache/cargo-test.log
rust_summary=$(grep -E '^test result:' .cache/cargo-test.log | awk '{p+=$4; f+=$6} END {print p" passed, "f" failed"}')

if [ -x scripts/e2e.sh ]; then
  step "browser end-to-end (Chromium, coturn, local stack)"
  scripts/e2e.sh
fi

step "done"
echo "rust tests: $rust_summary"
