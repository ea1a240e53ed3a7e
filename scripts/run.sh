#!/usr/bin/env bash
# The main job: fetch Gemma 3 270M (once, cached in ~/.cache/lmrun/models) and generate text
# from it in the default load mode (mmap-mlock-ignore-errors).
#
#   scripts/run.sh ["PROMPT"] [more `lmrun run` flags, e.g. -n 64 --temperature 0]
set -euo pipefail
cd "$(dirname "$0")/.."
prompt="${1:-Once upon a time, in a small village by the sea,}"
shift || true
model="$(scripts/fetch_models.sh gemma)"
cargo build --quiet --release -p lmrun-cli
exec target/release/lmrun run -m "$model" -p "$prompt" -n 128 "$@"
