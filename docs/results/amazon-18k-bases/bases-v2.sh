#!/usr/bin/env bash
# The new bases again, at the learning rates val chose (lr-choice.json), written before any figure of them:
#   bash docs/results/amazon-18k-bases/bases-v2.sh       # from the repository root, with .venv set up
#
# Gemma's full run at its chosen rate (configs/amazon-18k-gemma.yaml as it is now: 844 steps, ~90 min on 2
# bf16 cores, in parts with --resume where a session cannot hold it); MiniLM's run again only where its
# config changed (lr-choice.json, "config_changes"), else its first run. Then `select` on val with the
# members of select-18k-bases.json, each new base's run replaced by its v2 run, and new-bases-add.py:
# the same reading as run.sh (a new base alone at or under $68.83; the pipeline at least $2 under the one
# without the new bases, its paired interval clear of zero). No test look.
set -euo pipefail
PT=${PT:-.venv/bin/pricetune}; PY=${PY:-.venv/bin/python}
D=amazon-18k; O=docs/results/amazon-18k-bases; S=runs/select-18k-bases-v2
train() {  # config, run folder: train, or continue a stopped run
  local resume=(); [ -f "$2/config.yaml" ] && resume=(--resume)
  [ -f "$2/summary.json" ] || $PT train --config "$1" --output-dir "$2" "${resume[@]}"
}
train amazon-18k-gemma runs/amazon-18k-gemma-v2
M=runs/amazon-18k-minilm
if $PY -c "import json,sys; sys.exit(0 if json.load(open('$O/lr-choice.json'))['minilm']['config_changes'] else 1)"; then
  M=runs/amazon-18k-minilm-v2; train amazon-18k-minilm $M
fi
[ -f $S/select.json ] || $PT select --dataset $D --member runs/amazon-18k-regress --member $M \
  --member runs/amazon-18k-gemma-v2 --member mlp --member tfidf --member tfidf-knn --member median \
  --batch-size 32 --out $S
cp $S/select.json $O/select-18k-bases-v2.json
$PY $O/new-bases-add.py $S/select.json > $O/new-bases-add-v2.json
for N in amazon-18k-gemma-v2 $([ $M = runs/amazon-18k-minilm ] || basename $M); do  # the first MiniLM run's files are kept already
  cp runs/$N/summary.json $O/$N-summary.json; cp runs/$N/metrics.jsonl $O/$N-train-log.jsonl
done
