# shellcheck shell=bash
# Probes for what building and testing AgentGate needs, sourced by scripts/setup.sh and
# scripts/setup-e2e.sh and tested against prepared fake roots by scripts/test-setup.sh.
#
# Each probe answers the question the consumer asks, not "is there a file with a similar name":
# - probe_libclang mirrors clang-sys 1.9 (bindgen's loader, used at run time by librocksdb-sys's
#   build script): the same directories, file patterns and exclusions, an ELF check of the same
#   class, and then the builtin headers (`stdbool.h`) that libclang needs to parse RocksDB's C
#   header (Debian ships them apart from the library: libclang1-N alone gives "'stdbool.h' file
#   not found").
# - probe_protoc runs the protoc that prost-build would run ($PROTOC, else the first on $PATH)
#   and reads its version.
# - probe_python_venv, probe_runs and probe_npm_package run the tool itself.
#
# A probe prints one line saying what it found (or why it found nothing) and returns 0 when
# the need is met, 1 otherwise. ROOT (first argument where there is one, "" for this machine)
# prefixes every path the probe searches, so a test can point it at a fake root; environment
# variables (LIBCLANG_PATH, LD_LIBRARY_PATH, LIBRARY_PATH, LLVM_CONFIG_PATH, PROTOC) are taken
# as they are. The probes use bash builtins only, so a test can run them with PATH limited to a
# fake root's bin directory.

# The directory globs clang-sys searches on Linux, in its order of preference.
PROBE_LIBCLANG_DIRS=(
  "/usr/local/llvm*/lib*" "/usr/local/lib*/*/*" "/usr/local/lib*/*" "/usr/local/lib*"
  "/usr/lib*/*/*" "/usr/lib*/*" "/usr/lib*"
)
# The file patterns clang-sys accepts when libclang is loaded at run time (bindgen-runtime).
PROBE_LIBCLANG_FILES=("libclang.so" "libclang-*.so" "libclang.so.*" "libclang-*.so.*")

# probe__is_elf64 FILE: true when FILE starts with the ELF magic and class 2 (64-bit), as
# clang-sys's validate_library requires on a 64-bit target.
probe__is_elf64() {
  local magic=""
  [ -f "$1" ] && [ -r "$1" ] || return 1
  LC_ALL=C IFS= read -r -d '' -n 5 magic <"$1" 2>/dev/null || true
  [ "$magic" = $'\x7fELF\x02' ]
}

# probe__libclang_in DIR: prints the first valid libclang in DIR (clang-sys's patterns; the
# `-cpp.` C++ library, which the patterns also match, is not libclang and is skipped).
probe__libclang_in() {
  local dir="$1" pattern file name
  [ -d "$dir" ] || return 1
  for pattern in "${PROBE_LIBCLANG_FILES[@]}"; do
    for file in "$dir"/$pattern; do
      [ -e "$file" ] || continue
      name="${file##*/}"
      [[ "$name" == *-cpp.* ]] && continue
      probe__is_elf64 "$file" && { printf '%s\n' "$file"; return 0; }
    done
  done
  return 1
}

# probe__libclang_dirs ROOT: the directories clang-sys would search, in order.
probe__libclang_dirs() {
  local root="$1" dir prefix llvm_config entry
  if [ -n "${LIBCLANG_PATH:-}" ]; then
    # clang-sys searches only this path (a file's directory, or the directory itself).
    if [ -f "$LIBCLANG_PATH" ]; then printf '%s\n' "${LIBCLANG_PATH%/*}"; else printf '%s\n' "$LIBCLANG_PATH"; fi
    return 0
  fi
  llvm_config="${LLVM_CONFIG_PATH:-}"
  [ -n "$llvm_config" ] || llvm_config="$(type -P llvm-config 2>/dev/null || true)"
  if [ -n "$llvm_config" ] && [ -x "$llvm_config" ]; then
    prefix="$("$llvm_config" --prefix 2>/dev/null || true)"
    prefix="${prefix%%$'\n'*}"
    [ -n "$prefix" ] && printf '%s\n' "$root$prefix/bin" "$root$prefix/lib" "$root$prefix/lib64"
  fi
  local -a paths=()
  IFS=: read -ra paths <<<"${LD_LIBRARY_PATH:-}:${LIBRARY_PATH:-}"
  for entry in "${paths[@]}"; do
    [ -n "$entry" ] && printf '%s\n' "$entry"
  done
  for entry in "${PROBE_LIBCLANG_DIRS[@]}"; do
    for dir in "$root"$entry; do
      [ -d "$dir" ] && printf '%s\n' "$dir"
    done
  done
}

# probe__clang_headers ROOT LIB: prints the directory of clang's builtin headers, looked for
# where Debian, Ubuntu and LLVM's own packages put them (beside the library's LLVM tree first).
probe__clang_headers() {
  local root="$1" lib="$2" dir
  local candidates=("${lib%/*}"/clang/*/include "$root"/usr/lib/llvm-*/lib/clang/*/include
    "$root"/usr/lib/clang/*/include "$root"/usr/include/clang/*/include
    "$root"/usr/local/lib/clang/*/include "$root"/usr/local/llvm*/lib/clang/*/include)
  for dir in "${candidates[@]}"; do
    [ -f "$dir/stdbool.h" ] && [ -f "$dir/stddef.h" ] && { printf '%s\n' "$dir"; return 0; }
  done
  return 1
}

# probe_libclang [ROOT]: libclang that bindgen can load and use.
probe_libclang() {
  local root="${1:-}" dir lib="" headers lookalike=""
  while IFS= read -r dir; do
    lib="$(probe__libclang_in "$dir")" && break
    lib=""
  done < <(probe__libclang_dirs "$root")
  if [ -z "$lib" ]; then
    for dir in "$root"/usr/lib/llvm-*/lib "$root"/usr/lib/*-linux-gnu; do
      for lookalike in "$dir"/libclang-cpp.so*; do [ -e "$lookalike" ] && break 2; done
      lookalike=""
    done
    if [ -n "$lookalike" ]; then
      echo "libclang: missing (only ${lookalike#"$root"}, the C++ library, which bindgen cannot load)"
    else
      echo "libclang: missing (no libclang.so* that clang-sys would load)"
    fi
    return 1
  fi
  if ! headers="$(probe__clang_headers "$root" "$lib")"; then
    echo "libclang: ${lib#"$root"} found, but not clang's builtin headers (stdbool.h): bindgen would fail"
    return 1
  fi
  echo "libclang: ${lib#"$root"} (builtin headers ${headers#"$root"})"
}

# probe_protoc: the protoc prost-build runs ($PROTOC, else protoc on PATH) answers its version.
probe_protoc() {
  local protoc="${PROTOC:-}" version=""
  [ -n "$protoc" ] || protoc="$(type -P protoc 2>/dev/null || true)"
  if [ -z "$protoc" ]; then echo "protoc: missing (not on PATH, PROTOC unset)"; return 1; fi
  version="$("$protoc" --version 2>/dev/null || true)"
  if [[ "$version" =~ ^libprotoc\ ([0-9]+)\.([0-9]+) ]]; then
    echo "protoc: $protoc ($version)"
    return 0
  fi
  echo "protoc: $protoc does not answer --version with 'libprotoc X.Y' (got '${version:0:60}')"
  return 1
}

# probe_runs NAME COMMAND…: the command runs and exits 0 (the tool is there and works).
probe_runs() {
  local name="$1"; shift
  if "$@" >/dev/null 2>&1; then echo "$name: ok"; return 0; fi
  echo "$name: missing or broken (\`$*\` failed)"
  return 1
}

# probe_python_venv PYTHON: PYTHON can make a virtual environment with pip in it (Debian's
# python3 needs the python3-venv package for ensurepip).
probe_python_venv() {
  probe_runs "python venv" "$1" -c "import venv, ensurepip"
}

# probe_npm_package PREFIX PACKAGE VERSION: PACKAGE is installed under PREFIX at VERSION
# (node reads its package.json; a left-over bin link does not count).
probe_npm_package() {
  local prefix="$1" package="$2" want="$3" got
  got="$(node -e 'try { console.log(require(require("path").resolve(process.argv[1], "package.json")).version) } catch (e) { process.exit(1) }' \
    "$prefix/node_modules/$package" 2>/dev/null || true)"
  if [ "$got" = "$want" ]; then echo "$package: $got"; return 0; fi
  echo "$package: ${got:-missing} (want $want)"
  return 1
}

# apt_install PACKAGE…: installs Debian/Ubuntu packages unattended (root or sudo); apt's own
# output is shown only when it fails.
apt_install() {
  local sudo=() log rc=0
  [ "$(id -u)" -ne 0 ] && sudo=(sudo)
  echo "setup: installing $* (apt-get)" >&2
  log="$(mktemp)"
  { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"; } >"$log" 2>&1 || rc=$?
  [ "$rc" -eq 0 ] || { cat "$log" >&2; echo "setup: apt-get failed (exit $rc)" >&2; }
  rm -f "$log"
  return "$rc"
}

# probe_need WHO PACKAGE PROBE ARGS…: runs the probe, prints its verdict after "WHO: ", and adds
# PACKAGE to the caller's `need` array (once) when the probe finds the need unmet.
probe_need() {
  local who="$1" package="$2" line rc=0 p
  shift 2
  line="$("$@")" || rc=$?
  echo "$who: $line"
  [ "$rc" -eq 0 ] && return 0
  for p in "${need[@]}"; do [ "$p" = "$package" ] && return 0; done
  need+=("$package")
}
