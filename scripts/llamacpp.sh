#!/usr/bin/env bash
# llama.cpp from the llama-cpp-python source package the set-up fetches (SHA-256 pinned there),
# built once into .cache/llama.cpp/build: the peer SinkChat is measured against and the real
# serving engine of the server tests. Prints the folder of the binaries.
#   scripts/llamacpp.sh [TARGET...]   default: every target below
# Targets: llama-bench, llama-quantize, llama-perplexity (measurement); llama-server,
# ggml-rpc-server (the server door's tests: a model served alone, and split over two RPC servers).
# Only the targets asked for are built; each is built once (about 4 minutes for the library and
# a few more per tool on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
LC=.cache/llama.cpp
SDIST=.cache/llama_cpp_python-0.3.36.tar.gz
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(llama-bench llama-quantize llama-perplexity llama-server ggml-rpc-server)
if ! command -v cmake >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake >/dev/null
fi
[ -f "$SDIST" ] || scripts/setup.sh test-data >/dev/null
# Built without Intel AMX: on processors that have it (Sapphire Rapids and later), the -march=native
# build's AMX matrix kernels crash llama-perplexity and llama-server on our Q4_1 default model
# (SIGSEGV in ggml_backend_amx_mul_mat, 2026-12-05); -U cancels the macros -march=native defines,
# so the build is the same as on an AVX-512 processor without AMX. A build made before this
# (no stamp) is made again.
NO_AMX="-U__AMX_INT8__ -U__AMX_TILE__ -U__AMX_BF16__"
if [ -d "$LC/build" ] && [ ! -f "$LC/build/.no-amx" ]; then rm -rf "$LC/build"; fi
missing=()
for t in "${targets[@]}"; do [ -x "$LC/build/bin/$t" ] || missing+=("$t"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "building llama.cpp's ${missing[*]} (once, into $LC/build)" >&2
  if [ ! -f "$LC/CMakeLists.txt" ]; then
    mkdir -p "$LC"
    tar -xzf "$SDIST" -C "$LC" --strip-components=3 'llama_cpp_python-0.3.36/vendor/llama.cpp'
  fi
  cmake -S "$LC" -B "$LC/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
    -DCMAKE_C_FLAGS="$NO_AMX" -DCMAKE_CXX_FLAGS="$NO_AMX" \
    -DLLAMA_OPENSSL=OFF -DGGML_RPC=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON >/dev/null
  cmake --build "$LC/build" --target "${missing[@]}" -j"$(nproc)" >/dev/null
  touch "$LC/build/.no-amx"
fi
echo "$LC/build/bin"
