#!/usr/bin/env bash
# Soak the cluster simulation: thousands of seeds (default 5,000) beyond the CI window, in
# four parallel tests. Every failing seed prints the command that replays it.
# Usage: scripts/sim-soak.sh [SEEDS] [FIRST_SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/agentgate-target}"
export SIM_SEEDS="${1:-5000}" SIM_SEED_BASE="${2:-100000}"
exec cargo nextest run -p agentgate-sim --no-fail-fast -E 'test(/^seeds_quarter/)' \
  --success-output final --failure-output final --test-threads "$(nproc)"
