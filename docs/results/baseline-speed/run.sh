#!/usr/bin/env bash
# The TF-IDF baselines' fit (settings chosen on val) and val pass, the code before and after one change,
# one after the other on one machine: `pricetune evaluate --baseline B --split val --limit 0` for tfidf
# and tfidf-knn on a dataset (val only: no test look), timed, and their prices compared.
#   bash docs/results/baseline-speed/run.sh [BEFORE_REV] [DATASET]   # -> docs/results/baseline-speed/DATASET.json
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
BEFORE=${1:-ce28f06}   # the last commit that fit the TF-IDF features once per setting
D=${2:-amazon-18k}
O=docs/results/baseline-speed
TREE=$(mktemp -d)
git worktree add -q --detach "$TREE" "$BEFORE"
trap 'git worktree remove --force "$TREE"' EXIT
rm -rf runs/baseline-speed && mkdir -p runs/baseline-speed
for b in tfidf tfidf-knn; do
  for side in before after; do
    path=$([ $side = before ] && echo "$TREE" || echo "$PWD")
    PYTHONPATH="$path" .venv/bin/python -P -c "import pricetune, sys; sys.stderr.write(pricetune.__file__ + chr(10))" 2> runs/baseline-speed/$b-$side.code
    start=$(date +%s.%N)
    PYTHONPATH="$path" .venv/bin/python -P -m pricetune evaluate --baseline $b --dataset $D --split val --limit 0 \
      --output-dir runs/baseline-speed/$b-$side > runs/baseline-speed/$b-$side.log 2>&1
    echo "{\"baseline\": \"$b\", \"side\": \"$side\", \"seconds\": $(echo "$(date +%s.%N) - $start" | bc)}" >> runs/baseline-speed/times.jsonl
  done
done
.venv/bin/python - "$O/$D.json" "$BEFORE" "$(git rev-parse --short HEAD)" "$D" <<'PY'
import json, sys
times = {(r["baseline"], r["side"]): r["seconds"] for r in map(json.loads, open("runs/baseline-speed/times.jsonl"))}
out = {"machine": open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip("\t :") + ", 2 cores",
       "dataset": sys.argv[4], "before": sys.argv[2], "after": sys.argv[3],
       "what": "pricetune evaluate --baseline B --split val --limit 0: the fit, its settings chosen on val, and the val pass (process start included)"}
for b in ("tfidf", "tfidf-knn"):
    preds = [open(f"runs/baseline-speed/{b}-{side}/predictions.jsonl").read() for side in ("before", "after")]
    mae = [json.load(open(f"runs/baseline-speed/{b}-{side}/metrics.json"))["mae"] for side in ("before", "after")]
    out[b] = {"before_s": round(times[b, "before"], 1), "after_s": round(times[b, "after"], 1),
              "before_over_after": round(times[b, "before"] / times[b, "after"], 2),
              "val_mae": mae, "same_predictions": preds[0] == preds[1],
              "code": [open(f"runs/baseline-speed/{b}-{side}.code").read().strip() for side in ("before", "after")]}
json.dump(out, open(sys.argv[1], "w"), indent=2)
print(json.dumps(out, indent=2))
PY
