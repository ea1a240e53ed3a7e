#!/usr/bin/env bash
# Fetch llama.cpp's tokenizer test vocabularies (models/ggml-vocab-*.gguf with their .inp/.out
# case files) from the llama-cpp-python source distribution on PyPI, into a cache outside the
# repository. crates/lmrun-tokenizers/tests/llama_vocabs.rs checks every case against lmrun.
#
#   scripts/fetch_vocabs.sh
#
# The cache directory is $LMRUN_VOCABS_DIR, else ~/.cache/lmrun/llama-vocabs. Idempotent: once a
# fetch has completed (marker file), nothing is downloaded again. Prints the directory.
set -euo pipefail

version="0.3.36"
dest="${LMRUN_VOCABS_DIR:-$HOME/.cache/lmrun/llama-vocabs}"
marker="$dest/.llama-cpp-python-$version"
py="${PYTHON:-python3}"

if [ -f "$marker" ]; then
  echo "$dest"
  exit 0
fi

mkdir -p "$dest"
work="$(mktemp -d "$dest/.fetch.XXXXXX")"
trap 'rm -rf "$work"' EXIT

if ! "$py" -m pip download --quiet --no-deps --no-binary llama-cpp-python --disable-pip-version-check \
  -d "$work/sdist" "llama-cpp-python==$version" >"$work/pip.log" 2>&1; then
  echo "error: could not download the llama-cpp-python $version sdist (offline, or no access to pypi.org?)" >&2
  sed 's/^/  pip: /' "$work/pip.log" | tail -5 >&2
  exit 1
fi
sdist="$(ls "$work"/sdist/llama_cpp_python-"$version".tar.gz)"
mkdir -p "$work/src"
tar -xzf "$sdist" -C "$work/src" --wildcards '*/vendor/llama.cpp/models/ggml-vocab-*'
n=0
for f in "$work"/src/*/vendor/llama.cpp/models/ggml-vocab-*; do
  mv -f "$f" "$dest/"
  n=$((n + 1))
done
if [ "$n" -eq 0 ]; then
  echo "error: no models/ggml-vocab-* files in $sdist" >&2
  exit 1
fi
touch "$marker"
echo "$dest"
