#!/usr/bin/env bash
# K-quant files against llama.cpp, all in one run on this machine (release build, 2 threads):
#   [IQ=1] scripts/bench-kquants.sh speed   (IQ=1: the IQ4_NL and IQ4_XS files, *-iquants.json)
#   scripts/bench-kquants.sh speed        decode and 512-token prompt tokens/s of SinkChat and
#                                         llama-bench on each file -> docs/bench/decode-kquants.json
#                                         (REPEAT rounds over all the files, default 3; each
#                                         figure is the median of its rounds: single runs on a
#                                         shared 2-core machine spread by 10-30%)
#   scripts/bench-kquants.sh perplexity   perplexity on the first 8,192 tokens of Emma under
#                                         SinkChat's kernels and candle's, for each file, and
#                                         candle's again fed token by token (its one-token
#                                         paths: candle's own noise floor) for the files in
#                                         FLOOR (default: SmolLM2 Q4_K_M and Q6_K), and
#                                         both again on the model nudged by one ulp (its
#                                         norm weights, `eval kernels --nudge SEED`) for each
#                                         seed in NUDGES (default "1 2 3 4"): rounding alone
#                                         moves one run by up to 0.3% on the 135M files, so
#                                         the claim is the mean over the original and the
#                                         nudged runs; NUDGE_FILES limits which files get them
#                                         (default all; about 4 min a seed for a 135M file
#                                         and 13 for the 0.5B on 2 idle cores) ->
#                                         docs/bench/kernels-perplexity-kquants.json
# The files come from scripts/kquant-files.sh (SHA-256 pinned).
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-speed}
K=$(scripts/kquant-files.sh)
cargo build --release -p sinkchat-bench
export CANDLE_NUM_THREADS=${THREADS:-2} RAYON_NUM_THREADS=${THREADS:-2}
FILES=(SmolLM2-135M-Instruct.Q4_K_M SmolLM2-135M-Instruct.Q5_K_M SmolLM2-135M-Instruct.Q6_K
       SmolLM2-135M-Instruct.Q8_0 Qwen2.5-Coder-0.5B-Instruct.Q4_K_M)
# IQ=1: the i-quant files instead (IQ4_NL, IQ4_XS of both models), into decode-iquants.json.
[ -z "${IQ:-}" ] || FILES=(SmolLM2-135M-Instruct.IQ4_NL SmolLM2-135M-Instruct.IQ4_XS
                           Qwen2.5-Coder-0.5B-Instruct.IQ4_NL Qwen2.5-Coder-0.5B-Instruct.IQ4_XS)
OUT=target/kquants
mkdir -p "$OUT"
REPEAT=${REPEAT:-3}
if [ "$what" = speed ]; then
  rm -f "$OUT"/*.speed.*.json
  for r in $(seq "$REPEAT"); do
    for f in "${FILES[@]}"; do
      target/release/sinkchat-bench decode --model "$K/$f.gguf" \
        --llamacpp .cache/llama.cpp/build/bin/llama-bench --out "$OUT/$f.speed.$r.json"
    done
  done
fi
for f in "${FILES[@]}"; do
  case "$what" in
    speed) ;;
    perplexity)
      # A figure is kept while it is newer than the binary that computed it (both sides run our
      # forward pass, so a rebuild invalidates both): a rerun only fills in what is missing.
      run() { local out=$1; shift
        [ "$OUT/$out" -nt target/release/sinkchat-bench ] || target/release/sinkchat-bench eval kernels \
          --model "$K/$f.gguf" --out "$OUT/$out" "$@"; }
      run "$f.candle.json" --side candle
      run "$f.sinkchat.json" --side sinkchat
      case " ${FLOOR:-SmolLM2-135M-Instruct.Q4_K_M SmolLM2-135M-Instruct.Q6_K} " in
        *" $f "*) run "$f.candle1.json" --side candle --chunk 1 ;;
      esac
      case " ${NUDGE_FILES:-${FILES[*]}} " in
        *" $f "*)
          for n in ${NUDGES-1 2 3 4}; do
            run "$f.candle.n$n.json" --side candle --nudge "$n"
            run "$f.sinkchat.n$n.json" --side sinkchat --nudge "$n"
          done ;;
      esac ;;
    *) echo "usage: scripts/bench-kquants.sh speed|perplexity" >&2; exit 64 ;;
  esac
done
python3 - "$what" "$OUT" "${IQ:-}" "${FILES[@]}" <<'PY'
import datetime, glob, json, os, statistics, sys
what, out, iq, files = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
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
        # The nudged runs: the same comparison on the model moved by an ulp, one seed each.
        runs = [(c["perplexity"], s["perplexity"])]
        built = os.path.getmtime("target/release/sinkchat-bench")
        for sp in sorted(glob.glob(f"{out}/{f}.sinkchat.n*.json")):
            n = sp.rsplit(".n", 1)[1][:-len(".json")]
            if os.path.getmtime(sp) < built:
                continue  # computed by an older build
            try:
                cn = json.load(open(f"{out}/{f}.candle.n{n}.json"))["perplexity"]
            except FileNotFoundError:
                continue
            sn = json.load(open(sp))["perplexity"]
            d.setdefault("nudged", []).append({
                "seed": int(n), "perplexity_candle_kernels": cn, "perplexity_sinkchat_kernels": sn,
                "change_percent": round((sn - cn) / cn * 100, 4)})
            runs.append((cn, sn))
        if len(runs) > 1:
            cm = statistics.mean(r[0] for r in runs)
            sm = statistics.mean(r[1] for r in runs)
            d["runs"] = len(runs)
            d["mean_perplexity_candle_kernels"] = round(cm, 4)
            d["mean_perplexity_sinkchat_kernels"] = round(sm, 4)
            d["mean_change_percent"] = round((sm - cm) / cm * 100, 4)
            # How far rounding alone moves one run of candle's kernels (sample std, % of its
            # mean), and the standard error of the mean change, from the runs' own changes.
            d["candle_run_std_percent"] = round(statistics.stdev(r[0] for r in runs) / cm * 100, 4)
            ch = [(s - c) / c * 100 for c, s in runs]
            d["mean_change_standard_error_percent"] = round(statistics.stdev(ch) / len(ch) ** 0.5, 4)
    rows.append(d)
name = "decode-kquants.json" if what == "speed" else "kernels-perplexity-kquants.json"
if iq:
    name = name.replace("kquants", "iquants")
doc = {"date": datetime.date.today().isoformat(), "threads": 2, "files": rows}
json.dump(doc, open(f"docs/bench/{name}", "w"), indent=2)
print(json.dumps(doc, indent=2))
PY
