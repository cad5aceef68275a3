#!/usr/bin/env bash
# Tests the set-up probes (scripts/lib/probe.sh) against prepared fake roots: each root is laid
# out as Debian's packages lay out the real files, and each probe must decide right on it.
# Runs in about a second, needs no root and touches nothing outside a temporary directory.
# The probes run with PATH limited to the fake root's bin directory and no LIBCLANG_PATH,
# LD_LIBRARY_PATH, LIBRARY_PATH, LLVM_CONFIG_PATH or PROTOC unless a case sets them, so nothing
# on this machine leaks into a verdict.
# Usage: scripts/test-setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/probe.sh
. scripts/lib/probe.sh

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
passed=0
failed=0

# elf FILE [CLASS]: a file that starts like a shared library (class 2: 64-bit, 1: 32-bit).
elf() {
  mkdir -p "$(dirname "$1")"
  printf '\x7fELF\x0'"${2:-2}"'\x01\x01\x00' >"$1"
}
link() { mkdir -p "$(dirname "$2")"; ln -s "$1" "$2"; }
headers() {
  mkdir -p "$1"
  : >"$1/stdbool.h"
  : >"$1/stddef.h"
}
script() { # FILE BODY: an executable /bin/sh script
  mkdir -p "$(dirname "$1")"
  printf '#!/bin/sh\n%s\n' "$2" >"$1"
  chmod +x "$1"
}

# The packages, as Debian 12 ships them (dpkg -c of the .deb files).
pkg_libclang_cpp14() {
  elf "$1/usr/lib/x86_64-linux-gnu/libclang-cpp.so.14"
  link ../../x86_64-linux-gnu/libclang-cpp.so.14 "$1/usr/lib/llvm-14/lib/libclang-cpp.so.14"
  elf "$1/usr/lib/llvm-14/lib/libLLVM-14.so.1"
}
pkg_libclang1_14() {
  elf "$1/usr/lib/x86_64-linux-gnu/libclang-14.so.14.0.6"
  link libclang-14.so.14.0.6 "$1/usr/lib/x86_64-linux-gnu/libclang-14.so.13"
  link libclang-14.so.13 "$1/usr/lib/x86_64-linux-gnu/libclang-14.so.1"
  link ../../x86_64-linux-gnu/libclang-14.so.1 "$1/usr/lib/llvm-14/lib/libclang-14.so.1"
  link libclang-14.so.1 "$1/usr/lib/llvm-14/lib/libclang.so.1"
}
pkg_libclang_common_14_dev() { headers "$1/usr/lib/llvm-14/lib/clang/14.0.6/include"; }
pkg_libclang_14_dev() {
  link ../../x86_64-linux-gnu/libclang-14.so.1 "$1/usr/lib/llvm-14/lib/libclang.so"
  link ../../x86_64-linux-gnu/libclang-14.so.1 "$1/usr/lib/llvm-14/lib/libclang-14.so"
  link libclang-14.so.1 "$1/usr/lib/x86_64-linux-gnu/libclang-14.so"
}
# What `apt-get install libclang-dev` brings.
pkg_libclang_dev() { pkg_libclang1_14 "$1"; pkg_libclang_common_14_dev "$1"; pkg_libclang_14_dev "$1"; }

# check NAME WANT(ok|missing) EXPECTED-SUBSTRING PROBE [ENV=VALUE…] -- SETUP…: lays out a fresh
# root with the SETUP functions, runs PROBE against it, and compares verdict and message.
check() {
  local name="$1" want="$2" expect="$3" probe="$4"
  shift 4
  local -a envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  local root="$work/root$((passed + failed))"
  mkdir -p "$root/usr/bin"
  local step
  for step in "$@"; do "$step" "$root"; done
  local out rc=0
  out="$(
    unset LIBCLANG_PATH LD_LIBRARY_PATH LIBRARY_PATH LLVM_CONFIG_PATH PROTOC
    PATH="$root/usr/bin"
    for e in "${envs[@]}"; do export "${e//@ROOT@/$root}"; done
    "$probe" "$root"
  )" || rc=$?
  local got=ok
  [ "$rc" -eq 0 ] || got=missing
  if [ "$got" = "$want" ] && [[ "$out" == *"$expect"* ]]; then
    passed=$((passed + 1))
    printf 'test-setup: ok       %s -> %s\n' "$name" "$out"
  else
    failed=$((failed + 1))
    printf 'test-setup: FAILED   %s: want %s with "%s", got %s: %s\n' "$name" "$want" "$expect" "$got" "$out"
  fi
}

# libclang
check "only libclang-cpp14 (the image's look-alike)" missing "libclang-cpp.so.14" probe_libclang -- pkg_libclang_cpp14
check "libclang1-14 alone (no builtin headers)" missing "not clang's builtin headers" probe_libclang -- pkg_libclang1_14
check "libclang1-14 and libclang-common-14-dev" ok "/usr/lib/llvm-14/lib/libclang.so.1" probe_libclang -- pkg_libclang1_14 pkg_libclang_common_14_dev
check "libclang-dev over libclang-cpp14" ok "/usr/lib/llvm-14/lib/libclang.so (builtin headers /usr/lib/llvm-14/lib/clang/14.0.6/include)" \
  probe_libclang -- pkg_libclang_cpp14 pkg_libclang_dev
check "neither" missing "no libclang.so*" probe_libclang -- true
only_32bit() { elf "$1/usr/lib/i386-linux-gnu/libclang-14.so.1" 1; pkg_libclang_common_14_dev "$1"; }
check "a 32-bit libclang only" missing "no libclang.so*" probe_libclang -- only_32bit
linker_script() { mkdir -p "$1/usr/lib/llvm-14/lib"; echo "INPUT(libclang-14.so.1)" >"$1/usr/lib/llvm-14/lib/libclang.so"; pkg_libclang_common_14_dev "$1"; }
check "a text file named libclang.so" missing "no libclang.so*" probe_libclang -- linker_script
dangling() { link ../../x86_64-linux-gnu/libclang-14.so.1 "$1/usr/lib/llvm-14/lib/libclang.so"; pkg_libclang_common_14_dev "$1"; }
check "a dangling libclang.so link (libclang1-14 removed)" missing "no libclang.so*" probe_libclang -- dangling
opt_llvm() {
  elf "$1/opt/llvm-17/lib/libclang.so.17"
  headers "$1/opt/llvm-17/lib/clang/17/include"
  script "$1/usr/bin/llvm-config" 'echo /opt/llvm-17'
}
check "an LLVM that only llvm-config points at" ok "/opt/llvm-17/lib/libclang.so.17" probe_libclang -- opt_llvm
custom_dir() { elf "$1/custom/libclang.so"; pkg_libclang_common_14_dev "$1"; }
check "LIBCLANG_PATH names a directory" ok "/custom/libclang.so" probe_libclang LIBCLANG_PATH=@ROOT@/custom -- custom_dir
check "LIBCLANG_PATH names a file" ok "/custom/libclang.so" probe_libclang LIBCLANG_PATH=@ROOT@/custom/libclang.so -- custom_dir
empty_custom() { mkdir -p "$1/custom"; }
check "LIBCLANG_PATH hides the system's libclang (clang-sys looks only there)" missing "no libclang.so*" \
  probe_libclang LIBCLANG_PATH=@ROOT@/custom -- pkg_libclang_dev empty_custom

# protoc (probe_protoc takes no root; PATH and PROTOC point into the fake root)
protoc_good() { script "$1/usr/bin/protoc" 'echo "libprotoc 3.21.12"'; }
protoc_broken() { script "$1/usr/bin/protoc" 'echo "error while loading shared libraries" >&2; exit 127'; }
protoc_other() { script "$1/usr/bin/protoc" 'echo "protoc-gen-something 1.0"'; }
protoc_elsewhere() { script "$1/opt/protobuf/bin/protoc" 'echo "libprotoc 29.3"'; }
check "protoc on PATH" ok "libprotoc 3.21.12" probe_protoc -- protoc_good
check "no protoc" missing "protoc: missing" probe_protoc -- true
check "a protoc that cannot run" missing "does not answer" probe_protoc -- protoc_broken
check "a protoc that is not protobuf's" missing "does not answer" probe_protoc -- protoc_other
check "PROTOC names one off PATH" ok "libprotoc 29.3" probe_protoc PROTOC=@ROOT@/opt/protobuf/bin/protoc -- protoc_elsewhere

echo "test-setup: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
