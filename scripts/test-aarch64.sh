#!/usr/bin/env bash
# Runs arenalm-core's unit tests for aarch64 under qemu-user, once per CPU
# model, and requires the kernel paths each model must exercise (the tests
# fail if the emulated CPU lacks a required path, so none is skipped silently).
#
# Needs: rustup target aarch64-unknown-linux-gnu, gcc-aarch64-linux-gnu
# (the linker set in .cargo/config.toml) and qemu-user
# (apt-get install -y gcc-aarch64-linux-gnu qemu-user).
set -euo pipefail
cd "$(dirname "$0")/.."

run() {
    local cpu=$1 paths=$2
    echo "== aarch64 under qemu -cpu $cpu, requiring $paths"
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu -cpu $cpu" \
        ALM_REQUIRE_PATHS="$paths" \
        cargo test -p arenalm-core --target aarch64-unknown-linux-gnu --lib
}

run cortex-a72 neon                       # ARMv8.0: NEON, no dotprod
run cortex-a76 neon,neon-dotprod          # ARMv8.2: dotprod, no i8mm
run max neon,neon-dotprod,neon-i8mm       # every extension qemu knows, i8mm included
