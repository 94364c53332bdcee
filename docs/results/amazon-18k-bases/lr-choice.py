"""The learning-rate rule of lr-rule.sh applied to its val figures, written before them.

    .venv/bin/python docs/results/amazon-18k-bases/lr-choice.py   # after lr-rule.sh: writes lr-choice.json

Each base: its three candidates (the config's learning rates times 1/3, 1, 3), each one epoch (Gemma) or two
(MiniLM) on the first 3,376 train rows, scored on all 1,000 val items. The lowest val MAE wins; the config's
own candidate is `1`. Reported beside it: each candidate's val MAE and 95% interval, final val loss and
training time (2 bf16 cores of an AMD EPYC), and each candidate against the config's own item by item
(paired 95% interval; from the runs' val predictions, runs/<base>-lr-<candidate>/eval-val/predictions.jsonl).
"""
import json
from pathlib import Path

from pricetune.metrics import paired_difference

HERE = Path(__file__).parent
CONFIG_LR = {"gemma": (1e-3, 3e-3), "minilm": (1e-4, 1e-3)}
FACTOR = {"1": 1.0, "third": 1 / 3, "three": 3.0}


def val_prices(base: str, candidate: str) -> tuple[list[float], list[float]] | None:
    path = Path("runs") / f"{base}-lr-{candidate}" / "eval-val" / "predictions.jsonl"
    if not path.exists():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [r["truth"] for r in rows], [r["price"] for r in rows]


out = {}
for base, (lr, head_lr) in CONFIG_LR.items():
    rows = []
    for name, f in FACTOR.items():
        metrics = HERE / f"{base}-lr" / f"{name}-val-metrics.json"
        if not metrics.exists():
            continue
        m = json.loads(metrics.read_text())
        s = json.loads((HERE / f"{base}-lr" / f"{name}-summary.json").read_text())
        rows.append({"candidate": name, "learning_rate": lr * f, "head_learning_rate": head_lr * f,
                     "val_mae": m["mae"], "val_mae_ci95": m["mae_ci95"], "failed": m["failed"],
                     "final_eval_loss": s["final_eval_loss"], "steps": s["steps"],
                     "train_seconds": s["train_seconds"]})
    if len(rows) < len(FACTOR):
        out[base] = {"candidates": rows, "winner": None, "why": "not every candidate has run"}
        continue
    own = val_prices(base, "1")
    for r in rows:
        other = val_prices(base, r["candidate"])
        if own and other and other[0] == own[0] and r["candidate"] != "1":  # the same items, in order
            r["against_config_lr"] = paired_difference(own[0], other[1], own[1])
    winner = min(rows, key=lambda r: r["val_mae"])  # min keeps the first of equals: the config's own
    out[base] = {"candidates": rows, "winner": winner["candidate"],
                 "config_changes": winner["candidate"] != "1"}
(HERE / "lr-choice.json").write_text(json.dumps(out, indent=2) + "\n")
print(json.dumps(out, indent=2))
