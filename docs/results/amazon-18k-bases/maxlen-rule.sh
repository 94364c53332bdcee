#!/usr/bin/env bash
# MiniLM's max_length (192 or 128 tokens): chosen on amazon-18k's val by a rule written (and committed) before
# either candidate ran:
#   bash docs/results/amazon-18k-bases/maxlen-rule.sh     # from the repository root, with .venv set up
#
# Why: one whole epoch of the config, held to AVX2 kernels and float32, took 18.9 min on 2 cores of the bf16
# AMD EPYC (minilm-avx2-epoch.sh), and training took 1.30-1.64x longer on the AVX2-only EPYC than emulated
# here (docs/RESULTS.md, "The demo"): 25-31 min expected on that machine, against the issue's bound of 30.
# With MiniLM's tokenizer the train prompts are 169 tokens at the median (90% over 128, 3% over 192): at 128
# an item carries 23% fewer tokens (125 against 162 on average), and a step costs about that much less. The
# description's tail is cut, so val decides.
#
# The rule: two candidates, each trained as configs/amazon-18k-minilm.yaml says (two epochs, no dropout,
# fused AdamW) on the first 3,376 train rows (a quarter of the split, as lr-rule.sh and dropout-rule.sh), on
# this machine, one after the other:
#   192: the config as it stands
#   128: --max-length 128
# each scored on all 1,000 val items (MAE). The lower val MAE wins; the config changes only if 128 wins, and
# then its full run is the next step. The two are also compared item by item, and their training times
# recorded (reported, not part of the rule). No test look.
set -euo pipefail
PT=${PT:-.venv/bin/pricetune}
O=docs/results/amazon-18k-bases/minilm-maxlen; mkdir -p "$O"
for X in "192:" "128:--max-length 128"; do
  N=${X%%:*}; EXTRA=${X#*:}; R=runs/minilm-maxlen-$N
  [ -f "$R/summary.json" ] || $PT train --config amazon-18k-minilm --train-size 3376 --train-sample first \
    --eval-steps 211 --save-steps 211 --output-dir "$R" $EXTRA $([ -f "$R/config.yaml" ] && echo --resume)
  [ -f "$R/eval-val/metrics.json" ] || $PT evaluate "$R" --split val --limit 0 --batch-size 32 --output-dir "$R/eval-val"
  cp "$R/eval-val/metrics.json" "$O/$N-val-metrics.json"; cp "$R/summary.json" "$O/$N-summary.json"
  cp "$R/metrics.jsonl" "$O/$N-train-log.jsonl"
done
$PT evaluate --compare runs/minilm-maxlen-192/eval-val runs/minilm-maxlen-128/eval-val \
  --output-dir runs/minilm-maxlen-compare
cp runs/minilm-maxlen-compare/paired.json "$O/paired-128-vs-192.json"
grep -h '"mae"' "$O"/192-val-metrics.json "$O"/128-val-metrics.json
