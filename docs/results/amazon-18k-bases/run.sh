#!/usr/bin/env bash
# amazon-18k, the new bases on val: written and committed before any val figure of them.
#   bash docs/results/amazon-18k-bases/run.sh        # from the repository root, with .venv set up
#
# Runs: configs/amazon-18k-minilm.yaml (every weight of all-MiniLM-L6-v2, two epochs) and
# configs/amazon-18k-gemma.yaml (Gemma 3 270M, LoRA, amazon-18k-regress's settings), each over all
# 13,494 train rows, trained in parts with --resume where a session cannot hold them. Their settings
# were fixed in those files before any val figure; nothing here is tuned.
#
# `select` on val (its fixed rule) with the members the mlp round had (the SmolLM2 run, mlp, tfidf,
# tfidf-knn, median) plus each new base that has finished: each base alone (select.json, members) and
# the best pipeline with and without each fine-tuned run, item by item and cross-validated
# (select.json, each_run_adds). No test look: amazon-18k's test split has one look left, for the
# next round's pipeline pick.
#
# The reading, fixed now (the targets, val, all 1,000 items): a new base alone at or under
# the SmolLM2 run's $68.83; the pipeline at least $2 under the best pipeline without the new bases,
# with a paired 95% interval that excludes zero.
set -euo pipefail
PT=${PT:-.venv/bin/pricetune}
D=amazon-18k; R=runs/amazon-18k-regress; O=docs/results/amazon-18k-bases
train() {  # config, run folder: train, or continue a stopped run
  local resume=(); [ -f "$2/config.yaml" ] && resume=(--resume)
  [ -f "$2/summary.json" ] || $PT train --config "$1" --output-dir "$2" "${resume[@]}"
}
train amazon-18k-minilm runs/amazon-18k-minilm
members=(--member $R --member runs/amazon-18k-minilm)
S=runs/select-18k-minilm
if [ "${WITH_GEMMA:-0}" = 1 ]; then
  train amazon-18k-gemma runs/amazon-18k-gemma
  members+=(--member runs/amazon-18k-gemma); S=runs/select-18k-bases
fi
[ -f $S/select.json ] || $PT select --dataset $D "${members[@]}" --member mlp --member tfidf --member tfidf-knn \
  --member median --batch-size 32 --out $S
# the result files kept in the repository (the runs themselves are not)
cp $S/select.json $O/$(basename $S).json
for P in pipeline classical llm_only; do cp $S/$P/ensemble.json $O/$(basename $S)-$P-ensemble.json; done
bases=(minilm); [ "${WITH_GEMMA:-0}" = 1 ] && bases+=(gemma)
for N in "${bases[@]}"; do
  cp runs/amazon-18k-$N/summary.json $O/$N-summary.json; cp runs/amazon-18k-$N/config.yaml $O/$N-config.yaml
  cp runs/amazon-18k-$N/metrics.jsonl $O/$N-train-log.jsonl
done
