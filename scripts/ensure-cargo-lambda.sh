#!/usr/bin/env bash
# Installs cargo-lambda (its PyPI package, which brings zig for cross builds) into
# $SWITCHBOARD_CACHE_DIR/lambda-venv once, and prints that venv's bin directory: put it first on
# PATH (`cargo lambda` finds cargo-lambda there, and a cross build finds the venv's python3,
# which has ziglang). scripts/sam-build.sh adds the SAM CLI to the same venv.
# Installed already, it only prints the directory. Concurrent runs install once (flock).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${SWITCHBOARD_CACHE_DIR:-.cache}/lambda-venv"
case "$venv" in /*) ;; *) venv="$PWD/$venv" ;; esac
if [[ ! -x "$venv/bin/cargo-lambda" ]]; then
  mkdir -p "$(dirname "$venv")"
  exec 9>"$venv.lock"
  flock 9
  if [[ ! -x "$venv/bin/cargo-lambda" ]]; then
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --upgrade pip >&2
    "$venv/bin/pip" install --quiet cargo-lambda >&2
  fi
fi
echo "$venv/bin"
