#!/usr/bin/env bash
# Installs arenalm with scripts/install.sh into temporary prefixes, natively
# and for aarch64, and builds examples-c/plan.c against each prefix the ways
# the README tells C and C++ users to: with pkg-config (arenalm.pc, shared;
# arenalm-static.pc) and with CMake's find_package(arenalm) (this directory's
# CMakeLists.txt: arenalm::arenalm and arenalm::arenalm_static; for aarch64
# through cmake/aarch64-linux-gnu.cmake). Checks the installed tree (SONAME,
# symlinks, versions), that shared builds load libarenalm.so.MAJOR through
# their rpath and static builds need no libarenalm at run time, and runs every
# binary (aarch64 ones under qemu-aarch64): each must print the same plan,
# whose largest context is the arenalm CLI's.
#
# Needs the release CLI and the model; scripts/test.sh runs it after building.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

fail() { echo "install check: FAIL: $*" >&2; exit 1; }

# Runs a command quietly; on failure shows its output and fails.
quiet() {
  local log
  log=$(mktemp)
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    fail "$*"
  fi
  rm -f "$log"
}

model=$root/models/SmolLM2-135M-Instruct.Q4_1.gguf
cli=${CARGO_TARGET_DIR:-$root/target}/release/arenalm
budget=67108864
[ -f "$model" ] || fail "$model is missing: run scripts/fetch-model.sh"
[ -x "$cli" ] || fail "$cli is missing: run cargo build --release -p arenalm-cli"

version=$(cargo metadata --no-deps --format-version 1 | python3 -c 'import json, sys
print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "arenalm"))')
major=${version%%.*}
soname=libarenalm.so.$major
context=$("$cli" plan "$model" --budget "$budget" --json \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["max_context_tokens"])')

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
expected=""   # the first binary's output; every other must equal it

# check_tree PREFIX: the files scripts/install.sh promises.
check_tree() {
  local lib=$1/lib
  for f in "$1/include/arenalm.h" "$lib/libarenalm.a" "$lib/libarenalm.so.$version" \
    "$lib/pkgconfig/arenalm.pc" "$lib/pkgconfig/arenalm-static.pc" \
    "$lib/cmake/arenalm/arenalmConfig.cmake" "$lib/cmake/arenalm/arenalmConfigVersion.cmake"; do
    [ -f "$f" ] || fail "$f was not installed"
  done
  cmp -s "$1/include/arenalm.h" include/arenalm.h || fail "installed header differs from include/arenalm.h"
  [ "$(readlink "$lib/libarenalm.so")" = "$soname" ] || fail "$lib/libarenalm.so does not point to $soname"
  [ "$(readlink "$lib/$soname")" = "libarenalm.so.$version" ] || fail "$lib/$soname does not point to libarenalm.so.$version"
  local got
  got=$(readelf -d "$lib/libarenalm.so.$version" | sed -n 's/.*(SONAME).*\[\(.*\)\]$/\1/p')
  [ "$got" = "$soname" ] || fail "SONAME of the installed library is '$got', not $soname"
  for pc in arenalm arenalm-static; do
    got=$(PKG_CONFIG_LIBDIR=$lib/pkgconfig pkg-config --modversion "$pc")
    [ "$got" = "$version" ] || fail "pkg-config says $pc is '$got', not $version"
  done
}

# check_binary KIND FILE [RUNNER...]: KIND is shared or static.
check_binary() {
  local kind=$1 bin=$2 needed out
  shift 2
  [ -x "$bin" ] || fail "$bin was not built"
  needed=$(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p')
  if [ "$kind" = shared ]; then
    grep -qx "$soname" <<<"$needed" || fail "$bin does not load $soname (needs: ${needed//$'\n'/ })"
  else
    ! grep -q libarenalm <<<"$needed" || fail "$bin, linked statically, still needs a libarenalm"
  fi
  out=$("$@" "$bin" "$model" "$budget") || fail "$* $bin $model $budget exited with $?"
  [[ "$out" == "arenalm $version: "* ]] || fail "$bin does not report arenalm $version:"$'\n'"$out"
  grep -qx "largest context for this budget: $context tokens" <<<"$out" \
    || fail "$bin does not find the CLI's largest context ($context):"$'\n'"$out"
  if [ -z "$expected" ]; then
    expected=$out
  elif [ "$out" != "$expected" ]; then
    fail "$bin prints another plan:"$'\n'"$out"$'\n'"expected:"$'\n'"$expected"
  fi
  echo "ok: $kind $(basename "$(dirname "$bin")")/$(basename "$bin")"
}

# check_prefix NAME CC RUNNER [TARGET TOOLCHAIN_FILE]: install, check the
# tree, build four ways, run.
check_prefix() {
  local name=$1 cc=$2 runner=$3 target=${4:-} toolchain=${5:-}
  local prefix=$work/$name/prefix build=$work/$name
  local cflags=(-std=c11 -O2 -Wall -Wextra -Werror -pedantic)
  echo "== $name: scripts/install.sh --prefix $prefix${target:+ --target $target}"
  quiet scripts/install.sh --prefix "$prefix" ${target:+--target "$target"}
  check_tree "$prefix"

  # pkg-config, searching this prefix only (as for a cross sysroot).
  export PKG_CONFIG_LIBDIR=$prefix/lib/pkgconfig
  mkdir -p "$build/pkg-config"
  # shellcheck disable=SC2046 # pkg-config's output is a list of flags
  quiet "$cc" "${cflags[@]}" examples-c/plan.c -o "$build/pkg-config/plan_shared" \
    $(pkg-config --cflags --libs arenalm) -Wl,-rpath,"$(pkg-config --variable=libdir arenalm)"
  # shellcheck disable=SC2046
  quiet "$cc" "${cflags[@]}" examples-c/plan.c -o "$build/pkg-config/plan_static" \
    $(pkg-config --cflags --libs arenalm-static)
  unset PKG_CONFIG_LIBDIR

  # CMake, with the version asked for: this one must be found ...
  local cmake_args=(-DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release)
  [ -z "$toolchain" ] || cmake_args+=(-DCMAKE_TOOLCHAIN_FILE="$toolchain")
  quiet cmake -S tests/install -B "$build/cmake" "${cmake_args[@]}" -DARENALM_VERSION="$version"
  quiet cmake --build "$build/cmake"
  # ... and a later major version must not.
  if cmake -S tests/install -B "$build/cmake-newer" "${cmake_args[@]}" \
    -DARENALM_VERSION="$((major + 1)).0" >"$build/newer.log" 2>&1; then
    fail "find_package(arenalm $((major + 1)).0) accepted arenalm $version"
  fi

  local runner_words
  read -r -a runner_words <<<"$runner"
  for dir in pkg-config cmake; do
    check_binary shared "$build/$dir/plan_shared" "${runner_words[@]}"
    check_binary static "$build/$dir/plan_static" "${runner_words[@]}"
  done
}

# The README shows cmake/aarch64-linux-gnu.cmake; it must show it as it is.
readme_toolchain=$(awk '/aarch64-linux-gnu.cmake` is this one:/ { found = 1; next }
  found && /^```cmake$/ { inside = 1; next }
  inside && /^```$/ { exit }
  inside' README.md)
[ "$readme_toolchain" = "$(grep -v -e '^#' -e '^$' cmake/aarch64-linux-gnu.cmake)" ] \
  || fail "README.md's toolchain file differs from cmake/aarch64-linux-gnu.cmake (without comments)"

check_prefix native cc env
check_prefix aarch64 aarch64-linux-gnu-gcc "qemu-aarch64 -L /usr/aarch64-linux-gnu" \
  aarch64-unknown-linux-gnu "$root/cmake/aarch64-linux-gnu.cmake"
echo "install check: arenalm $version installs and links with pkg-config and CMake, shared and static, native and aarch64"
