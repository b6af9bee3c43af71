#!/usr/bin/env bash
# Switchboard's benchmarks against DynamoDB Local and the local stack, on this machine.
#   scripts/bench.sh [--quick] --out FILE [--report FILE] [--plots DIR]
# Writes FILE (one flat JSON object of metrics), regenerates BENCHMARKS.md and its plots under
# docs/bench/ (or --report / --plots), and exits non-zero when a count-based goal is missed.
# --quick (CI): pools of 10 and 1,000, smaller contention, no cold start (no release build), the
# SFU (a dev build) in one room of 3; under 3 minutes. Full: pools up to 100,000, the function
# binaries built once with the release profile for the cold-start figures, the SFU as its image
# builds it (profile `sfu`) in rooms of 4 and 16, and the browser test's late joiners
# (tests/e2e/sfu.test.mjs) for the time to a first frame.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/switchboard/target}"
export SWITCHBOARD_CACHE_DIR="${SWITCHBOARD_CACHE_DIR:-$HOME/.cache/switchboard}"

quick=0
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; args+=(--quick); shift ;;
    --out|--report|--plots)
      [ $# -ge 2 ] || { echo "$1 needs a value" >&2; exit 2; }
      case "$2" in /*) path="$2" ;; *) path="$OLDPWD/$2" ;; esac
      args+=("$1" "$path"); shift 2 ;;
    *) echo "usage: scripts/bench.sh [--quick] --out FILE [--report FILE] [--plots DIR]" >&2; exit 2 ;;
  esac
done
printf '%s\n' "${args[@]}" | grep -qx -- --out || { echo "--out FILE is required" >&2; exit 2; }

scripts/ensure-deps.sh run >/dev/null
if [ "$quick" = 0 ] && ! command -v strace >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq strace >/dev/null
fi

# Binaries in the shared target directory may be overwritten by other builds: run copies.
private=$(mktemp -d)
trap 'rm -rf "$private"' EXIT
cargo build --quiet -p switchboard-bench
cargo build --quiet -p switchboard-local --bin switchboard-example-server
cp "$CARGO_TARGET_DIR/debug/switchboard-bench" "$CARGO_TARGET_DIR/debug/switchboard-example-server" "$private/"
args+=(--example-server "$private/switchboard-example-server")
if [ "$quick" = 1 ]; then
  cargo build --quiet -p switchboard-sfu --bin switchboard-sfu
  cp "$CARGO_TARGET_DIR/debug/switchboard-sfu" "$private/"
else
  echo "SFU build (profile sfu, as its image)" >&2
  cargo build --quiet --profile sfu -p switchboard-sfu --bin switchboard-sfu
  cp "$CARGO_TARGET_DIR/sfu/switchboard-sfu" "$private/"
fi
args+=(--sfu "$private/switchboard-sfu")

if [ "$quick" = 0 ]; then
  functions=()
  for dir in functions/*/; do functions+=("$(basename "$dir")"); done
  started=$(date +%s)
  packages=()
  for f in "${functions[@]}" bench-hello; do packages+=(-p "$f"); done
  echo "release build: ${functions[*]} bench-hello" >&2
  cargo build --release --quiet "${packages[@]}"
  mkdir -p "$private/bootstraps"
  for f in "${functions[@]}" bench-hello; do cp "$CARGO_TARGET_DIR/release/$f" "$private/bootstraps/"; done
  args+=(--bootstraps "$private/bootstraps" --build-seconds "$(( $(date +%s) - started ))")
fi

if [ "$quick" = 0 ]; then
  # A late joiner's first decoded frame, in Chromium, against the same SFU build.
  echo "browser test (late joiners' first frame)" >&2
  scripts/ensure-deps.sh >/dev/null
  (cd tests/e2e && npm ci --no-audit --no-fund --silent)
  cargo build --quiet -p switchboard-local
  if SWITCHBOARD_SFU_BIN="$private/switchboard-sfu" SWITCHBOARD_E2E_METRICS="$private/join.json" \
      node --test tests/e2e/sfu.test.mjs >"$private/e2e.log" 2>&1; then
    args+=(--join-metrics "$private/join.json")
  else
    echo "the browser test failed (no join figure); its output:" >&2
    tail -40 "$private/e2e.log" >&2
    [ -f "$private/join.json" ] && args+=(--join-metrics "$private/join.json")
  fi
fi

"$private/switchboard-bench" "${args[@]}"
