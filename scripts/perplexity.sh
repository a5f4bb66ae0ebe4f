#!/usr/bin/env bash
# The perplexity experiment of issue #4 (the paper's Figure 3, Tables 2 and 6) on SmolLM2 and
# Jane Austen's Emma. Needs `scripts/setup.sh test-deps` (model and novels). Takes hours on 2
# cores; each run is skipped when its results are already in target/perplexity.
#   scripts/perplexity.sh           all runs, then docs/bench/perplexity.json and the plot
#   scripts/perplexity.sh report    only the report, from the runs done so far
set -euo pipefail
cd "$(dirname "$0")/.."
export SINKCHAT_DATA_DIR=${SINKCHAT_DATA_DIR:-$PWD/.data}
B=target/release/sinkchat-bench
D=target/perplexity
MAIN=65536     # the table: first 65K tokens of Emma
ABL=16384      # the ablations: first 16K tokens
[ "${1:-}" = report ] || cargo build --release -p sinkchat-bench
mkdir -p "$D"
run() {  # $1: label of the result, rest: arguments
  local label=$1; shift
  if [ -f "$D/$label.json" ]; then echo "have $label"; return; fi
  "$B" eval perplexity --out-dir "$D" "$@"
}
if [ "${1:-}" != report ]; then
  run emma-streaming-s4-w1024-n221849 --mode streaming --sinks 4 --window 1024
  run emma-window-w1024-n$MAIN --mode window --window 1024 --tokens $MAIN
  run emma-recompute-w1024-r1024-n$MAIN --mode recompute --window 1024 --stride 1024 --tokens $MAIN
  run emma-dense-n$ABL --mode dense --tokens $ABL --chunk 512
  for s in 1 2 8; do
    run emma-streaming-s$s-w1024-n$ABL --mode streaming --sinks $s --window 1024 --tokens $ABL
  done
  for w in 256 512 2048; do
    run emma-streaming-s4-w$w-n$ABL --mode streaming --sinks 4 --window $w --tokens $ABL
  done
fi
"$B" eval report --dir "$D" --tokens $MAIN --ablation-tokens $ABL \
  --out docs/bench/perplexity.json --plot docs/perplexity.svg
