#!/usr/bin/env bash
# NVIDIA's CUDA 13.4 compiler and headers from PyPI (no GPU, no driver needed), enough to compile
# SinkChat's `cuda` feature: nvcc and ptxas (nvidia-cuda-nvcc), cicc and libdevice
# (nvidia-nvvm), the C runtime headers (nvidia-cuda-crt), the runtime's headers
# (nvidia-cuda-runtime) and libcu++'s (nvidia-cuda-cccl, which cuda_fp16.h includes), each wheel
# SHA-256 pinned, unpacked into .cache/cuda (a toolkit root at
# .cache/cuda/nvidia/cu13). CUDA 13.4 is the newest the cudarc in Cargo.lock knows.
#
# candle links the CUDA driver and libraries (libcuda, libnvrtc, libcurand, libcublas,
# libcublasLt) at build time. The driver is no PyPI package, and cuBLAS alone is 700 MB, so the
# link goes against stubs made here, as NVIDIA's toolkit ships for machines without a driver
# (lib/stubs): one C function per symbol cudarc declares, each returning "no device" (100), so a
# CUDA build run here finds no GPU and falls back to the CPU. The stubs are for building and for
# that test only; a GPU machine runs the build against its real driver and CUDA libraries.
#
# Prints the lines to `eval`: CUDA_ROOT, PATH and the stubs for the loader.
#   eval "$(scripts/cuda-toolkit.sh)" && cargo build -p sinkchat-cli --features cuda
# CUDA_VERSION=13.0 installs CUDA 13.0 instead (what a machine with a 13.0 driver reads: PTX of a
# newer compiler does not load there), into .cache/cuda-13.0.
set -euo pipefail
cd "$(dirname "$0")/.."
V=${CUDA_VERSION:-13.4}
case "$V" in
  13.4) ROOT=$PWD/.cache/cuda
    WHEELS=(
      "nvidia-cuda-nvcc==13.4.92 a1f3bfb27299e060b444d5df1f4bcd762501326cf0fd3141ed61756816ab9a0e"
      "nvidia-nvvm==13.4.92 e4c81cb321dd9743bcf871c5e7e8fecd7f05dea607944426e102bdda8d49e137"
      "nvidia-cuda-crt==13.4.92 731ce3de11df8add8306404417a1edaede225dbe27eb233aed37c8de9d4fe720"
      "nvidia-cuda-runtime==13.4.92 9641f797da20ce1dd8e779b6e96d08cf9ba564cec8e8225458811ee26423f3a5"
      "nvidia-cuda-cccl==13.3.5.0.6 d5230098fa2df5021e1a00c0c4eee41797671a91119d31e892463e5ccf3ee326") ;;
  13.0) ROOT=$PWD/.cache/cuda-13.0
    WHEELS=(
      "nvidia-cuda-nvcc==13.0.88 56fe502eb77625a12f25172caa3cdddb4e4c8ba2c8c17dba44b164761b380f03"
      "nvidia-nvvm==13.0.88 c5f41ffeb6466944a026dfa5317d7d85355c119bbec279205d22f1869d1054e0"
      "nvidia-cuda-crt==13.0.88 2c8043c7c9e02492716426e9919fc78d2c5b3b2a7a768a88e952676b08aa55a4"
      "nvidia-cuda-runtime==13.0.96 7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548"
      "nvidia-cuda-cccl==13.0.85 e0da7ad981f3a8aff08241b5bfc1af868742a63e2762f53a5171c492ef242649") ;;
  *) echo "CUDA_VERSION: 13.4 or 13.0, not $V" >&2; exit 64 ;;
esac
TK=$ROOT/nvidia/cu13
W=$ROOT/wheels
mkdir -p "$W"
fetch() {  # $1: requirement, $2: SHA-256 of the wheel
  local name=${1%%==*} ver=${1##*==}
  local file
  file=$(ls "$W"/"${name//-/_}"-"$ver"-*.whl 2>/dev/null | head -1 || true)
  if [ -z "$file" ]; then
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
      --dest "$W" "$1" >&2
    file=$(ls "$W"/"${name//-/_}"-"$ver"-*.whl | head -1)
  fi
  echo "$2  $file" | sha256sum -c --quiet >&2 || { echo "$file: checksum mismatch" >&2; exit 1; }
  echo "$file"
}
if [ ! -x "$TK/bin/nvcc" ] || [ ! -f "$TK/include/nv/target" ] || [ ! -f "$TK/lib/stubs/libcublasLt.so" ]; then
  echo "installing CUDA $V's compiler and headers from PyPI into $ROOT" >&2
  rm -rf "$ROOT/nvidia"
  for req in "${WHEELS[@]}"; do
    unzip -q -o "$(fetch $req)" -d "$ROOT"
  done
  # Link stubs, from the symbols cudarc (the version Cargo.lock pins) declares for each library.
  cargo fetch --quiet >&2
  v=$(awk '/^name = "cudarc"$/ {getline; gsub(/"/, "", $3); print $3}' Cargo.lock)
  CUDARC=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"cudarc-$v" | head -1)
  mkdir -p "$TK/lib/stubs"
  for pair in driver:cuda:1 nvrtc:nvrtc:13 curand:curand:10 cublas:cublas:13 cublaslt:cublasLt:13; do
    IFS=: read -r module lib soversion <<<"$pair"
    src="$ROOT/stub-$lib.c"
    grep -oE '^pub unsafe fn [A-Za-z0-9_]+' "$CUDARC/src/$module/sys/mod.rs" | awk '{print $4}' | sort -u \
      | awk '{print "int " $1 "(void) { return 100; }"}' > "$src"
    gcc -shared -fPIC -Wl,-soname,"lib$lib.so.$soversion" -o "$TK/lib/stubs/lib$lib.so" "$src"
    ln -sf "lib$lib.so" "$TK/lib/stubs/lib$lib.so.$soversion"
  done
  # candle's kernels link the CUDA runtime itself (the real one, from the wheel).
  ln -sf libcudart.so.13 "$TK/lib/libcudart.so"
fi
echo "export CUDA_ROOT=$TK CUDA_PATH=$TK PATH=$TK/bin:\$PATH SINKCHAT_CUDA_STUBS=$TK/lib/stubs"
