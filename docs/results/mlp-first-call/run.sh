#!/usr/bin/env bash
# Was the mlp's val figure moving with the machine ($66.97 on the AMD EPYC, $67.12 on the Intel Xeon,
# same code and seed) MKL's first-call race (pricetune/numerics.py), which settle_mkl removed? The mlp fit
# on amazon-18k and scored on val, in fresh processes one at a time, alternating the code at BEFORE (a git
# worktree, first on PYTHONPATH; python -P keeps the checkout off the path) and the checkout.
#   bash docs/results/mlp-first-call/run.sh BEFORE [K]    # K processes a side -> docs/results/mlp-first-call/mlp-val.jsonl
set -euo pipefail
BEFORE=$1; K=${2:-3}
OUT=docs/results/mlp-first-call; W=runs/mlp-first-call; PY=$PWD/.venv/bin/python
rm -rf "$W" && mkdir -p "$W"
git worktree add -f --detach "$W/before" "$BEFORE" > /dev/null
trap 'git worktree remove --force "$W/before"' EXIT
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)
for i in $(seq 1 "$K"); do
  for side in after before; do
    d=$W/$side-$i; t0=$(date +%s)
    if [ $side = before ]; then pp=$W/before; else pp=$PWD; fi
    PYTHONPATH=$pp "$PY" -P -m pricetune evaluate --baseline mlp --dataset amazon-18k --split val --limit 0 \
      --output-dir "$d" > "$d.log" 2>&1
    file=$(PYTHONPATH=$pp "$PY" -P -c "import pricetune; print(pricetune.__file__)")
    "$PY" - "$d/metrics.json" "$side" "$(( $(date +%s) - t0 ))" "$CPU" "$BEFORE" "$(git rev-parse --short HEAD)" "$file" \
      >> $OUT/mlp-val.jsonl <<'PY'
import json, sys
path, side, seconds, cpu, before, after, file = sys.argv[1:]
assert ("/before/" in file) == (side == "before"), f"wrong code on the path: {file}"
m = json.load(open(path))
print(json.dumps({"side": side, "code": before if side == "before" else after, "val_mae": m["mae"],
                  "seconds": int(seconds), "cpu": cpu + ", 2 cores"}))
PY
  done
done
