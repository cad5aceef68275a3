#!/usr/bin/env bash
# Installs the real MCP software the end-to-end tests drive into .e2e/ (idempotent):
# the Python MCP SDK (client and server) and the OpenTelemetry SDK with its OTLP/gRPC exporter in
# a venv, server-everything from npm, and Prometheus with promtool from Debian's packages
# (the metrics, scrape and alert-rule checks).
# Versions are pinned; see ../shared/TOOLS.md for what each is.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${AGENTGATE_E2E_DIR:-.e2e}"
mkdir -p "$dir"
if ! "$dir/venv/bin/python" -c "import mcp, httpx2, opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc, grpc" 2>/dev/null; then
  echo "setup-e2e: Python MCP SDK and OpenTelemetry SDK (traced client/server, OTLP receiver) into $dir/venv"
  python3 -m venv "$dir/venv"
  "$dir/venv/bin/pip" install -q --disable-pip-version-check "mcp==2.3.0" \
    "opentelemetry-sdk==1.45.2" "opentelemetry-exporter-otlp-proto-grpc==1.45.2"
fi
if [ ! -x "$dir/node/node_modules/.bin/mcp-server-everything" ]; then
  echo "setup-e2e: server-everything into $dir/node"
  mkdir -p "$dir/node"
  npm install --silent --no-audit --no-fund --prefix "$dir/node" "@modelcontextprotocol/server-everything@2026.8.31" \
    || npm install --silent --no-audit --no-fund --prefix "$dir/node" "@modelcontextprotocol/server-everything"
fi
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  echo "setup-e2e: Prometheus and promtool (Debian's prometheus package)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends prometheus
fi
