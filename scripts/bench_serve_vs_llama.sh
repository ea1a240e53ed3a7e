#!/usr/bin/env bash
# Side-by-side serving benchmark: `lmrun serve` and llama-server on the same GGUF, the same
# --parallel and threads, started one after the other (never together) and alternated for
# ROUNDS rounds; each run is scripts/bench_serve.py at 1, 4 and 8 concurrent streaming clients.
# Run it on a quiet machine: llama.cpp's spinning thread pool loses 3-25x when another process
# holds a core, which would flatter lmrun.
#
#   scripts/bench_serve_vs_llama.sh MODEL.gguf [LLAMA_SERVER] [ROUNDS]
#
# LLAMA_SERVER defaults to $LLAMA_SERVER, then to the llama.cpp build of the llama-cpp-python
# 0.3.36 sdist under /work/llama (see docs/performance.md for how it is built).
# Env: PARALLEL (4), THREADS (2), CTX (1024 per slot), MAX_TOKENS (64).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:?usage: bench_serve_vs_llama.sh MODEL.gguf [LLAMA_SERVER] [ROUNDS]}
llama=${2:-${LLAMA_SERVER:-/work/llama/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin/llama-server}}
rounds=${3:-2}
par=${PARALLEL:-4}
thr=${THREADS:-2}
ctx=${CTX:-1024}
maxt=${MAX_TOKENS:-64}
lmrun=target/release/lmrun
[ -x "$lmrun" ] || cargo build --release -p lmrun-cli
[ -x "$llama" ] || { echo "llama-server not found at $llama" >&2; exit 1; }

wait_up() {
  for _ in $(seq 600); do
    if curl -sf "http://127.0.0.1:$1/health" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "server on port $1 did not come up" >&2
  return 1
}

run_one() { # label port cmd...
  local label=$1 port=$2
  shift 2
  "$@" >/tmp/bench_serve_$label.log 2>&1 &
  local pid=$!
  wait_up "$port"
  python3 scripts/bench_serve.py --url "http://127.0.0.1:$port" --label "$label" \
    --max-tokens "$maxt" --rounds 3 | grep "^| $label"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

echo "model: $model, --parallel $par, $thr threads, $maxt tokens per request"
echo "| server | clients | aggregate tokens/s (median) | TTFT p50 ms | TTFT p95 ms |"
echo "|---|---|---|---|---|"
for _ in $(seq "$rounds"); do
  run_one lmrun 18080 "$lmrun" serve -m "$model" --parallel "$par" --threads "$thr" \
    --ctx-size "$ctx" --port 18080
  run_one llama-server 18081 "$llama" -m "$model" --parallel "$par" -t "$thr" -tb "$thr" \
    -c $((ctx * par)) --port 18081 --no-webui
done
