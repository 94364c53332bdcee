"""MiniLM's run without dropout (minilm-v3.sh), alone on val, item by item against its run with dropout and
the other members alone (paired 95% intervals; from the val prices the select records keep; no model is loaded).

    .venv/bin/python docs/results/amazon-18k-bases/minilm-v3-alone.py > docs/results/amazon-18k-bases/minilm-v3-alone.json
"""

import json
from pathlib import Path

from pricetune.data import load_splits
from pricetune.metrics import paired_difference

HERE = Path(__file__).parent
v3 = json.loads((HERE / "select-18k-bases-v3.json").read_text())
v2 = json.loads((HERE / "select-18k-bases-v2.json").read_text())


def val_prices(spec: str) -> list[float]:
    return next(m["val_prices"] for m in v2["members"] if m["spec"] == spec)


splits, _ = load_splits(v2["dataset"], val_size=10**9, need=("val",))
truths = [r["price"] for r in splits["val"]]
minilm = v3["minilm_val_prices"]
others = {"minilm with dropout": val_prices("runs/amazon-18k-minilm"), "smollm2": val_prices("runs/amazon-18k-regress"),
          "gemma": val_prices("runs/amazon-18k-gemma-v2"), "mlp": val_prices("mlp")}
out = {"val_mae": sum(abs(p - t) for p, t in zip(minilm, truths)) / len(truths),
       "against": {name: paired_difference(truths, minilm, prices) for name, prices in others.items()}}
print(json.dumps(out, indent=2))
