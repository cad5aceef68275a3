#!/usr/bin/env bash
# The performance harness: builds in release mode, runs the four benchmarks on 127.0.0.1
# (each starts and stops what it needs: a 3-node core, edges, a fast upstream), prints the
# tables and writes them as JSON.
#
#   scripts/bench.sh                      run everything (~10 min; the first release build
#                                         compiles RocksDB: ~25 min more on 2 cores)
#   scripts/bench.sh --only kill_switch   one of decision_path, edge_overhead, kill_switch,
#                                         core_cluster (repeatable)
#   scripts/bench.sh --compare A B        compare two runs (directories or summary.json files)
#
# Results go to $AGENTGATE_BENCH_OUT, by default bench-results/<commit>-<time>/ under the
# target directory: one JSON per benchmark, criterion's estimates, machine.json and
# summary.json (all four tables). See benches/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--compare" ]]; then
  [[ $# -eq 3 ]] || { echo "usage: scripts/bench.sh --compare A B" >&2; exit 2; }
  exec python3 scripts/bench_report.py compare "$2" "$3"
fi

all=(decision_path edge_overhead kill_switch core_cluster)
only=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --only)
      [[ $# -ge 2 && " ${all[*]} " == *" $2 "* ]] || { echo "--only takes one of: ${all[*]}" >&2; exit 2; }
      only+=("$2"); shift 2 ;;
    *) echo "unknown argument: $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
[[ ${#only[@]} -gt 0 ]] || only=("${all[@]}")

scripts/setup.sh
# Release artefacts live apart from the test build's debug ones.
export CARGO_TARGET_DIR="${AGENTGATE_BENCH_TARGET:-$HOME/.cache/agentgate-bench}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
git diff --quiet HEAD 2>/dev/null || commit="$commit-dirty"
export AGENTGATE_BENCH_OUT="${AGENTGATE_BENCH_OUT:-$CARGO_TARGET_DIR/bench-results/$commit-$(date -u +%Y%m%dT%H%M%SZ)}"
export CRITERION_HOME="$AGENTGATE_BENCH_OUT/criterion"
# The nodes and edges the benchmarks start log nothing (set warn to see why one fails).
export AGENTGATE_CHILD_LOG="${AGENTGATE_CHILD_LOG:-off}"
mkdir -p "$AGENTGATE_BENCH_OUT"

python3 scripts/bench_report.py machine "$AGENTGATE_BENCH_OUT" "$commit"
# Cargo hashes workspace crates by their path inside the workspace and decides freshness by
# mtimes, so a second checkout (a worktree holding the "before" commit) sharing this target
# directory can leave its build standing for ours. Rebuild our crates when the checkout changed;
# the dependencies (RocksDB) stay.
checkout="$(pwd -P)"
if [[ -f "$CARGO_TARGET_DIR/.agentgate-checkout" && "$(cat "$CARGO_TARGET_DIR/.agentgate-checkout")" != "$checkout" ]]; then
  echo "== another checkout built here last: rebuilding the workspace crates"
  mapfile -t members < <(cargo metadata --no-deps --format-version 1 --locked |
    python3 -c 'import json, sys; print("\n".join(p["name"] for p in json.load(sys.stdin)["packages"]))')
  cargo clean --release --locked $(printf -- '-p %s ' "${members[@]}")
fi
mkdir -p "$CARGO_TARGET_DIR" && echo "$checkout" >"$CARGO_TARGET_DIR/.agentgate-checkout"
echo "== build (release)"
# The benchmarks start the node and edge binaries, which `cargo bench` does not build for a
# benchmark of another package.
cargo build --release --workspace --locked --bins
cargo bench --workspace --locked --no-run
for b in "${only[@]}"; do
  echo "== $b"
  if [[ "$b" == decision_path ]]; then
    cargo bench --workspace --locked --bench "$b" -- --noplot
  else
    cargo bench --workspace --locked --bench "$b"
  fi
done
python3 scripts/bench_report.py summary "$AGENTGATE_BENCH_OUT"
