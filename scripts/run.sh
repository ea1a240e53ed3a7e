#!/usr/bin/env bash
# The main job: fetch Gemma 3 270M (once, cached) and run lmrun on it in the default load mode
# (mmap-mlock-ignore-errors). Extra arguments are passed to `lmrun load`.
set -euo pipefail
cd "$(dirname "$0")/.."
model="$(scripts/fetch_models.sh gemma)"
cargo run --quiet --release -p lmrun-cli -- load "$model" "$@"
