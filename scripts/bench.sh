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
if ! command -v cmake >/dev/null; then DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake >/dev/null; fi
LC=.cache/llama.cpp
if [ ! -x "$LC/build/bin/llama-bench" ]; then
  echo "building llama.cpp's llama-bench (about 10 minutes on 2 cores)"
  mkdir -p "$LC"
  tar -xzf .cache/llama_cpp_python-0.3.36.tar.gz -C "$LC" --strip-components=3 'llama_cpp_python-0.3.36/vendor/llama.cpp'
  cmake -S "$LC" -B "$LC/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=ON >/dev/null
  cmake --build "$LC/build" --target llama-bench -j"$(nproc)" >/dev/null
fi
cargo build --release -p sinkchat-cli
export CANDLE_NUM_THREADS=$THREADS RAYON_NUM_THREADS=$THREADS
MODEL=.data/models/SmolLM2-135M-Instruct.Q4_1.gguf
target/release/sinkchat bench decode --model "$MODEL" --llamacpp "$LC/build/bin/llama-bench" --out docs/bench/decode.json
target/release/sinkchat bench flat --model "$MODEL" --depths "$DEPTHS" --out docs/bench/flat.json
