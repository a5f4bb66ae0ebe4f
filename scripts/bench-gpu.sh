#!/usr/bin/env bash
# The GPU run against llama.cpp's CUDA build, prepared here and run on a lent GPU machine
# (an H200: compute capability 9.0, its image's CUDA 13.0 driver and nvcc, no network).
#
#   scripts/bench-gpu.sh prepare    here: everything that can be built here, into .gpu/ (ignored
#                                   by git): sinkchat-bench built with --features cuda for sm_90 by
#                                   CUDA 13.0's compiler from PyPI (the driver there is 13.0, and
#                                   PTX of a newer compiler would not load), stripped; llama.cpp's
#                                   source (only what llama-bench needs); the three model files
#                                   (SmolLM2 Q4_1 and Q4_K_M, Qwen2.5-Coder-0.5B Q4_K_M). Each
#                                   file is cut in parts under the device tool's 64 MiB carry,
#                                   listed with its SHA-256 in .gpu/MANIFEST.
#   scripts/bench-gpu.sh carry-plan prints, for each call of the device tool, the parts to carry
#                                   and the command that appends them on the machine (the
#                                   machine keeps what earlier calls left while it stays warm).
#   scripts/bench-gpu.sh run DIR    there, on the parts gathered in DIR: checks them, builds
#                                   llama.cpp's CUDA llama-bench for sm_90 only (a few minutes on
#                                   16 cores), then measures in one sitting, on each file: decode
#                                   and 512-token prompt tokens/s of SinkChat (f16 and f32 cache)
#                                   and of llama.cpp, and SinkChat's cost per token at 2K and 200K
#                                   tokens of one conversation (f16 and f32). Writes
#                                   docs/bench/decode-gpu-llamacpp.json and docs/bench/flat-gpu.json
#                                   into OUT_DIR (default $DIR/out).
#   scripts/bench-gpu.sh rehearse   here: prepare, gather the parts as the machine would, and run
#                                   every step but the GPU ones (llama.cpp for the CPU, the CUDA
#                                   build against the stub driver on the CPU): the script is
#                                   proven before device time is spent.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
G=$ROOT/.gpu
PART=60m
mode=${1:-}

models() {  # the three files, made and pinned by scripts/kquant-files.sh and the set-up
  local k
  k=$(scripts/kquant-files.sh)
  echo "$ROOT/.data/models/SmolLM2-135M-Instruct.Q4_1.gguf"
  echo "$ROOT/$k/SmolLM2-135M-Instruct.Q4_K_M.gguf"
  echo "$ROOT/$k/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf"
}

prepare() {
  scripts/setup.sh test-deps >/dev/null
  rm -rf "$G" && mkdir -p "$G/stage"
  # The CUDA build for sm_90 with the compiler the machine's driver reads.
  eval "$(CUDA_VERSION=13.0 scripts/cuda-toolkit.sh)"
  CUDA_COMPUTE_CAP=90 CARGO_TARGET_DIR="$ROOT/target/gpu" \
    cargo build --release -p sinkchat-bench --features cuda
  cp target/gpu/release/sinkchat-bench "$G/stage/sinkchat-bench"
  strip "$G/stage/sinkchat-bench"
  # llama.cpp's source for llama-bench (CMake, ggml, src, common, the tool).
  tar -xzf .cache/llama_cpp_python-0.3.36.tar.gz -C "$G/stage" --strip-components=2 \
    'llama_cpp_python-0.3.36/vendor/llama.cpp'
  (cd "$G/stage" && tar -czf llama.cpp.tar.gz llama.cpp && rm -rf llama.cpp)
  while read -r m; do cp "$m" "$G/stage/"; done < <(models)
  : > "$G/MANIFEST"
  mkdir -p "$G/parts"
  for f in "$G"/stage/*; do
    name=$(basename "$f")
    sha=$(sha256sum "$f" | cut -d' ' -f1)
    split -b "$PART" -d -a 3 "$f" "$G/parts/$name.part"
    echo "$sha $name $(ls "$G/parts/$name".part* | wc -l)" >> "$G/MANIFEST"
  done
  rm -rf "$G/stage"
  cp scripts/bench-gpu.sh "$G/bench-gpu.sh"
  echo "prepared: $(du -sh "$G/parts" | cut -f1) in $(ls "$G/parts" | wc -l) parts; see: scripts/bench-gpu.sh carry-plan" >&2
}

carry_plan() {
  [ -f "$G/MANIFEST" ] || { echo "run scripts/bench-gpu.sh prepare first" >&2; exit 1; }
  local i=0
  for p in "$G"/parts/*; do
    i=$((i + 1))
    echo "call $i: carry .gpu/parts/$(basename "$p") .gpu/MANIFEST .gpu/bench-gpu.sh; command: mkdir -p /tmp/sc && cp .gpu/parts/$(basename "$p") .gpu/MANIFEST .gpu/bench-gpu.sh /tmp/sc/"
  done
  echo "last call: bash /tmp/sc/bench-gpu.sh run /tmp/sc (OUT_DIR=\$OUT to bring the JSON back)"
}

gather() {  # $1: the folder holding the parts and MANIFEST; joins and checks every file
  local d=$1
  while read -r sha name n; do
    if [ ! -f "$d/$name" ]; then
      cat "$d/$name".part* > "$d/$name.tmp" && mv "$d/$name.tmp" "$d/$name"
    fi
    echo "$sha  $d/$name" | sha256sum -c --quiet || { echo "$name: damaged in transit" >&2; exit 1; }
    : "$n"
  done < "$d/MANIFEST"
}

run() {  # $1: the folder; GPU=0 runs on the CPU (the rehearsal)
  local d
  d=$(cd "$1" && pwd)
  gather "$d"
  local out=${OUT_DIR:-$d/out}
  mkdir -p "$out"
  local gpu=${GPU:-1} dev=gpu arch=90
  [ "$gpu" = 1 ] || dev=cpu
  if [ ! -x "$d/llama.cpp/build/bin/llama-bench" ]; then
    tar -xzf "$d/llama.cpp.tar.gz" -C "$d"
    local cuda=(-DGGML_CUDA=ON "-DCMAKE_CUDA_ARCHITECTURES=$arch")
    [ "$gpu" = 1 ] || cuda=(-DGGML_NATIVE=ON)
    cmake -S "$d/llama.cpp" -B "$d/llama.cpp/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
      -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF "${cuda[@]}" >/dev/null
    cmake --build "$d/llama.cpp/build" --target llama-bench -j"$(nproc)" >/dev/null
  fi
  [ "$gpu" = 1 ] && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  chmod +x "$d/sinkchat-bench"
  local b=$d/sinkchat-bench lb=$d/llama.cpp/build/bin/llama-bench
  local files=(SmolLM2-135M-Instruct.Q4_1.gguf SmolLM2-135M-Instruct.Q4_K_M.gguf Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf)
  for f in "${files[@]}"; do
    for kv in f16 f32; do
      "$b" decode --device "$dev" --kv "$kv" --model "$d/$f" --llamacpp "$lb" \
        --out "$out/decode-$f-$kv.json" >/dev/null
      "$b" flat --device "$dev" --kv "$kv" --model "$d/$f" --depths "${DEPTHS:-2000,200000}" \
        --out "$out/flat-$f-$kv.json" >/dev/null
    done
  done
  python3 - "$out" "$dev" <<'PY'
import glob, json, os, sys
out, dev = sys.argv[1], sys.argv[2]
rows, flat = [], []
for p in sorted(glob.glob(f"{out}/decode-*.json")):
    d = json.load(open(p))
    rows.append({k: d.get(k) for k in ["model", "device", "sinkchat_tokens_per_s", "llamacpp_tokens_per_s",
                                      "sinkchat_prompt_tokens_per_s", "llamacpp_prompt_tokens_per_s", "cache_precision"]})
for p in sorted(glob.glob(f"{out}/flat-*.json")):
    d = json.load(open(p))
    d["file"] = os.path.basename(p)
    flat.append(d)
json.dump({"device": dev, "rows": rows}, open(f"{out}/decode-gpu-llamacpp.json", "w"), indent=2)
json.dump({"device": dev, "runs": flat}, open(f"{out}/flat-gpu.json", "w"), indent=2)
print(json.dumps(rows, indent=1))
PY
}

case "$mode" in
  prepare) prepare ;;
  carry-plan) carry_plan ;;
  run) run "${2:?the folder of the parts}" ;;
  rehearse)
    prepare
    R=$(mktemp -d)
    cp "$G"/parts/* "$G/MANIFEST" "$R/"
    eval "$(scripts/cuda-toolkit.sh)"
    GPU=0 DEPTHS=${DEPTHS:-2000,20000} LD_LIBRARY_PATH="$SINKCHAT_CUDA_STUBS:$CUDA_ROOT/lib" run "$R"
    echo "rehearsal passed: $R/out" >&2
    ;;
  *)
    echo "usage: scripts/bench-gpu.sh prepare|carry-plan|run DIR|rehearse" >&2
    exit 64
    ;;
esac
