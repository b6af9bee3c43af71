#!/usr/bin/env bash
# Builds every function for Lambda (arm64, provided.al2023) with `sam build` and cargo-lambda,
# as a deploy would. Not part of scripts/test.sh: on 2 cores it takes about 20 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${SWITCHBOARD_CACHE_DIR:-.cache}/lambda-venv"
case "$venv" in /*) ;; *) venv="$PWD/$venv" ;; esac
if [[ ! -x "$venv/bin/cargo-lambda" || ! -x "$venv/bin/sam" ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet cargo-lambda aws-sam-cli
fi
# cargo-lambda runs zig through the first python3 on PATH: the venv's, which has ziglang.
export PATH="$venv/bin:$PATH" SAM_CLI_TELEMETRY=0

sam build --beta-features
find .aws-sam/build -name bootstrap -exec ls -l {} +
