#!/usr/bin/env bash
# Builds arenalm (release) and installs it for C and C++ programs:
#
#   scripts/install.sh --prefix DIR [--target TRIPLE]
#
#   DIR/include/arenalm.h
#   DIR/lib/libarenalm.a
#   DIR/lib/libarenalm.so.VERSION, libarenalm.so.MAJOR -> it (the SONAME),
#       libarenalm.so -> libarenalm.so.MAJOR
#   DIR/lib/pkgconfig/arenalm.pc                  pkg-config --cflags --libs arenalm
#   DIR/lib/pkgconfig/arenalm-static.pc           the same, linking libarenalm.a
#   DIR/lib/cmake/arenalm/arenalmConfig.cmake     find_package(arenalm): targets
#   DIR/lib/cmake/arenalm/arenalmConfigVersion.cmake  arenalm::arenalm (shared) and
#                                                      arenalm::arenalm_static
#
# --target cross-compiles (e.g. aarch64-unknown-linux-gnu; the linker comes
# from .cargo/config.toml). Every fact is read, never restated: the version
# from Cargo metadata, the SONAME from the built library (ffi/build.rs sets
# it), the system libraries the static library needs from rustc
# (--print native-static-libs).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

usage() { sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "install.sh: $*" >&2; exit 1; }

prefix=""
target=""
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; prefix=$2; shift 2 ;;
    --prefix=*) prefix=${1#*=}; shift ;;
    --target) [ $# -ge 2 ] || die "--target needs a target triple"; target=$2; shift 2 ;;
    --target=*) target=${1#*=}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument '$1'" ;;
  esac
done
[ -n "$prefix" ] || { usage >&2; die "--prefix DIR is required"; }
for tool in cargo rustc python3 readelf; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (scripts/setup.sh installs the prerequisites)"
done

# The package version and the target directory, from Cargo.
metadata=$(cargo metadata --no-deps --format-version 1 --manifest-path "$root/Cargo.toml")
version=$(python3 -c 'import json, sys
m = json.load(sys.stdin)
print(next(p["version"] for p in m["packages"] if p["name"] == "arenalm"))' <<<"$metadata")
target_dir=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])' <<<"$metadata")
triple=${target:-$(rustc -vV | sed -n 's/^host: //p')}
pointer_bits=$(rustc --print cfg --target "$triple" | sed -n 's/^target_pointer_width="\([0-9]*\)"$/\1/p')
[ -n "$pointer_bits" ] || die "rustc does not know target '$triple'"

# `cargo rustc` is `cargo build --release -p arenalm` (same profile, every
# crate type of the library) that also lets rustc print the static library's
# native dependencies.
echo "==> building arenalm $version for $triple"
cargo_args=(rustc --release -p arenalm --lib --color never --manifest-path "$root/Cargo.toml")
[ -z "$target" ] || cargo_args+=(--target "$target")
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo "${cargo_args[@]}" -- --print native-static-libs 2>&1 | tee "$log"
native_libs=$(sed -n 's/^note: native-static-libs: //p' "$log" | tail -n 1)
[ -n "$native_libs" ] || die "rustc did not print the static library's native dependencies"

out=$target_dir/${target:+$target/}release
for f in libarenalm.a libarenalm.so; do
  [ -f "$out/$f" ] || die "$out/$f was not built"
done
soname=$(readelf -d "$out/libarenalm.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]$/\1/p')
case "$soname" in
  libarenalm.so.?*) ;;
  *) die "$out/libarenalm.so has no SONAME libarenalm.so.N (ffi/build.rs sets it on ELF targets)" ;;
esac

mkdir -p "$prefix"
prefix=$(cd "$prefix" && pwd)
lib=$prefix/lib
echo "==> installing into $prefix"
install -d "$prefix/include" "$lib/pkgconfig" "$lib/cmake/arenalm"
install -m 644 "$root/include/arenalm.h" "$prefix/include/arenalm.h"
install -m 644 "$out/libarenalm.a" "$lib/libarenalm.a"
install -m 755 "$out/libarenalm.so" "$lib/libarenalm.so.$version"
ln -sfn "libarenalm.so.$version" "$lib/$soname"
ln -sfn "$soname" "$lib/libarenalm.so"

cat >"$lib/pkgconfig/arenalm.pc" <<EOF
# arenalm $version for $triple, installed by scripts/install.sh.
# Links the shared library; \`pkg-config --static\` adds what libarenalm.a needs.
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: arenalm
Description: LLM inference for edge devices inside a caller-supplied memory budget
Version: $version
Cflags: -I\${includedir}
Libs: -L\${libdir} -larenalm
Libs.private: $native_libs
EOF

cat >"$lib/pkgconfig/arenalm-static.pc" <<EOF
# arenalm $version for $triple, installed by scripts/install.sh.
# Links the static library and the system libraries it needs.
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: arenalm-static
Description: arenalm, linked statically (libarenalm.a)
Version: $version
Cflags: -I\${includedir}
Libs: \${libdir}/libarenalm.a $native_libs
EOF

# CMake wants library names, not -l flags.
cmake_libs=""
for item in $native_libs; do
  cmake_libs="$cmake_libs${cmake_libs:+;}${item#-l}"
done

cat >"$lib/cmake/arenalm/arenalmConfig.cmake" <<EOF
# arenalm $version for $triple, installed by scripts/install.sh.
#
#   find_package(arenalm REQUIRED)
#   target_link_libraries(app PRIVATE arenalm::arenalm)          # shared: $soname
#   target_link_libraries(app PRIVATE arenalm::arenalm_static)   # or static: libarenalm.a
#
# Paths are relative to this file, so the installed tree can be moved.
get_filename_component(_arenalm_prefix "\${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)

if(NOT TARGET arenalm::arenalm)
  add_library(arenalm::arenalm SHARED IMPORTED)
  set_target_properties(arenalm::arenalm PROPERTIES
    IMPORTED_LOCATION "\${_arenalm_prefix}/lib/libarenalm.so.$version"
    IMPORTED_SONAME "$soname"
    INTERFACE_INCLUDE_DIRECTORIES "\${_arenalm_prefix}/include")
endif()

if(NOT TARGET arenalm::arenalm_static)
  add_library(arenalm::arenalm_static STATIC IMPORTED)
  set_target_properties(arenalm::arenalm_static PROPERTIES
    IMPORTED_LOCATION "\${_arenalm_prefix}/lib/libarenalm.a"
    IMPORTED_LINK_INTERFACE_LANGUAGES "C"
    INTERFACE_INCLUDE_DIRECTORIES "\${_arenalm_prefix}/include"
    INTERFACE_LINK_LIBRARIES "$cmake_libs")
endif()

unset(_arenalm_prefix)
EOF

# Same rules as CMake's write_basic_package_version_file(... SameMajorVersion):
# any version >= the one asked for with the same major number; and the
# pointer size must match the consuming project's.
cat >"$lib/cmake/arenalm/arenalmConfigVersion.cmake" <<EOF
# arenalm $version for $triple, installed by scripts/install.sh.
set(PACKAGE_VERSION "$version")
if(PACKAGE_VERSION VERSION_LESS PACKAGE_FIND_VERSION
   OR NOT PACKAGE_FIND_VERSION_MAJOR STREQUAL "${version%%.*}")
  set(PACKAGE_VERSION_COMPATIBLE FALSE)
else()
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
  if(PACKAGE_FIND_VERSION STREQUAL PACKAGE_VERSION)
    set(PACKAGE_VERSION_EXACT TRUE)
  endif()
endif()
if(CMAKE_SIZEOF_VOID_P AND NOT CMAKE_SIZEOF_VOID_P STREQUAL "$((pointer_bits / 8))")
  set(PACKAGE_VERSION "\${PACKAGE_VERSION} ($pointer_bits-bit)")
  set(PACKAGE_VERSION_UNSUITABLE TRUE)
endif()
EOF

echo "==> installed arenalm $version ($soname) for $triple into $prefix"
