#!/usr/bin/env bash
# Speed benchmarks, all in one run on this machine (release build, 2 threads):
#   decode and prompt tokens/s of SmolLM2 Q4_1 against llama.cpp's llama-bench (built from the
#   llama-cpp-python source package), and ms per token as one conversation grows.
# Writes docs/bench/decode.json and docs/bench/flat.json; docs/BENCHMARKS.md quotes them.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
DEPTHS=${DEPTHS:-2000,20000,200000}
scripts/setup.sh test-deps >/dev/null
LC=.cache/llama.cpp
scripts/llamacpp.sh llama-bench >/dev/null
cargo build --release -p sinkchat-bench
export CANDLE_NUM_THREADS=$THREADS RAYON_NUM_THREADS=$THREADS
MODEL=.data/models/SmolLM2-135M-Instruct.Q4_1.gguf
target/release/sinkchat-bench decode --model "$MODEL" --llamacpp "$LC/build/bin/llama-bench" --out docs/bench/decode.json
target/release/sinkchat-bench flat --model "$MODEL" --depths "$DEPTHS" --out docs/bench/flat.json
