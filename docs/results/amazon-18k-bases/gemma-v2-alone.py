"""Gemma's run at the learning rate val chose, alone on val, item by item against the other runs alone
(paired 95% intervals; from the val prices the two select records keep; no model is loaded).

    .venv/bin/python docs/results/amazon-18k-bases/gemma-v2-alone.py > docs/results/amazon-18k-bases/gemma-v2-alone.json
"""

import json
from pathlib import Path

from pricetune.data import load_splits
from pricetune.metrics import paired_difference

HERE = Path(__file__).parent
v2 = json.loads((HERE / "select-18k-bases-v2.json").read_text())
v1 = json.loads((HERE / "select-18k-bases.json").read_text())


def val_prices(record: dict, spec: str) -> list[float]:
    return next(m["val_prices"] for m in record["members"] if m["spec"] == spec)


splits, _ = load_splits(v2["dataset"], val_size=10**9, need=("val",))
truths = [r["price"] for r in splits["val"]]
gemma = val_prices(v2, "runs/amazon-18k-gemma-v2")
others = {"gemma at SmolLM2's rate": val_prices(v1, "runs/amazon-18k-gemma"),
          "smollm2": val_prices(v2, "runs/amazon-18k-regress"), "minilm": val_prices(v2, "runs/amazon-18k-minilm")}
out = {"val_mae": sum(abs(p - t) for p, t in zip(gemma, truths)) / len(truths),
       "against": {name: paired_difference(truths, gemma, prices) for name, prices in others.items()}}
print(json.dumps(out, indent=2))
