#!/usr/bin/env bash
# The engine-path fuzzer, for longer than the test command's minute:
#
#   scripts/fuzz.sh [SECONDS]        (default 600)
#
# It builds core's tests with the `fuzz` profile (release code with overflow
# checks and debug assertions), then mutates tiny model files (metadata
# values, types and keys; tensor dimensions, types, offsets and names; the
# tokenizer's arrays; header counts, length fields, truncation) and runs
# Model::from_bytes, the planner, Engine::new into a guarded arena, encode,
# eval, sample and detokenize on each (core/src/engine_fuzz.rs). Any panic,
# overflow, write outside the arena, inconsistent state or case above 10 s
# of CPU time fails the run with the case seed (a watchdog aborts a case
# that hangs, naming its step); replay one case with
#
#   ALM_FUZZ_CASE=<seed> cargo test --profile fuzz -p arenalm-core --lib engine_fuzz -- --nocapture
#
# Each run starts from a new base seed (printed; set ALM_FUZZ_SEED to repeat
# a run, ALM_FUZZ_CASES=N to stop after N cases). ALM_FUZZ_KEEP_GOING=1 lists every distinct panic site instead of
# stopping at the first. Add each crash found as a regression test at the
# end of core/src/engine_fuzz.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
case "$seconds" in
  ''|*[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS]" >&2; exit 2 ;;
esac
seed=${ALM_FUZZ_SEED:-$(date +%s)}
echo "engine fuzzer: ${seconds} s from base seed ${seed}"
ALM_FUZZ_SECONDS=$seconds ALM_FUZZ_SEED=$seed \
  cargo test --profile fuzz -p arenalm-core --lib engine_fuzz -- --nocapture
