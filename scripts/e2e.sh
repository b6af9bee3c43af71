#!/usr/bin/env bash
# Browser end-to-end test: Debian's Chromium (playwright-core) against switchboard-local,
# DynamoDB Local and coturn, all on 127.0.0.1. Installs what is missing, then runs
# `node --test tests/e2e/`. Safe to run again; exits non-zero when anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v turnserver >/dev/null 2>&1 || missing+=(coturn)
if ((${#missing[@]})); then
  echo "e2e: installing ${missing[*]} with apt"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y "${missing[@]}"
fi

if [ -f tests/e2e/package-lock.json ]; then
  (cd tests/e2e && npm ci --no-audit --no-fund)
else
  (cd tests/e2e && npm install --no-audit --no-fund)
fi

cargo build -p switchboard-local

node --test tests/e2e/
