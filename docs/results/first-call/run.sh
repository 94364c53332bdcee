#!/usr/bin/env bash
# MKL's first-call race (pricetune/numerics.py), measured before and after `settle_mkl`, one process at a time:
#  1. kernel: N fresh processes take a rotary embedding's cos (53 positions x 64, two threads' chunks) once,
#     plain and after settle_mkl; counted: first results that differ from a second call, their largest error.
#  2. pricing: M fresh processes load the demo run (after `make demo`) and price the first batch of the 200
#     test diamonds twice, with the code at BEFORE (a git worktree, first on PYTHONPATH; python -P keeps the
#     checkout off the path) and with the checkout; counted: items whose first price differs from the second.
#   bash docs/results/first-call/run.sh BEFORE [N] [M]     # -> docs/results/first-call/first-call.json
set -euo pipefail
BEFORE=$1; N=${2:-100}; M=${3:-16}
OUT=docs/results/first-call; W=runs/first-call; PY=$PWD/.venv/bin/python
rm -rf "$W" && mkdir -p "$W"
git worktree add -f --detach "$W/before" "$BEFORE" > /dev/null
trap 'git worktree remove --force "$W/before"' EXIT
cat > "$W/kernel.py" <<'PY'
import sys, torch
torch.set_num_threads(2)
if sys.argv[1] == "settle":
    from pricetune.numerics import settle_mkl
    settle_mkl()
inv = 1.0 / (100000.0 ** (torch.arange(0, 64, 2, dtype=torch.float) / 64))
angles = (torch.arange(53, dtype=torch.float)[:, None] * inv).repeat(1, 2)
first, again = angles.cos(), angles.cos()
print(int((first != again).sum()), (first.double() - angles.double().cos()).abs().max().item())
PY
cat > "$W/pricing.py" <<'PY'
import json, sys
import pricetune
from pricetune.data import load_splits
from pricetune.inference.generate import encode_prompts, make_prompt
from pricetune.inference.load import load_model
prompts = [r["prompt"] for r in load_splits("demo", val_size=10**9, need=("test",))[0]["test"][:200]]
lm = load_model(run="runs/demo")
encoded = encode_prompts(lm.tokenizer, [make_prompt(p) for p in prompts], lm.max_length)
batch = [prompts[i] for i in sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))[:16]]  # the first batch
first, again = ([p for _, p in lm.price(batch, "greedy", 16, 64)] for _ in range(2))
print(json.dumps({"code": pricetune.__file__, "differ": sum(a != b for a, b in zip(first, again)),
                  "largest": max((abs(a - b) / b for a, b in zip(first, again) if a != b), default=0.0)}))
PY
for way in plain settle; do
  for i in $(seq 1 "$N"); do "$PY" "$W/kernel.py" "$way" >> "$W/kernel-$way.txt"; done
done
for side in before after; do
  for i in $(seq 1 "$M"); do
    if [ "$side" = before ]; then PYTHONPATH="$W/before" "$PY" -P "$W/pricing.py"; else "$PY" "$W/pricing.py"; fi \
      2> /dev/null >> "$W/pricing-$side.jsonl"
  done
done
"$PY" - "$W" "$OUT/first-call.json" "$BEFORE" "$(git rev-parse --short HEAD)" "$N" "$M" <<'PY'
import json, sys
w, out, before, head, n, m = sys.argv[1:]
res = {"machine": open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip("\t :") + ", 2 cores",
       "command": f"bash docs/results/first-call/run.sh {before} {n} {m}", "before": before, "after": head}
for way in ("plain", "settle"):
    rows = [line.split() for line in open(f"{w}/kernel-{way}.txt")]
    res[f"kernel_{way}"] = {"processes": len(rows), "first_cos_differs": sum(int(r[0]) > 0 for r in rows),
                            "largest_error": max(float(r[1]) for r in rows)}
for side in ("before", "after"):
    rows = [json.loads(line) for line in open(f"{w}/pricing-{side}.jsonl")]
    assert all(("/before/" in r["code"]) == (side == "before") for r in rows), "wrong code on the path"
    res[f"pricing_{side}"] = {"processes": len(rows), "first_batch_differs": sum(r["differ"] > 0 for r in rows),
                              "items_differing": [r["differ"] for r in rows if r["differ"]],
                              "largest_relative_difference": max(r["largest"] for r in rows)}
json.dump(res, open(out, "w"), indent=2)
print(json.dumps(res, indent=2))
PY
