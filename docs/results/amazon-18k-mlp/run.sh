#!/usr/bin/env bash
# amazon-18k, the sparse MLP round: written and committed before any val or test figure of it.
#   bash docs/results/amazon-18k-mlp/run.sh        # from the repository root, with .venv set up
#
# Members, fixed before any test look: the full amazon-18k run (the shipped config, retrained: the last
# round's runs were not kept), mlp, tfidf, tfidf-knn, median. `select` chooses three picks on val by
# its fixed rule; then the test split is scored once per row below: the pipeline, classical and
# llm_only picks and mlp alone (four new looks), and TF-IDF + ridge again, only so that every figure
# can be paired with it item by item (its test figure, $71.30, is already known; a fifth look, nine of
# the split's ten in all).
#
# The reading, fixed now: the targets are met when the pipeline's test MAE is at or under $57.00 and
# the pipeline minus the classical pick is below zero with a paired 95% interval that excludes zero.
# Otherwise RESULTS says by how much each was missed, where (price bands, categories) and what the
# next dollars need. No member, pick or rule changes after a test figure.
set -euo pipefail
PT=${PT:-.venv/bin/pricetune}
D=amazon-18k; L=docs/results/leaderboard.json
R=runs/amazon-18k-regress; S=runs/select-18k-mlp; T=runs/test-18k-mlp
if [ ! -f "$R/summary.json" ]; then
  resume=(); [ -f "$R/config.yaml" ] && resume=(--resume)
  $PT train --config amazon-18k-regress --val-size 0 --save-steps 40 --output-dir $R "${resume[@]}"
fi
[ -f $S/select.json ] || $PT select --dataset $D --member $R --member mlp --member tfidf --member tfidf-knn \
  --member median --batch-size 32 --out $S
for P in pipeline classical llm_only; do
  [ -f $T/$P/metrics.json ] || $PT evaluate --ensemble $S/$P --limit 0 --batch-size 32 --interval 0.8 \
    --leaderboard $L --name "amazon-18k, mlp round: the $P pick" --output-dir $T/$P
done
[ -f $T/mlp/metrics.json ] || $PT evaluate --baseline mlp --dataset $D --limit 0 --leaderboard $L \
  --name "amazon-18k, mlp round: mlp alone" --output-dir $T/mlp
[ -f $T/tfidf/metrics.json ] || $PT evaluate --baseline tfidf --dataset $D --limit 0 --leaderboard $L \
  --name "amazon-18k, mlp round: TF-IDF + ridge (re-scored to pair with)" --output-dir $T/tfidf
$PT evaluate --compare $T/classical $T/pipeline $T/llm_only --output-dir $T/vs-classical
$PT evaluate --compare $T/tfidf $T/pipeline $T/llm_only $T/classical $T/mlp --output-dir $T/vs-tfidf
# the result files kept in the repository (the runs themselves are not)
O=docs/results/amazon-18k-mlp
cp $S/select.json $O/select.json
for P in pipeline classical llm_only; do cp $S/$P/ensemble.json $O/$P-ensemble.json; done
for E in pipeline classical llm_only mlp tfidf; do
  cp $T/$E/metrics.json $O/test-$E-metrics.json; cp $T/$E/breakdown.json $O/test-$E-breakdown.json
  cp $T/$E/settings.json $O/test-$E-settings.json
done
cp $T/vs-classical/paired.json $O/paired-test-vs-classical.json; cp $T/vs-tfidf/paired.json $O/paired-test-vs-tfidf.json
cp $R/summary.json $O/regress-13494-summary.json; cp $R/config.yaml $O/regress-13494-config.yaml
cp $R/metrics.jsonl $O/regress-13494-train-log.jsonl
