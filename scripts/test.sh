#!/usr/bin/env bash
# Runs every check and test Switchboard has, installing what they need first.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
logs="${SWITCHBOARD_CACHE_DIR:-.cache}/logs"
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
mkdir -p "$logs"
cargo test --workspace --quiet 2>&1 | tee "$logs/cargo-test.log"
rust=$(grep -E '^test result:' "$logs/cargo-test.log" | awk '{p+=$4; f+=$6} END {print p+0, f+0}')

# tests/ws_fuzz.rs ran above (FUZZ_FRAMES, FUZZ_SEED make it longer or different).
step "HTTP API fuzzing (schemathesis against switchboard-local; FUZZ_EXAMPLES, FUZZ_SEED)"
scripts/fuzz.sh 2>&1 | tee "$logs/fuzz.log"

step "browser end-to-end (Chromium, coturn, local stack)"
scripts/e2e.sh 2>&1 | tee "$logs/e2e.log"
browser=$(awk '/^# pass /{p=$3} /^# fail /{f=$3} END {print p+0, f+0}' "$logs/e2e.log")

step "done"
read -r rust_pass rust_fail <<<"$rust"
read -r browser_pass browser_fail <<<"$browser"
echo "rust: $rust_pass passed, $rust_fail failed; browser: $browser_pass passed, $browser_fail failed"
echo "summary: $((rust_pass + browser_pass)) passed, $((rust_fail + browser_fail)) failed"
