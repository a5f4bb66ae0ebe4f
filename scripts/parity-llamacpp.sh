#!/usr/bin/env bash
# SinkChat against llama.cpp on every real GGUF file the project tests with: the first 2,048
# tokens of Emma scored by llama.cpp's llama-perplexity and by SinkChat the same way (BOS first,
# one dense pass, the second half scored), one row per file -> docs/bench/parity-llamacpp.json.
# The files: SmolLM2-135M-Instruct Q4_1 (the default model) and its K-quant and IQ4 files,
# Qwen2.5-Coder 0.5B Q4_K_M and its IQ4 files (scripts/kquant-files.sh makes and pins them),
# Gemma 3 270M Q4_K_M (the set-up fetches it). CI checks the small ones (crates/bench/tests/parity_llamacpp.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
export SINKCHAT_DATA_DIR=${SINKCHAT_DATA_DIR:-$PWD/.data}
scripts/setup.sh test-deps >/dev/null
K=$(scripts/kquant-files.sh)
BIN=$(scripts/llamacpp.sh llama-perplexity)
cargo build --release -p sinkchat-bench
OUT=${OUT:-docs/bench/parity-llamacpp.json}
rm -f "$OUT"
args=()
for f in .data/models/SmolLM2-135M-Instruct.Q4_1.gguf "$K"/SmolLM2-135M-Instruct.Q4_K_M.gguf \
         "$K"/SmolLM2-135M-Instruct.Q5_K_M.gguf "$K"/SmolLM2-135M-Instruct.Q6_K.gguf \
         "$K"/SmolLM2-135M-Instruct.Q8_0.gguf "$K"/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf \
         "$K"/SmolLM2-135M-Instruct.IQ4_NL.gguf "$K"/SmolLM2-135M-Instruct.IQ4_XS.gguf \
         "$K"/Qwen2.5-Coder-0.5B-Instruct.IQ4_NL.gguf "$K"/Qwen2.5-Coder-0.5B-Instruct.IQ4_XS.gguf \
         .cache/gemma3/gemma-3-270m-q4_k_m.gguf; do
  args+=(--model "$f")
done
target/release/sinkchat-bench eval parity "${args[@]}" --book emma --ctx 2048 \
  --llamacpp "$BIN/llama-perplexity" --out "$OUT"
