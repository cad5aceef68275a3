#!/usr/bin/env bash
# Starts a local 3-node AgentGate core on 127.0.0.1, waits until it has a leader, prints where
# everything is, and stops every node on Ctrl-C (or when the script exits for any reason).
# Data lives under ${AGENTGATE_LOCAL_DIR:-.local/cluster}; pass --fresh to start empty.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/agentgate-target}"
cargo build --workspace --all-targets --locked
BIN="$CARGO_TARGET_DIR/debug/agentgate-node"
DIR="${AGENTGATE_LOCAL_DIR:-.local/cluster}"
[ "${1:-}" = "--fresh" ] && rm -rf "$DIR"
mkdir -p "$DIR"
MEMBERS="1=127.0.0.1:7411,2=127.0.0.1:7421,3=127.0.0.1:7431"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; echo "stopped"; }
trap cleanup EXIT
trap "exit 130" INT TERM
for i in 1 2 3; do
  "$BIN" --id "$i" --listen "127.0.0.1:74${i}1" --http-listen "127.0.0.1:74${i}2" \
    --data-dir "$DIR/node$i" --initial-members "$MEMBERS" --log-format text \
    >"$DIR/node$i.out" 2>"$DIR/node$i.log" &
  pids+=($!)
done
for i in 1 2 3; do
  for _ in $(seq 1 200); do
    curl -fsS "http://127.0.0.1:74${i}2/readyz" >/dev/null 2>&1 && break
    kill -0 "${pids[$((i-1))]}" 2>/dev/null || { echo "node $i exited; see $DIR/node$i.log"; exit 1; }
    sleep 0.1
  done
  curl -fsS "http://127.0.0.1:74${i}2/readyz" >/dev/null || { echo "node $i not ready; see $DIR/node$i.log"; exit 1; }
  echo "node $i ready: grpc 127.0.0.1:74${i}1, health/metrics http://127.0.0.1:74${i}2 (log $DIR/node$i.log)"
done
echo "core cluster up; Ctrl-C stops it"
wait
