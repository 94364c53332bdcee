#!/usr/bin/env bash
# MiniLM's full run with the config dropout-rule.sh settled on, then the bases' val reading again:
#   bash docs/results/amazon-18k-bases/minilm-v3.sh     # from the repository root, with .venv set up
#
# Runs only where dropout-rule.sh's `off` won (the config then says base_dropout 0, adamw_torch_fused). The
# run: configs/amazon-18k-minilm.yaml over all 13,494 rows (two epochs), its val prices from `evaluate`. The
# reading: select's candidates scored again (select.py's own functions, same rule, 10 cuts) on the val prices
# select-18k-bases-v2.json keeps for the other six members, with MiniLM's replaced by this run's (the other
# two runs are not on this machine to price val again; select prices each member once, so the figures are
# what `pricetune select` with this run would give); then the reading of bases-v2.sh: each base alone, and
# the best candidate with the new bases against the best without them. No test look.
set -euo pipefail
PT=${PT:-.venv/bin/pricetune}; PY=${PY:-.venv/bin/python}
O=docs/results/amazon-18k-bases; R=runs/amazon-18k-minilm-v3
resume=(); [ -f "$R/config.yaml" ] && resume=(--resume)
[ -f "$R/summary.json" ] || $PT train --config amazon-18k-minilm --output-dir $R "${resume[@]}"
[ -f "$R/eval-val/metrics.json" ] || $PT evaluate $R --split val --limit 0 --batch-size 32 --output-dir $R/eval-val
cp $R/summary.json $O/amazon-18k-minilm-v3-summary.json; cp $R/metrics.jsonl $O/amazon-18k-minilm-v3-train-log.jsonl
cp $R/eval-val/metrics.json $O/amazon-18k-minilm-v3-val-metrics.json
$PY $O/minilm-v3-select.py $O/select-18k-bases-v2.json $R/eval-val/predictions.jsonl $O/select-18k-bases-v3.json
