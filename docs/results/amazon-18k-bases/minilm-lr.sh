#!/usr/bin/env bash
# all-MiniLM-L6-v2's learning rate chosen on amazon-18k's val by a rule written (and committed) before any
# figure of it ran; the same rule as gemma-lr.sh:
#   bash docs/results/amazon-18k-bases/minilm-lr.sh       # from the repository root, with .venv set up
#
# Why: configs/amazon-18k-minilm.yaml took the usual full fine-tune of a BERT (1e-4, head 1e-3) without a
# val figure to choose it.
#
# The rule: three candidates, the config's learning rates (every weight 1e-4, head 1e-3) times 1/3, 1 and 3,
# both scaled alike; each trained for the config's two epochs on the first 3,376 train rows (a quarter of
# the split: 422 steps, about 8 min on 2 bf16 cores), everything else the config's; each scored on all
# 1,000 val items (MAE). The lowest val MAE wins; the config changes only if the winner is not the config's
# own, and then its full run (1,688 steps) is the next step. No test look.
set -euo pipefail
PT=${PT:-.venv/bin/pricetune}; O=docs/results/amazon-18k-bases/minilm-lr
mkdir -p "$O"
for X in 1:0.0001:0.001 third:0.0000333:0.000333 three:0.0003:0.003; do
  IFS=: read -r N LR HLR <<< "$X"; R=runs/minilm-lr-$N
  [ -f "$R/summary.json" ] || $PT train --config amazon-18k-minilm --train-size 3376 --train-sample first \
    --learning-rate "$LR" --head-learning-rate "$HLR" --eval-steps 211 --save-steps 211 --output-dir "$R" \
    $([ -f "$R/config.yaml" ] && echo --resume)
  [ -f "$R/eval-val/metrics.json" ] || $PT evaluate "$R" --split val --limit 0 --batch-size 32 --output-dir "$R/eval-val"
  cp "$R/eval-val/metrics.json" "$O/$N-val-metrics.json"; cp "$R/summary.json" "$O/$N-summary.json"
  cp "$R/metrics.jsonl" "$O/$N-train-log.jsonl"
done
