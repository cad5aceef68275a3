#!/usr/bin/env bash
# Installs what building AgentGate needs on a fresh Debian/Ubuntu machine (idempotent; root or
# sudo): libclang that bindgen can load, with clang's builtin headers (librocksdb-sys), protoc
# (the gRPC contracts), a C/C++ compiler (RocksDB's C++, linking), curl (the scripts' readiness
# checks), and rustfmt and clippy (scripts/test.sh). Each need is decided by a probe that asks
# what the consumer asks (scripts/lib/probe.sh, tested by scripts/test-setup.sh), and decided
# again after the install, so a missing piece fails here rather than minutes into the build.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/probe.sh
. scripts/lib/probe.sh

probe_build_needs() {
  need=()
  probe_need setup libclang-dev probe_libclang
  probe_need setup protobuf-compiler probe_protoc
  probe_need setup g++ probe_runs c++ c++ --version
  probe_need setup g++ probe_runs cc cc --version
  probe_need setup curl probe_runs curl curl --version
}

probe_build_needs
if [ ${#need[@]} -gt 0 ]; then
  wanted=("${need[@]}")
  apt_install "${wanted[@]}"
  probe_build_needs
  if [ ${#need[@]} -gt 0 ]; then
    echo "setup: still missing after installing ${wanted[*]}: ${need[*]}" >&2
    exit 1
  fi
fi
for component in rustfmt clippy; do
  subcommand=fmt; [ "$component" = clippy ] && subcommand=clippy
  if ! cargo "$subcommand" --version >/dev/null 2>&1; then
    echo "setup: rustup component add $component"
    rustup component add "$component"
  fi
done
