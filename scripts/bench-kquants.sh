#!/usr/bin/env bash
# K-quant files against llama.cpp, all in one run on this machine (release build, 2 threads):
#   scripts/bench-kquants.sh speed        decode and 512-token prompt tokens/s of SinkChat and
#                                         llama-bench on each file -> docs/bench/decode-kquants.json
#                                         (REPEAT rounds over all the files, default 3; each
#                                         figure is the median of its rounds: single runs on a
#                                         shared 2-core machine spread by 10-30%)
#   scripts/bench-kquants.sh perplexity   perplexity on the first 8,192 tokens of Emma under
#                                         SinkChat's kernels and candle's, for each file, and
#                                         candle's again fed token by token (its one-token
#                                         paths: candle's own noise floor) for the files in
#                                         FLOOR (default: SmolLM2 Q4_K_M and Q6_K) ->
#                                         docs/bench/kernels-perplexity-kquants.json
# The files come from scripts/kquant-files.sh (SHA-256 pinned).
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-speed}
K=$(scripts/kquant-files.sh)
cargo build --release -p sinkchat-cli
export CANDLE_NUM_THREADS=${THREADS:-2} RAYON_NUM_THREADS=${THREADS:-2}
FILES=(SmolLM2-135M-Instruct.Q4_K_M SmolLM2-135M-Instruct.Q5_K_M SmolLM2-135M-Instruct.Q6_K
       SmolLM2-135M-Instruct.Q8_0 Qwen2.5-Coder-0.5B-Instruct.Q4_K_M)
OUT=target/kquants
mkdir -p "$OUT"
REPEAT=${REPEAT:-3}
if [ "$what" = speed ]; then
  rm -f "$OUT"/*.speed.*.json
  for r in $(seq "$REPEAT"); do
    for f in "${FILES[@]}"; do
      target/release/sinkchat bench decode --model "$K/$f.gguf" \
        --llamacpp .cache/llama.cpp/build/bin/llama-bench --out "$OUT/$f.speed.$r.json"
    done
  done
fi
for f in "${FILES[@]}"; do
  case "$what" in
    speed) ;;
    perplexity)
      # candle's side depends only on the file and candle: computed once, kept in $OUT.
      [ -f "$OUT/$f.candle.json" ] || target/release/sinkchat eval kernels --side candle \
        --model "$K/$f.gguf" --out "$OUT/$f.candle.json"
      case " ${FLOOR:-SmolLM2-135M-Instruct.Q4_K_M SmolLM2-135M-Instruct.Q6_K} " in
        *" $f "*) [ -f "$OUT/$f.candle1.json" ] || target/release/sinkchat eval kernels \
          --side candle --chunk 1 --model "$K/$f.gguf" --out "$OUT/$f.candle1.json" ;;
      esac
      target/release/sinkchat eval kernels --side sinkchat --model "$K/$f.gguf" --out "$OUT/$f.sinkchat.json" ;;
    *) echo "usage: scripts/bench-kquants.sh speed|perplexity" >&2; exit 64 ;;
  esac
done
python3 - "$what" "$OUT" "${FILES[@]}" <<'PY'
import datetime, glob, json, statistics, sys
what, out, files = sys.argv[1], sys.argv[2], sys.argv[3:]
rows = []
for f in files:
    if what == "speed":
        runs = [json.load(open(p)) for p in sorted(glob.glob(f"{out}/{f}.speed.*.json"))]
        d = dict(runs[0])
        for k, v in runs[0].items():
            if k.endswith("tokens_per_s") or k.endswith("_after_prompt"):
                d[k] = statistics.median(r[k] for r in runs)
        d["rounds"] = len(runs)
        d["decode_ratio"] = round(d["sinkchat_tokens_per_s"] / d["llamacpp_tokens_per_s"], 3)
        d["prompt_ratio"] = round(d["sinkchat_prompt_tokens_per_s"] / d["llamacpp_prompt_tokens_per_s"], 3)
    else:
        c, s = json.load(open(f"{out}/{f}.candle.json")), json.load(open(f"{out}/{f}.sinkchat.json"))
        assert c["tokens"] == s["tokens"], f
        d = {k: s[k] for k in ("model", "tensor_types", "text", "tokens")}
        d["perplexity_candle_kernels"] = c["perplexity"]
        d["perplexity_sinkchat_kernels"] = s["perplexity"]
        d["change_percent"] = round((s["perplexity"] - c["perplexity"]) / c["perplexity"] * 100, 4)
        try:
            c1 = json.load(open(f"{out}/{f}.candle1.json"))["perplexity"]
            d["perplexity_candle_kernels_token_by_token"] = c1
            d["candle_token_by_token_change_percent"] = round((c1 - c["perplexity"]) / c["perplexity"] * 100, 4)
        except FileNotFoundError:
            pass
    rows.append(d)
name = "decode-kquants.json" if what == "speed" else "kernels-perplexity-kquants.json"
doc = {"date": datetime.date.today().isoformat(), "threads": 2, "files": rows}
json.dump(doc, open(f"docs/bench/{name}", "w"), indent=2)
print(json.dumps(doc, indent=2))
PY
