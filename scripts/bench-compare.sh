#!/usr/bin/env bash
# The speed guard: builds two revisions of arenalm and measures them side by
# side in one run, pinned to the same CPU, alternating so that the machine's
# noise falls on both alike.
#
#   scripts/bench-compare.sh BASE [HEAD] [options]
#
# BASE and HEAD are git revisions; HEAD defaults to the working tree
# (uncommitted changes included), so a change can be measured before it is
# committed. Options:
#   -m MODEL      a model file (repeatable; default: every SmolLM2 file in
#                 models/ among Q8_0, Q4_0, Q4_1)
#   -t LIST       thread counts (default 1)
#   -p N / -n N   prompt and generation lengths (default 512 / 128)
#   -d N          depth: tokens already in the KV cache (default 0)
#   -r N          repetitions per bench run (default 3)
#   --rounds N    alternating rounds of BASE and HEAD (default 2)
#   --cpus LIST   taskset CPU list (default: the last CPU, or the last two
#                 for two threads)
#   --kernel K    forwarded to `arenalm bench --kernel`
#
# Prints, per model and test, the median over rounds of each revision's
# tokens/s and the change. A change that costs more than 5% anywhere is a
# regression (see CONTRIBUTING in README). Builds are cached per commit in
# target/bench-compare/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

base=${1:?usage: scripts/bench-compare.sh BASE [HEAD] [options]}
shift
head=work
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then head=$1; shift; fi

models=() threads=1 prompt=512 gen=128 depth=0 reps=3 rounds=2 cpus="" kernel=""
while [ $# -gt 0 ]; do
  case $1 in
    -m) models+=("$2"); shift 2;;
    -t) threads=$2; shift 2;;
    -p) prompt=$2; shift 2;;
    -n) gen=$2; shift 2;;
    -d) depth=$2; shift 2;;
    -r) reps=$2; shift 2;;
    --rounds) rounds=$2; shift 2;;
    --cpus) cpus=$2; shift 2;;
    --kernel) kernel=$2; shift 2;;
    *) echo "unknown option: $1" >&2; exit 2;;
  esac
done
if [ ${#models[@]} -eq 0 ]; then
  for q in Q8_0 Q4_0 Q4_1; do
    f=models/SmolLM2-135M-Instruct.$q.gguf
    [ -f "$f" ] && models+=("$f")
  done
fi
[ ${#models[@]} -gt 0 ] || { echo "no models: run scripts/fetch-model.sh" >&2; exit 1; }
if [ -z "$cpus" ]; then
  last=$(($(nproc) - 1))
  max_t=$(echo "$threads" | tr ',' '\n' | sort -n | tail -1)
  if [ "$max_t" -ge 2 ] && [ "$last" -ge 1 ]; then cpus="$((last - 1)),$last"; else cpus=$last; fi
fi

cache=$root/target/bench-compare
mkdir -p "$cache"

# Builds revision $1 and prints the path of its `arenalm` binary.
build() {
  local rev=$1 dir sha
  if [ "$rev" = work ]; then
    cargo build -q --release -p arenalm-cli >&2
    # Copy, so that a later build of the tree does not change what we run.
    cp target/release/arenalm "$cache/arenalm-work"
    echo "$cache/arenalm-work"
    return
  fi
  sha=$(git rev-parse --verify "$rev^{commit}")
  if [ ! -x "$cache/arenalm-$sha" ]; then
    dir=$cache/src-$sha
    rm -rf "$dir"
    mkdir -p "$dir"
    git archive "$sha" | tar -x -C "$dir"
    # Share models/ with the checkout, as the tree expects.
    [ -e "$root/models" ] && ln -sfn "$root/models" "$dir/models"
    echo "building $rev ($sha)..." >&2
    (cd "$dir" && CARGO_TARGET_DIR=$cache/target-base cargo build -q --release -p arenalm-cli >&2)
    cp "$cache/target-base/release/arenalm" "$cache/arenalm-$sha"
    rm -rf "$dir"
  fi
  echo "$cache/arenalm-$sha"
}

bin_base=$(build "$base")
bin_head=$(build "$head")

echo "uptime: $(uptime)"
echo "cpus: $cpus  base: $base  head: $head  -p $prompt -n $gen -d $depth -t $threads -r $reps, $rounds rounds"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
extra=()
[ -n "$kernel" ] && extra+=(--kernel "$kernel")
[ "$depth" != 0 ] && extra+=(--depth "$depth")
for round in $(seq 1 "$rounds"); do
  for m in "${models[@]}"; do
    for side in base head; do
      bin=bin_$side
      taskset -c "$cpus" "${!bin}" bench -m "$m" -p "$prompt" -n "$gen" -t "$threads" \
        -r "$reps" "${extra[@]}" --json > "$out/$side-$round-$(basename "$m").json"
    done
  done
done

python3 - "$out" "$base" "$head" <<'EOF'
import json, os, statistics, sys
out, base, head = sys.argv[1:4]
runs = {}
for f in sorted(os.listdir(out)):
    side = f.split('-', 1)[0]
    for row in json.load(open(os.path.join(out, f))):
        key = (row['model'], row['threads'], row['test'])
        runs.setdefault(key, {}).setdefault(side, []).append(row['avg_ts'])
print(f"| model | threads | test | {base} t/s | {head} t/s | change |")
print("| --- | ---: | --- | ---: | ---: | ---: |")
worst = 0.0
for (model, t, test), sides in sorted(runs.items()):
    b = statistics.median(sides.get('base', [0]))
    h = statistics.median(sides.get('head', [0]))
    ch = (h / b - 1) * 100 if b else float('nan')
    worst = min(worst, ch)
    print(f"| {model} | {t} | {test} | {b:.1f} | {h:.1f} | {ch:+.1f}% |")
if worst < -5:
    print(f"\nREGRESSION: {worst:.1f}% (more than 5% slower somewhere)")
EOF
