#!/usr/bin/env bash
# Installs the real MCP software the end-to-end tests drive into .e2e/ (idempotent):
# the Python MCP SDK (client and server) and the OpenTelemetry SDK with its OTLP/gRPC exporter in
# a venv, server-everything from npm, and Prometheus with promtool from Debian's packages
# (the metrics, scrape and alert-rule checks). Python with venv, Node.js and npm come from
# Debian's packages when the machine lacks them. Each need is decided by running the tool
# (scripts/lib/probe.sh), never by a file's presence.
# Versions are pinned; see ../shared/TOOLS.md for what each is.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/probe.sh
. scripts/lib/probe.sh
dir="${AGENTGATE_E2E_DIR:-.e2e}"
everything_version="2026.8.31"
mkdir -p "$dir"

probe_system_needs() {
  need=()
  probe_need setup-e2e python3 probe_runs python3 python3 --version
  probe_need setup-e2e python3-venv probe_python_venv python3
  probe_need setup-e2e nodejs probe_runs node node --version
  probe_need setup-e2e npm probe_runs npm npm --version
  probe_need setup-e2e prometheus probe_runs promtool promtool --version
  probe_need setup-e2e prometheus probe_runs prometheus prometheus --version
}
probe_system_needs
if [ ${#need[@]} -gt 0 ]; then
  wanted=("${need[@]}")
  apt_install "${wanted[@]}"
  probe_system_needs
  if [ ${#need[@]} -gt 0 ]; then
    probe_system_needs >&2
    echo "setup-e2e: still missing after installing ${wanted[*]}: ${need[*]}" >&2
    exit 1
  fi
fi

if ! "$dir/venv/bin/python" -c "import mcp, httpx2, opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc, grpc" 2>/dev/null; then
  echo "setup-e2e: Python MCP SDK and OpenTelemetry SDK (traced client/server, OTLP receiver) into $dir/venv"
  rm -rf "$dir/venv"
  python3 -m venv "$dir/venv"
  "$dir/venv/bin/pip" install -q --disable-pip-version-check "mcp==2.3.0" \
    "opentelemetry-sdk==1.45.2" "opentelemetry-exporter-otlp-proto-grpc==1.45.2"
fi
if ! probe_npm_package "$dir/node" "@modelcontextprotocol/server-everything" "$everything_version" >/dev/null; then
  echo "setup-e2e: server-everything $everything_version into $dir/node"
  mkdir -p "$dir/node"
  npm install --silent --no-audit --no-fund --prefix "$dir/node" "@modelcontextprotocol/server-everything@$everything_version"
  if ! line="$(probe_npm_package "$dir/node" "@modelcontextprotocol/server-everything" "$everything_version")"; then
    echo "setup-e2e: npm install did not give $line" >&2
    exit 1
  fi
fi
