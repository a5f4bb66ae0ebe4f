#!/usr/bin/env bash
# GPU benchmarks: decode/prompt speed and flat cost per token of SmolLM2 Q4_1 on a CUDA GPU.
#   scripts/bench-gpu.sh                 # builds `sinkchat` with --features cuda (needs nvcc),
#                                        # then runs both benchmarks with --device gpu
#   SINKCHAT_BIN=path MODEL=path OUT_DIR=dir scripts/bench-gpu.sh   # a binary built elsewhere
# Writes decode-gpu.json and flat-gpu.json into OUT_DIR (docs/bench by default), then the same
# with candle's matmul/softmax attention instead of ours (SINKCHAT_ATTENTION=candle; the flat
# run at the first depth only) as decode-gpu-candle.json and flat-gpu-candle.json.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${OUT_DIR:-docs/bench}
MODEL=${MODEL:-.data/models/SmolLM2-135M-Instruct.Q4_1.gguf}
DEPTHS=${DEPTHS:-2000,20000,200000}
BIN=${SINKCHAT_BIN:-}
if [ -z "$BIN" ]; then
  CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d .)} \
    cargo build --release -p sinkchat-cli --features cuda
  BIN=target/release/sinkchat
fi
mkdir -p "$OUT_DIR"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$BIN" bench decode --device gpu --model "$MODEL" --out "$OUT_DIR/decode-gpu.json"
"$BIN" bench flat --device gpu --model "$MODEL" --depths "$DEPTHS" --out "$OUT_DIR/flat-gpu.json"
export SINKCHAT_ATTENTION=candle
"$BIN" bench decode --device gpu --model "$MODEL" --out "$OUT_DIR/decode-gpu-candle.json"
"$BIN" bench flat --device gpu --model "$MODEL" --depths "${DEPTHS%%,*}" --out "$OUT_DIR/flat-gpu-candle.json"
