#!/usr/bin/env bash
# Browser end-to-end test: Debian's Chromium (playwright-core) against switchboard-local,
# DynamoDB Local and coturn, all on 127.0.0.1, with switchboard-sfu as the rooms' task process.
# Builds the SDK (sdk/, which the demo pages import), installs what is missing, then runs
# `node --test tests/e2e/ sdk/test/`. Safe to run again; exits non-zero when anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-deps.sh
# ensure-deps.sh's Node.js, when the node on PATH is older than 20.
node_bin="${SWITCHBOARD_CACHE_DIR:-.cache}/node/bin"
if [ -x "$node_bin/node" ]; then PATH="$(cd "$node_bin" && pwd):$PATH"; export PATH; fi

if [ -f tests/e2e/package-lock.json ]; then
  (cd tests/e2e && npm ci --no-audit --no-fund --silent)
else
  (cd tests/e2e && npm install --no-audit --no-fund --silent)
fi

# The SDK (switchboard-client): TypeScript and a YAML parser from its package-lock, the check
# that its generated types match docs/, and the build the demo pages import (served at /sdk/).
(cd sdk && npm ci --no-audit --no-fund --silent && npm run build --silent)

cargo build --quiet -p switchboard-local -p switchboard-sfu

# The browser tests, and the SDK's own (its pure parts, and its packed tarball installed elsewhere).
node --test tests/e2e/ sdk/test/
