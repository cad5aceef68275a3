#!/usr/bin/env bash
# Checks what deploy/observability ships, offline:
#   promtool check rules   the alert rules parse and every expression is valid PromQL
#   promtool test rules    the alert rules' unit tests (agentgate-alerts.test.yaml) pass
#   the Grafana dashboard  is JSON with unique panel ids, panels that do not overlap, and a
#                          PromQL expression and the ${datasource} variable on every query
# (tests/e2e/tests/prometheus.rs then loads both into a real Prometheus scraping a cluster.)
# Usage: scripts/validate-observability.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/probe.sh
. scripts/lib/probe.sh
probe_runs promtool promtool --version >/dev/null || scripts/setup-e2e.sh
rules=deploy/observability/prometheus
promtool check rules "$rules/agentgate-alerts.yaml"
(cd "$rules" && promtool test rules agentgate-alerts.test.yaml)
python3 - deploy/observability/grafana/agentgate-dashboard.json <<'PYEOF'
import json, sys
d = json.load(open(sys.argv[1]))
panels = d["panels"]
ids = [p["id"] for p in panels]
assert len(ids) == len(set(ids)), f"duplicate panel ids: {ids}"
cells = {}
queries = 0
for p in panels:
    g = p["gridPos"]
    assert g["x"] + g["w"] <= 24, f"panel {p['title']!r} is wider than the grid"
    for x in range(g["x"], g["x"] + g["w"]):
        for y in range(g["y"], g["y"] + g["h"]):
            assert (x, y) not in cells, f"panels {cells[(x, y)]!r} and {p['title']!r} overlap"
            cells[(x, y)] = p["title"]
    if p["type"] == "row":
        continue
    assert p["datasource"]["uid"] == "${datasource}", p["title"]
    assert p["targets"], f"panel {p['title']!r} has no query"
    for t in p["targets"]:
        assert t.get("expr", "").strip(), f"panel {p['title']!r} has an empty query"
        queries += 1
names = [v["name"] for v in d["templating"]["list"]]
assert "datasource" in names and "tenant" in names, names
print(f"validate-observability: dashboard {d['title']!r}: {len(panels)} panels, {queries} queries")
PYEOF
