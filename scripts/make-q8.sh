#!/usr/bin/env bash
# Makes the Q8_0 twin of the shipped Q4_1 model with arenalm's own quantizer
# (tests/tests/quantize.rs checks every tensor against llama.cpp's hashes).
# A no-op when the twin is already there and newer than the quantizer.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
src="$root/models/SmolLM2-135M-Instruct.Q4_1.gguf"
dst="$root/models/SmolLM2-135M-Instruct.Q8_0.gguf"
bin="${CARGO_TARGET_DIR:-$root/target}/release/arenalm"
[ -x "$bin" ] || { echo "error: $bin is missing; run cargo build --release -p arenalm-cli" >&2; exit 1; }
[ -f "$src" ] || "$root/scripts/fetch-model.sh"
if [ -f "$dst" ] && [ "$dst" -nt "$bin" ]; then
  echo "Q8_0 twin present: $dst"
  exit 0
fi
"$bin" quantize "$src" "$dst.tmp" q8_0
mv "$dst.tmp" "$dst"
echo "Q8_0 twin ready: $dst"
