#!/usr/bin/env bash
# Runs every test: the set-up probes (scripts/test-setup.sh), format and lint checks, unit and
# property tests, openraft's storage suite, golden files, and the end-to-end tests that start
# real agentgate-node and agentgate-edge processes on 127.0.0.1 and drive them with real MCP
# clients and servers, and the turmoil simulation of the whole cluster under faults (tests/sim,
# 200 seeds), the Kubernetes manifests rendered and validated offline (scripts/validate-k8s.sh),
# and the alert rules and Grafana dashboard checked (scripts/validate-observability.sh).
# Usage: scripts/test.sh            (from a fresh clone; installs build dependencies first)
set -euo pipefail
cd "$(dirname "$0")/.."
# Each phase's heading says how long the run has taken so far.
phase() { printf '== %s (%dm%02ds)\n' "$1" $((SECONDS / 60)) $((SECONDS % 60)); }
# The set-up probes decide right on prepared fake roots before they decide for this machine.
phase "set-up probes"; scripts/test-setup.sh
scripts/setup.sh
scripts/setup-e2e.sh
# One shared target directory: a fresh clone then rebuilds in seconds, not ~25 minutes.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/agentgate-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

phase fmt;    cargo fmt --all -- --check
phase build;  cargo build --workspace --all-targets --locked
phase clippy; cargo clippy --workspace --all-targets --locked -- -D warnings
phase "k8s manifests"; scripts/validate-k8s.sh
phase "alert rules and dashboard"; scripts/validate-observability.sh
phase tests
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-targets --locked --no-fail-fast
else
  cargo test --workspace --all-targets --locked --no-fail-fast
fi
