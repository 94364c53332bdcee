#!/usr/bin/env bash
# Is a bf16 price the same from one process to the next? The demo run (after `make demo`) prices the
# first 200 test diamonds in N fresh processes, two ways: through the pipeline pick (`Ensemble`: its
# TF-IDF members loaded beside the run, as `evaluate --ensemble` does) and through `load_model` alone
# (as `evaluate RUN` does). Each process's run prices are compared with the first process's, per way.
# The cause, found later: MKL's first-call race on the first batch (docs/results/first-call/run.sh).
#   bash docs/results/demo-bf16/repeat-pricing.sh [N]     # -> docs/results/demo-bf16/repeat-pricing.json
set -euo pipefail
N=${1:-8}
O=docs/results/demo-bf16
rm -rf runs/repeat-pricing && mkdir -p runs/repeat-pricing
for i in $(seq 1 "$N"); do
  for way in ensemble alone; do
    .venv/bin/python - "$way" "runs/repeat-pricing/$way-$i.json" <<'PY'
import json, sys
from pricetune.data import load_splits
splits, _ = load_splits("demo", val_size=10**9, need=("test",))
prompts = [r["prompt"] for r in splits["test"][:200]]
if sys.argv[1] == "ensemble":
    from pricetune.inference.members import Ensemble
    run = Ensemble.load("runs/demo/select/pipeline").predictors()[0]  # the run; the TF-IDF members loaded too
    prices = run.predict(prompts)
else:
    from pricetune.inference import load_model
    prices = [p for _, p in load_model(run="runs/demo").price(prompts, "greedy", 16, 64)]
json.dump(prices, open(sys.argv[2], "w"))
PY
  done
done
.venv/bin/python - "$O/repeat-pricing.json" "$N" <<'PY'
import json, sys
n = int(sys.argv[2])
out = {"machine": open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip("\t :") + ", 2 cores",
       "items": 200, "processes": n}
for way in ("ensemble", "alone"):
    runs = [json.load(open(f"runs/repeat-pricing/{way}-{i}.json")) for i in range(1, n + 1)]
    differ = [sum(a != b for a, b in zip(runs[0], r)) for r in runs]
    rel = [max((abs(a - b) / a for a, b in zip(runs[0], r) if a != b), default=0.0) for r in runs]
    out[way] = {"items_differing_from_the_first_process": differ, "largest_relative_difference": max(rel)}
json.dump(out, open(sys.argv[1], "w"), indent=2)
print(json.dumps(out, indent=2))
PY
