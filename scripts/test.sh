#!/usr/bin/env bash
# Runs every check and test Switchboard has, installing what they need first. A failing step
# does not stop the run: every step runs, the last line is `summary: N passed, M failed`
# (N and M count tests; a failed step that runs no tests of its own counts as one failed),
# and the exit status is non-zero when anything failed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
start=$(date +%s)
logs="${SWITCHBOARD_CACHE_DIR:-.cache}/logs"
mkdir -p "$logs"
passed=0
failed=0
failed_steps=()
step() { printf '\n== %s (%ss)\n' "$1" "$(( $(date +%s) - start ))"; }
# A step without tests of its own (installs, fmt, clippy, the template): one failure if it fails.
check() {
  local name="$1"
  shift
  step "$name"
  if ! "$@"; then
    failed=$((failed + 1))
    failed_steps+=("$name")
  fi
}
# A step whose tests are counted from its log by $count (an awk program printing "passed failed").
# A step that fails while its log counts no failed test (it did not build, say) adds one failure.
counted() {
  local name="$1" log="$2" count="$3"
  shift 3
  step "$name"
  "$@" 2>&1 | tee "$logs/$log"
  local status=${PIPESTATUS[0]} p f
  read -r p f < <(awk "$count" "$logs/$log")
  passed=$((passed + p))
  failed=$((failed + f))
  if [ "$status" -ne 0 ]; then
    [ "$f" -gt 0 ] || failed=$((failed + 1))
    failed_steps+=("$name")
  fi
  echo "$name: $p passed, $f failed"
}
# shellcheck disable=SC2016 # awk programs
cargo_count='/^test result:/ {p+=$4; f+=$6} END {print p+0, f+0}'
# shellcheck disable=SC2016
node_count='/^# pass /{p=$3} /^# fail /{f=$3} END {print p+0, f+0}'
none='END {print 0, 0}'

check "dependencies" scripts/ensure-deps.sh
# ensure-deps.sh's Node.js, when the node on PATH is older than 20.
node_bin="${SWITCHBOARD_CACHE_DIR:-.cache}/node/bin"
if [ -x "$node_bin/node" ]; then PATH="$(cd "$node_bin" && pwd):$PATH"; export PATH; fi
check "format" cargo fmt --all -- --check
check "lint" cargo clippy --workspace --all-targets --quiet -- -D warnings
check "template" scripts/sam-validate.sh
counted "unit and integration tests (DynamoDB Local, local stack, coturn)" cargo-test.log \
  "$cargo_count" cargo test --workspace --no-fail-fast --quiet
# tests/ws_fuzz.rs ran above (FUZZ_FRAMES, FUZZ_SEED make it longer or different).
counted "HTTP API fuzzing (schemathesis against switchboard-local; FUZZ_EXAMPLES, FUZZ_SEED)" \
  fuzz.log "$none" scripts/fuzz.sh
counted "browser end-to-end (Chromium, coturn, local stack)" e2e.log "$node_count" scripts/e2e.sh

step "done"
if [ ${#failed_steps[@]} -gt 0 ]; then
  printf 'failed: %s\n' "${failed_steps[@]}"
fi
echo "summary: $passed passed, $failed failed"
[ ${#failed_steps[@]} -eq 0 ]
