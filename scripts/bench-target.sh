#!/usr/bin/env bash
# What the package's portable build costs: the CLI built for this machine's CPU
# (target/release, .cargo/config.toml's target-cpu=native) against the CLI built as the .deb is
# (target/package/release, -C target-cpu=x86-64-v3, see scripts/setup.sh), decode and
# 512-token prompt tokens/s on the default model and the K-quant files, REPEAT rounds (default
# 3) alternating the two builds; each figure is the median of its rounds ->
# docs/bench/package-target.json. Both builds must give the same text (checked).
set -euo pipefail
cd "$(dirname "$0")/.."
K=$(scripts/kquant-files.sh)
cargo build --release -p sinkchat-bench
RUSTFLAGS="-C target-cpu=x86-64-v3" CARGO_TARGET_DIR=target/package cargo build --release -p sinkchat-bench
export CANDLE_NUM_THREADS=${THREADS:-2} RAYON_NUM_THREADS=${THREADS:-2}
OUT=target/bench-target
rm -rf "$OUT" && mkdir -p "$OUT"
FILES=(.data/models/SmolLM2-135M-Instruct.Q4_1.gguf "$K/SmolLM2-135M-Instruct.Q4_K_M.gguf"
       "$K/SmolLM2-135M-Instruct.Q6_K.gguf" "$K/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf")
for r in $(seq "${REPEAT:-3}"); do
  for f in "${FILES[@]}"; do
    for b in release package/release; do
      target/$b/sinkchat-bench decode --model "$f" \
        --out "$OUT/$(basename "$f" .gguf).$(echo $b | tr / _).$r.json" >/dev/null
    done
  done
done
python3 - "$OUT" <<'PY'
import datetime, glob, json, statistics, sys
out = sys.argv[1]
rows = {}
for p in sorted(glob.glob(f"{out}/*.json")):
    model, build, _ = p.rsplit("/", 1)[1][:-len(".json")].rsplit(".", 2)
    rows.setdefault(model, {}).setdefault(build, []).append(json.load(open(p)))
files = []
for model, b in rows.items():
    texts = {r["capital_of_france"] for runs in b.values() for r in runs}
    assert len(texts) == 1, (model, texts)
    d = {"model": model, "rounds": len(b["release"])}
    for build, key in (("release", "native"), ("package_release", "x86_64_v3")):
        d[f"{key}_tokens_per_s"] = statistics.median(r["sinkchat_tokens_per_s"] for r in b[build])
        d[f"{key}_prompt_tokens_per_s"] = statistics.median(r["sinkchat_prompt_tokens_per_s"] for r in b[build])
    d["decode_ratio"] = round(d["x86_64_v3_tokens_per_s"] / d["native_tokens_per_s"], 3)
    d["prompt_ratio"] = round(d["x86_64_v3_prompt_tokens_per_s"] / d["native_prompt_tokens_per_s"], 3)
    files.append(d)
doc = {"date": datetime.date.today().isoformat(), "threads": 2, "files": files}
json.dump(doc, open("docs/bench/package-target.json", "w"), indent=2)
print(json.dumps(doc, indent=2))
PY
