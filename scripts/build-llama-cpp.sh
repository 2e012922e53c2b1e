#!/usr/bin/env bash
# Builds llama.cpp (the copy vendored in the PyPI sdist llama-cpp-python, the
# same sources that made the reference data) for comparisons, OUTSIDE this
# repository. Nothing of llama.cpp is ever committed here.
#
#   scripts/build-llama-cpp.sh [DIR]      (default: ../llama-cpp-build)
#
# Release build, tuned for this CPU (GGML_NATIVE=ON, as a user of llama.cpp
# gets by default), OpenMP off (like our thread pool, plain threads). On a CPU
# that reports AMX, AMX is left out unless LLAMA_AMX=1: on the KVM guests we
# develop on, `tilezero` faults (SIGILL) although the kernel grants the AMX
# permission, so llama.cpp's AMX build crashes there; the native build is then
# replaced by the same instruction sets named one by one, minus AMX.
# Prints the directory holding llama-bench, llama-perplexity, llama-quantize.
# Idempotent: an existing build is reused (delete DIR to rebuild).
set -euo pipefail
version=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$root/../llama-cpp-build}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
case "$dir/" in "$root"/*) echo "error: build llama.cpp outside the repository" >&2; exit 1;; esac

src=$dir/llama_cpp_python-$version/vendor/llama.cpp
bin=$src/build/bin
if [ -x "$bin/llama-bench" ] && [ -x "$bin/llama-perplexity" ]; then
  echo "$bin"
  exit 0
fi

py=python3
if [ ! -f "$dir/llama_cpp_python-$version.tar.gz" ]; then
  echo "build-llama-cpp: downloading llama-cpp-python==$version (sdist) from PyPI" >&2
  (cd "$dir" && $py -m pip download -q --no-deps --no-binary=llama-cpp-python \
      "llama-cpp-python==$version" >&2)
fi
[ -d "$src" ] || tar -xzf "$dir/llama_cpp_python-$version.tar.gz" -C "$dir"

if ! command -v cmake >/dev/null || ! command -v ninja >/dev/null; then
  echo "build-llama-cpp: installing cmake and ninja from PyPI" >&2
  $py -m pip install -q cmake ninja >&2
fi
isa=(-DGGML_NATIVE=ON)
flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
has() { case " $flags " in *" $1 "*) echo ON;; *) echo OFF;; esac; }
if [ "$(has amx_int8)" = ON ] && [ "${LLAMA_AMX:-0}" != 1 ]; then
  isa=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
       -DGGML_BMI2="$(has bmi2)" -DGGML_AVX_VNNI="$(has avx_vnni)"
       -DGGML_AVX512="$(has avx512f)" -DGGML_AVX512_VBMI="$(has avx512vbmi)"
       -DGGML_AVX512_VNNI="$(has avx512_vnni)" -DGGML_AVX512_BF16="$(has avx512_bf16)"
       -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF)
fi
cmake -S "$src" -B "$src/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  "${isa[@]}" -DGGML_OPENMP=OFF -DLLAMA_CURL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_EXAMPLES=OFF >&2
cmake --build "$src/build" -j "$(nproc)" \
  --target llama-bench llama-perplexity llama-quantize >&2
echo "$bin"
