#!/usr/bin/env bash
# Runs every test of the project: the one command the README names.
#
#   0. checks the prerequisites first (scripts/setup.sh --check; when one is
#      missing it says so and that scripts/setup.sh installs it);
#   1. fetches the models (no-op when present) and builds release artifacts;
#   2. makes the Q8_0 twin with our own quantizer (and checks its hash);
#   3. builds core for a bare-metal target (proves no_std, no alloc);
#   4. builds the C/C++ examples natively and for aarch64;
#   5. runs every Rust test (unit, property, end-to-end against the
#      llama.cpp reference data, C programs), then core's tests again with
#      overflow checks on (cargo profile `fuzz`), the engine-path fuzzer
#      among them for a minute (scripts/fuzz.sh runs it longer);
#   6. runs the kernel tests and the C example under qemu-aarch64, on a
#      CPU without dotprod (cortex-a72) and one with it (max);
#   7. installs the library into temporary prefixes (scripts/install.sh,
#      native and aarch64) and builds and runs a C program against each with
#      pkg-config and with CMake, shared and static (tests/install/check.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

step() { printf '\n==> %s\n' "$*"; }

step "prerequisites"
scripts/setup.sh --check

step "models"
scripts/fetch-model.sh
if [ -x scripts/fetch-gemma.sh ]; then scripts/fetch-gemma.sh; fi

step "release build"
cargo build --release --workspace

if [ -f scripts/make-q8.sh ]; then
  step "Q8_0 twin"
  scripts/make-q8.sh
fi

step "no_std build for thumbv7em-none-eabihf"
cargo build -p arenalm-core --target thumbv7em-none-eabihf

step "C and C++ examples (native)"
make -C examples-c

step "aarch64 cross build"
cargo build --release -p arenalm --target aarch64-unknown-linux-gnu
make -C examples-c TARGET=aarch64-unknown-linux-gnu CC=aarch64-linux-gnu-gcc CXX=aarch64-linux-gnu-g++

step "Rust tests (release)"
cargo test --release --workspace

step "core tests and the engine fuzzer (60 s) with overflow checks (profile fuzz)"
ALM_FUZZ_SECONDS=60 cargo test --profile fuzz -p arenalm-core

if [ -x scripts/test-aarch64.sh ]; then
  step "aarch64 kernel tests under qemu"
  scripts/test-aarch64.sh
fi

step "install: pkg-config and CMake consumers, native and aarch64"
tests/install/check.sh

step "all tests passed"
