#!/usr/bin/env bash
# Run every test of the project: fetches the real models (cached), then formatting, lints, the
# whole workspace's tests, and the Python package's (wheel built, installed in a fresh venv).
# Model tests FAIL when a model is missing; they are never skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/fetch_models.sh all >/dev/null
export LMRUN_MODELS_DIR="${LMRUN_MODELS_DIR:-$HOME/.cache/lmrun/models}"
LMRUN_VOCABS_DIR="$(scripts/fetch_vocabs.sh)"; export LMRUN_VOCABS_DIR

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
scripts/test_python.sh
