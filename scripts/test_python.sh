#!/usr/bin/env bash
# The Python tests (the package, and `lmrun serve` through the openai client): build the
# lmrun wheel with maturin (from PyPI), install it with pytest and openai into a fresh virtual
# environment, and run pytest against the installed package. Called by
# scripts/test.sh after the Rust tests (which build the `lmrun` command the tests compare with).
set -euo pipefail
cd "$(dirname "$0")/.."

export LMRUN_MODELS_DIR="${LMRUN_MODELS_DIR:-$HOME/.cache/lmrun/models}"
venv="target/pyvenv"
rm -rf "$venv" target/wheels
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "maturin>=1.8,<2" pytest openai jsonschema
"$venv/bin/maturin" build --release -m python/Cargo.toml -o target/wheels \
  --interpreter "$venv/bin/python"
"$venv/bin/pip" install --quiet --disable-pip-version-check target/wheels/lmrun-*.whl

if [ -z "${LMRUN_BIN:-}" ]; then
  if [ -x target/debug/lmrun ]; then LMRUN_BIN=target/debug/lmrun; else
    cargo build --release -p lmrun-cli
    LMRUN_BIN=target/release/lmrun
  fi
fi
root="$PWD"
case "$LMRUN_BIN" in /*) ;; *) LMRUN_BIN="$root/$LMRUN_BIN" ;; esac
export LMRUN_BIN
# Run from outside the source tree so `import lmrun` is the installed wheel.
cd target
"$root/$venv/bin/python" -m pytest "$root/python/tests" -q -rs -p no:cacheprovider
