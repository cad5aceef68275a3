#!/usr/bin/env bash
# The local AgentGate cluster and a narrated scenario, on 127.0.0.1:
#   3 core nodes (gRPC 7411/7421/7431, health+metrics 7412/7422/7432), one edge (MCP 7480,
#   health+metrics 7481) and a demo MCP server (7490, the Python SDK), then, through
#   agentgate-admin and a real MCP client: a tenant, an agent, an upstream and the default
#   policy; an allowed call, a denied call, a made-up tool refused, an approval, a global pause
#   and resume, and an audit verification.
#
# Usage: scripts/run-local.sh [--keep]
#   --keep   leave everything running after the scenario (Ctrl-C stops it) to try the CLI.
# Data and logs live under ${AGENTGATE_LOCAL_DIR:-.local/demo}, emptied at every start.
# Ctrl-C (or any failure) stops every process this script started.
set -euo pipefail
cd "$(dirname "$0")/.."
KEEP=0
for a in "$@"; do
  case "$a" in
    --keep) KEEP=1 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $a (try --help)" >&2; exit 3 ;;
  esac
done

scripts/setup.sh
scripts/setup-e2e.sh >/dev/null
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/agentgate-target}"
echo "building (the first build compiles RocksDB: ~25 minutes on 2 cores)…"
cargo build --workspace --all-targets --locked
BIN="$CARGO_TARGET_DIR/debug"
PY="${AGENTGATE_E2E_DIR:-.e2e}/venv/bin/python"
DIR="${AGENTGATE_LOCAL_DIR:-.local/demo}"

for port in 7411 7412 7421 7422 7431 7432 7480 7481 7490; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port on 127.0.0.1 is in use (another run-local.sh?); stop that first" >&2
    exit 1
  fi
done
rm -rf "$DIR" && mkdir -p "$DIR"

pids=()
cleanup() {
  trap - EXIT INT TERM
  if [ ${#pids[@]} -gt 0 ]; then
    kill "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
  echo "stopped every process (logs in $DIR)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ready() { # NAME URL PID LOG: waits up to 30 s for URL to answer 200
  for _ in $(seq 1 300); do
    curl -fsS "$2" >/dev/null 2>&1 && return 0
    kill -0 "$3" 2>/dev/null || { echo "$1 exited; see $4" >&2; exit 1; }
    sleep 0.1
  done
  echo "$1 not ready after 30 s; see $4" >&2
  exit 1
}

MEMBERS="1=127.0.0.1:7411,2=127.0.0.1:7421,3=127.0.0.1:7431"
for i in 1 2 3; do
  "$BIN/agentgate-node" --id "$i" --listen "127.0.0.1:74${i}1" --http-listen "127.0.0.1:74${i}2" \
    --data-dir "$DIR/node$i" --initial-members "$MEMBERS" --log-format text \
    >"$DIR/node$i.out" 2>"$DIR/node$i.log" &
  pids+=($!)
done
for i in 1 2 3; do ready "node $i" "http://127.0.0.1:74${i}2/readyz" "${pids[$((i-1))]}" "$DIR/node$i.log"; done

"$PY" tests/e2e/upstream_server.py 7490 >"$DIR/upstream.log" 2>&1 &
pids+=($!)
SESSION_KEY="$(head -c 32 /dev/urandom | base64 | tr -d '\n')"
"$BIN/agentgate-edge" --listen 127.0.0.1:7480 --http-listen 127.0.0.1:7481 \
  --core 127.0.0.1:7411,127.0.0.1:7421,127.0.0.1:7431 --session-key "$SESSION_KEY" \
  --log-format text >"$DIR/edge.out" 2>"$DIR/edge.log" &
pids+=($!)
ready "edge" "http://127.0.0.1:7481/readyz" "${pids[-1]}" "$DIR/edge.log"
for _ in $(seq 1 300); do
  (exec 3<>/dev/tcp/127.0.0.1/7490) 2>/dev/null && break
  sleep 0.1
done

cat <<EOF
up on 127.0.0.1:
  core nodes   gRPC 7411, 7421, 7431   health/metrics http://127.0.0.1:7412 7422 7432
  edge         MCP  http://127.0.0.1:7480/t/{tenant}/{server}/mcp   health/metrics http://127.0.0.1:7481
  MCP server   http://127.0.0.1:7490/mcp (the demo upstream, Python MCP SDK)
  data, logs   $DIR/
EOF

export AGENTGATE_ENDPOINT=127.0.0.1:7411,127.0.0.1:7421,127.0.0.1:7431
export AGENTGATE_ACTOR=demo-operator
MCP_URL="http://127.0.0.1:7480/t/demo/files/mcp"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
admin() { printf '$ agentgate-admin %s\n' "$*"; "$BIN/agentgate-admin" "$@"; }
# The revision a change produced, from `agentgate-admin --json` output on stdin.
revision() { "$PY" -c 'import json,sys; print(json.load(sys.stdin)["revision"])'; }
# Waits until the edge holds revision $1 (kill switches and policy reach it by push).
edge_at() {
  for _ in $(seq 1 300); do
    local r
    r="$(curl -fsS http://127.0.0.1:7481/metrics | awk '/^agentgate_edge_snapshot_revision /{print $2}')"
    [ -n "$r" ] && [ "${r%.*}" -ge "$1" ] && return 0
    sleep 0.01
  done
  echo "the edge did not reach revision $1; see $DIR/edge.log" >&2
  exit 1
}
agent() { # STEP…: one MCP session of the demo agent through the edge
  printf '$ agent %s\n' "$*"
  "$PY" tests/e2e/client.py --pretty "$MCP_URL" "$(cat "$DIR/assistant.key")" auto "$@"
}
change() { # ARGS…: an admin change, narrated, then wait until the edge has it
  printf '$ agentgate-admin %s\n' "$*"
  local out
  out="$("$BIN/agentgate-admin" --json "$@")"
  edge_at "$(printf '%s' "$out" | revision)"
  printf '  committed at revision %s; the edge has it\n' "$(printf '%s' "$out" | revision)"
}

step "The cluster: 3 core nodes (Raft), one edge, one MCP server"
admin cluster status

step "An operator sets up a tenant, an agent, an upstream and the default policy"
admin tenant create demo
admin agent create demo assistant --role reader --key-file "$DIR/assistant.key"
admin upstream add demo files --url http://127.0.0.1:7490/mcp
admin policy validate policies/default.cedar
change policy push demo policies/default.cedar --version v1 --activate --description "default policy"
admin policy test policies/cases/default.json --tenant demo --version v1

step "An allowed call: echo is annotated read-only, which the default policy permits"
agent list "call:echo:{\"text\": \"hello from the demo\"}"

step "A denied call: a secret in the arguments is detected and forbidden"
agent 'call:echo:{"text": "aws key AKIAABCDEFGHIJKLMNOP"}'

step "A tool the MCP server does not have: refused before any policy, so it asks no operator"
agent 'call:no_such_tool:{}'

step "An approval: delete_file is destructive, so the call is held until an operator approves"
agent 'call:delete_file:{"path": "/tmp/report.txt"}'
admin approvals list --tenant demo
APPROVAL="$("$BIN/agentgate-admin" --json approvals list --tenant demo | "$PY" -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')"
change approvals approve "$APPROVAL"
agent 'call:delete_file:{"path": "/tmp/report.txt"}'

step "Containment: a global pause stops every tool call at every edge"
change pause --global --reason "demo: incident drill"
agent 'call:echo:{"text": "are we stopped?"}'
admin switches list
change resume --global
agent 'call:echo:{"text": "back in business"}'

step "The audit log: every decision above, hash-chained"
admin audit query --tenant demo
admin audit verify

if [ "$KEEP" = 1 ]; then
  step "Still running; Ctrl-C stops everything"
  cat <<EOF
Try, in another terminal (from this directory):
  export AGENTGATE_ENDPOINT=$AGENTGATE_ENDPOINT
  $BIN/agentgate-admin cluster status
  $BIN/agentgate-admin audit tail -f --tenant demo
  $PY tests/e2e/client.py --pretty $MCP_URL \$(cat $DIR/assistant.key) auto list 'call:echo:{"text": "hi"}'
Metrics: http://127.0.0.1:7481/metrics (edge), http://127.0.0.1:7412/metrics (node 1)
EOF
  wait
else
  step "Done (run with --keep to keep the cluster running and try the CLI)"
fi
