#!/usr/bin/env bash
# select's candidate scoring, the code before and after one change, one after the other on one machine:
# every candidate of amazon-18k's seven members (three runs, mlp, tfidf, tfidf-knn, median; their val
# prices as docs/results/amazon-18k-bases/select-18k-bases-v2.json keeps them), 10 cuts into 5 folds.
#   bash docs/results/select-speed/run.sh [BEFORE_REV]      # -> docs/results/select-speed/speed.json
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
BEFORE=${1:-4f27806}   # the last commit that fit each fold's weights on its own
O=docs/results/select-speed
TREE=$(mktemp -d)
git worktree add -q --detach "$TREE" "$BEFORE"
trap 'git worktree remove --force "$TREE"' EXIT
PYTHONPATH="$TREE" .venv/bin/python $O/score.py runs/select-speed-before.json
.venv/bin/python $O/score.py runs/select-speed-after.json
.venv/bin/python - "$O/speed.json" "$BEFORE" "$(git rev-parse --short HEAD)" <<'PY'
import json, sys
a, b = (json.load(open(f"runs/select-speed-{w}.json")) for w in ("before", "after"))
key = lambda c: (tuple(c["members"]), c["method"])
after = {key(c): c for c in b["candidates"]}
diff = {"weights_differ": 0, "max_val_mae_cv_diff": 0.0, "max_val_mae_diff": 0.0}
for c in a["candidates"]:
    d = after[key(c)]
    diff["weights_differ"] += c.get("weights") != d.get("weights")
    for f in ("val_mae_cv", "val_mae"):
        if f in c:
            diff[f"max_{f}_diff"] = max(diff[f"max_{f}_diff"], abs(c[f] - d[f]))
out = {"machine": open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip("\t :") + ", 2 cores",
       "before": {"commit": sys.argv[2], "seconds": a["seconds"]}, "after": {"commit": sys.argv[3], "seconds": b["seconds"]},
       "before_over_after": round(a["seconds"] / b["seconds"], 2), "candidates": len(a["candidates"]), **diff}
json.dump(out, open(sys.argv[1], "w"), indent=2)
print(json.dumps(out, indent=2))
PY
