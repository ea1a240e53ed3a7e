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
if [ ! -x target/release/lmrun ]; then
  echo "run.sh: building lmrun in release mode (the first build takes about 6 minutes on 2 cores;" \
       "cargo shows its progress below)" >&2
fi
cargo build --release -p lmrun-cli
# 128 new tokens unless the caller chose a count.
n_args=(-n 128)
for a in "$@"; do
  case "$a" in -n|--max-new-tokens|--max-new-tokens=*) n_args=() ;; esac
done
exec target/release/lmrun run -m "$model" -p "$prompt" "${n_args[@]}" "$@"
