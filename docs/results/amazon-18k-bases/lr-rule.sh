#!/usr/bin/env bash
# A new base's learning rate chosen on amazon-18k's val by a rule written (and committed, as gemma-lr.sh and
# minilm-lr.sh, joined here since) before any figure of it ran:
#   bash docs/results/amazon-18k-bases/lr-rule.sh gemma     # from the repository root, with .venv set up
#   bash docs/results/amazon-18k-bases/lr-rule.sh minilm
#   .venv/bin/python docs/results/amazon-18k-bases/lr-choice.py   # the rule applied: lr-choice.json
#
# Why: configs/amazon-18k-gemma.yaml took amazon-18k-regress's settings (chosen for SmolLM2) unchanged, and
# Gemma's full run learned slowly (val loss 1.10 at a quarter epoch, 0.31 at the end, where MiniLM ends at
# 0.19; gradient norms of 29-37 in its first 200 steps); configs/amazon-18k-minilm.yaml took the usual full
# fine-tune of a BERT (1e-4, head 1e-3). Neither rate had a val figure to choose it.
#
# The rule: three candidates, the config's learning rates times 1/3, 1 and 3, both scaled alike; each trained
# as the config says (Gemma one epoch, MiniLM two) on the first 3,376 train rows (a quarter of the split),
# everything else the config's; each scored on all 1,000 val items (MAE). The lowest val MAE wins; the config
# changes only if the winner is not the config's own, and then its full run is the next step (bases-v2.sh).
# No test look.
set -euo pipefail
PT=${PT:-.venv/bin/pricetune}
case "${1:-}" in
  gemma) C=amazon-18k-gemma; RATES="1:0.001:0.003 third:0.000333:0.001 three:0.003:0.009" ;;
  minilm) C=amazon-18k-minilm; RATES="1:0.0001:0.001 third:0.0000333:0.000333 three:0.0003:0.003" ;;
  *) echo "usage: $0 gemma|minilm" >&2; exit 2 ;;
esac
O=docs/results/amazon-18k-bases/$1-lr; mkdir -p "$O"
for X in $RATES; do
  IFS=: read -r N LR HLR <<< "$X"; R=runs/$1-lr-$N
  [ -f "$R/summary.json" ] || $PT train --config $C --train-size 3376 --train-sample first \
    --learning-rate "$LR" --head-learning-rate "$HLR" --eval-steps 211 --save-steps 211 --output-dir "$R" \
    $([ -f "$R/config.yaml" ] && echo --resume)
  [ -f "$R/eval-val/metrics.json" ] || $PT evaluate "$R" --split val --limit 0 --batch-size 32 --output-dir "$R/eval-val"
  cp "$R/eval-val/metrics.json" "$O/$N-val-metrics.json"; cp "$R/summary.json" "$O/$N-summary.json"
  cp "$R/metrics.jsonl" "$O/$N-train-log.jsonl"
done
