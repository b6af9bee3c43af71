#!/usr/bin/env bash
# Installs cargo-lambda (PyPI) into $SWITCHBOARD_CACHE_DIR/lambda-venv once, the venv
# scripts/sam-build.sh uses, and prints the venv's bin directory (put it first on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${SWITCHBOARD_CACHE_DIR:-.cache}/lambda-venv"
case "$venv" in /*) ;; *) venv="$PWD/$venv" ;; esac
if [[ ! -x "$venv/bin/cargo-lambda" ]]; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --upgrade pip >&2
  "$venv/bin/pip" install --quiet cargo-lambda >&2
fi
echo "$venv/bin"
