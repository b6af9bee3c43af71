#!/usr/bin/env bash
# Starts Switchboard on 127.0.0.1: DynamoDB Local, the tables from template.yaml, the HTTP and
# WebSocket APIs, @connections, ECS, the demo pages, and a coturn for TURN relay. createRoom's
# tasks run switchboard-sfu, so a room holds a call out of the box.
# Installs what it needs first. Extra arguments go to switchboard-local (see README); a
# --sfu-command among them replaces switchboard-sfu as the rooms' task.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-deps.sh run

# One TURN secret shared by coturn and Switchboard (given, or made for this run).
export SWITCHBOARD_TURN_SECRET="${SWITCHBOARD_TURN_SECRET:-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')}"
turn_port="${SWITCHBOARD_TURN_PORT:-3478}"
export SWITCHBOARD_TURN_URLS="${SWITCHBOARD_TURN_URLS:-turn:127.0.0.1:${turn_port}?transport=udp,turn:127.0.0.1:${turn_port}?transport=tcp}"
export SWITCHBOARD_STUN_URLS="${SWITCHBOARD_STUN_URLS:-stun:127.0.0.1:${turn_port}}"

mkdir -p .cache
turnserver -n --listening-ip=127.0.0.1 --relay-ip=127.0.0.1 --allow-loopback-peers \
  --listening-port="$turn_port" --min-port=49160 --max-port=49200 \
  --use-auth-secret --static-auth-secret="$SWITCHBOARD_TURN_SECRET" --realm=switchboard \
  --no-cli --no-tls --no-dtls --fingerprint --log-file=.cache/turnserver.log >/dev/null 2>&1 &
turn_pid=$!
trap 'kill $turn_pid 2>/dev/null || true' EXIT
echo "coturn on 127.0.0.1:${turn_port} (log: .cache/turnserver.log)"

# The demo pages import the SDK, which the stack serves from sdk/dist.
(cd sdk && npm ci --no-audit --no-fund --silent && npm run build --silent)

# The `local` profile: unoptimised and without the Lambda binaries' LTO (quick from a fresh clone).
cargo build --profile local --bin switchboard-local --bin switchboard-sfu
bin="$(cd "${CARGO_TARGET_DIR:-target}/local" && pwd)"
# Rooms run switchboard-sfu (each task has its own loopback address, TASK_IP, so every room's SFU
# binds the same UDP port), unless the arguments choose another --sfu-command.
sfu=(--sfu-command "exec '$bin/switchboard-sfu'")
for arg in "$@"; do
  case "$arg" in --sfu-command|--sfu-command=*) sfu=() ;; esac
done
"$bin/switchboard-local" "${sfu[@]}" "$@" &
stack_pid=$!
trap 'kill -TERM $stack_pid 2>/dev/null || true; wait $stack_pid 2>/dev/null; kill $turn_pid 2>/dev/null || true' EXIT INT TERM
wait $stack_pid
