#!/usr/bin/env bash
# Browser end-to-end test: Debian's Chromium (playwright-core) against switchboard-local,
# DynamoDB Local and coturn, all on 127.0.0.1, with switchboard-sfu as the rooms' task process.
# Installs what is missing, then runs `node --test tests/e2e/`. Safe to run again; exits non-zero when anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-deps.sh

if [ -f tests/e2e/package-lock.json ]; then
  (cd tests/e2e && npm ci --no-audit --no-fund --silent)
else
  (cd tests/e2e && npm install --no-audit --no-fund --silent)
fi

cargo build --quiet -p switchboard-local -p switchboard-sfu

node --test tests/e2e/
