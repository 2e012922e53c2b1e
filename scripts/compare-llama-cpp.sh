#!/usr/bin/env bash
# arenalm against llama.cpp on the same CPU, side by side in one run.
#
#   scripts/compare-llama-cpp.sh [options]
#
# Builds llama.cpp from the PyPI sdist (scripts/build-llama-cpp.sh, outside
# the repository) and arenalm (release), then runs `llama-bench` and
# `arenalm bench` alternately on the same files, pinned to the same CPUs,
# and prints one table: tokens/s of each and arenalm's ratio.
#
# Options:
#   -m MODEL        a model file (repeatable; default: the SmolLM2 Q8_0, Q4_0
#                   and Q4_1 files in models/)
#   -t LIST         thread counts (default 1,2)
#   -p N / -n N     prompt and generation lengths (default 512 / 128)
#   -d LIST         depths: tokens already in the KV cache (default 0)
#   -r N            repetitions (default 3)
#   --rounds N      alternating rounds (default 1)
#   --llama DIR     llama.cpp build directory (default ../llama-cpp-build)
#   --json FILE     also write every measurement as JSON
#
# Thread count t runs on the last t CPUs (taskset). Check `uptime` first:
# the figures are only as quiet as the machine.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

models=() threads=1,2 prompt=512 gen=128 depths=0 reps=3 rounds=1 llama_dir="" json_out=""
while [ $# -gt 0 ]; do
  case $1 in
    -m) models+=("$2"); shift 2;;
    -t) threads=$2; shift 2;;
    -p) prompt=$2; shift 2;;
    -n) gen=$2; shift 2;;
    -d) depths=$2; shift 2;;
    -r) reps=$2; shift 2;;
    --rounds) rounds=$2; shift 2;;
    --llama) llama_dir=$2; shift 2;;
    --json) json_out=$2; shift 2;;
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

bin=$(scripts/build-llama-cpp.sh ${llama_dir:+"$llama_dir"} | tail -n 1)
cargo build -q --release -p arenalm-cli
arenalm=$root/target/release/arenalm

echo "uptime: $(uptime)"
echo "llama.cpp: $bin/llama-bench"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
ncpu=$(nproc)
for round in $(seq 1 "$rounds"); do
  for m in "${models[@]}"; do
    for t in ${threads//,/ }; do
      cpus=$(seq -s, $((ncpu - t)) $((ncpu - 1)))
      for d in ${depths//,/ }; do
        tag=$(basename "$m" .gguf)-t$t-d$d-$round
        taskset -c "$cpus" "$bin/llama-bench" -m "$m" -t "$t" -p "$prompt" -n "$gen" \
          -d "$d" -r "$reps" -o json > "$out/llama-$tag.json" 2>/dev/null
        taskset -c "$cpus" "$arenalm" bench -m "$m" -t "$t" -p "$prompt" -n "$gen" \
          -d "$d" -r "$reps" --json > "$out/arenalm-$tag.json"
      done
    done
  done
done

python3 - "$out" "$json_out" <<'EOF'
import json, os, statistics, sys
out, json_out = sys.argv[1], sys.argv[2]
rows = {}
for f in sorted(os.listdir(out)):
    engine = f.split('-', 1)[0]
    for r in json.load(open(os.path.join(out, f))):
        if engine == 'llama':
            model = os.path.basename(r['model_filename'])
            test = f"pp{r['n_prompt']}" if r['n_prompt'] else f"tg{r['n_gen']}"
            depth, t, ts = r.get('n_depth', 0), r['n_threads'], r['avg_ts']
        else:
            model, t, ts = r['model'], r['threads'], r['avg_ts']
            test = r['test'].split(' ')[0]
            depth = r['depth']
        rows.setdefault((model, t, depth, test), {}).setdefault(engine, []).append(ts)
print("| model | threads | depth | test | llama.cpp t/s | arenalm t/s | ratio |")
print("| --- | ---: | ---: | --- | ---: | ---: | ---: |")
report = []
for (model, t, depth, test), e in sorted(rows.items()):
    l = statistics.median(e.get('llama', [0]))
    a = statistics.median(e.get('arenalm', [0]))
    ratio = a / l if l else float('nan')
    print(f"| {model} | {t} | {depth} | {test} | {l:.1f} | {a:.1f} | {ratio:.2f} |")
    report.append(dict(model=model, threads=t, depth=depth, test=test,
                       llama_cpp_ts=l, arenalm_ts=a, ratio=ratio))
if json_out:
    json.dump(report, open(json_out, 'w'), indent=1)
EOF
