#!/usr/bin/env bash
# The cache's precision, f16 against f32, all in one run on this machine (release build,
# 2 threads) -> docs/bench/kv-precision.json:
#   - perplexity on the first 8,192 tokens of Emma and of Persuasion, 4 sinks + 1,020 window
#     (`sinkchat-bench eval perplexity --kv f32|f16`), and, as the noise floor, the f32 cache fed
#     one token at a time instead of in chunks of 256 (the one-token kernels: another order of
#     the same f32 sums; chunks of any other size give the same bits since 2026-12-01);
#   - decode and 512-token prompt speed (`sinkchat-bench decode --kv f32|f16`, each best of
#     three; the two precisions alternate three times and each figure is the median of its
#     three runs: this 2-core machine drifts by 10% or more between runs);
# on the default SmolLM2-135M Q4_1 and, when scripts/kquant-files.sh has fetched it, the
# Qwen2.5-Coder-0.5B-Instruct Q4_K_M file.
#   scripts/bench-kv.sh [all|perplexity|speed]   (the JSON is written from what target/ holds)
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
cargo build --release -p sinkchat-bench
export CANDLE_NUM_THREADS=${THREADS:-2} RAYON_NUM_THREADS=${THREADS:-2}
MODELS=(.data/models/SmolLM2-135M-Instruct.Q4_1.gguf)
QWEN=.cache/kquants/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf
if [ -f "$QWEN" ]; then MODELS+=("$QWEN"); else echo "no $QWEN (scripts/kquant-files.sh): SmolLM2 only" >&2; fi
OUT=target/kv-precision
mkdir -p "$OUT"
S=target/release/sinkchat-bench
for m in "${MODELS[@]}"; do
  name=$(basename "$m" .gguf)
  for book in emma persuasion; do
    [ "$what" = speed ] && break
    for kv in f32 f16; do
      $S eval perplexity --model "$m" --book "$book" --tokens 8192 --kv "$kv" --out-dir "$OUT/$name"
    done
    $S eval perplexity --model "$m" --book "$book" --tokens 8192 --chunk 1 --out-dir "$OUT/$name/chunk1"
  done
  for round in 1 2 3; do
    [ "$what" = perplexity ] && break
    for kv in f32 f16; do
      $S decode --model "$m" --kv "$kv" --out "$OUT/$name/decode-$kv-$round.json"
    done
  done
done
python3 - "$OUT" "${MODELS[@]}" <<'PY'
import json, os, sys, datetime
out, models = sys.argv[1], sys.argv[2:]
rows = []
for m in models:
    name = os.path.basename(m)[:-5]
    d = f"{out}/{name}"
    row = {"model": os.path.basename(m), "perplexity": {}}
    for book in ["emma", "persuasion"]:
        base = f"{book}-streaming-s4-w1024-n8192"
        f32 = json.load(open(f"{d}/{base}.json"))["perplexity"]
        f16 = json.load(open(f"{d}/{base}-kvf16.json"))["perplexity"]
        floor = json.load(open(f"{d}/chunk1/{base}.json"))["perplexity"]
        row["perplexity"][book] = {
            "f32": round(f32, 4), "f16": round(f16, 4), "f32_token_by_token": round(floor, 4),
            "f16_change_pct": round(100 * (f16 / f32 - 1), 3),
            "noise_floor_change_pct": round(100 * (floor / f32 - 1), 3),
        }
    for kv in ["f32", "f16"]:
        runs = [json.load(open(f"{d}/decode-{kv}-{r}.json")) for r in (1, 2, 3)]
        keys = ["sinkchat_tokens_per_s", "sinkchat_tokens_per_s_after_prompt", "sinkchat_prompt_tokens_per_s"]
        row[f"decode_{kv}"] = {k: sorted(r[k] for r in runs)[1] for k in keys}
        row[f"decode_{kv}"]["runs"] = [{k: r[k] for k in keys} for r in runs]
        row[f"decode_{kv}"]["cache_precision"] = runs[0]["cache_precision"]
    rows.append(row)
json.dump({"date": datetime.date.today().isoformat(), "threads": int(os.environ["CANDLE_NUM_THREADS"]),
           "cache": {"sinks": 4, "window": 1020}, "tokens": 8192, "models": rows},
          open("docs/bench/kv-precision.json", "w"), indent=2)
print(json.dumps(rows, indent=2))
PY
