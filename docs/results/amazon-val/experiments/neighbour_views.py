"""Val-only experiment: does a run trained with neighbours' prices (`--neighbours 3`) price better when
each item is priced with several neighbour lines and the log prices averaged (test-time augmentation)?
Each variant is a choice and order of the item's 5 nearest index items by TF-IDF cosine, as positions
in that ranking: (0, 1, 2) is what the run is trained and scored with.

    python docs/results/amazon-val/experiments/neighbour_views.py runs/amazon-regress-nbrs3 \
        docs/results/amazon-val/neighbour-views.json        # 9 variants x 255 items: 12 min on 2 cores
"""

import json
import sys

import numpy as np

from pricetune.baselines.common import item_text
from pricetune.baselines.neighbours import insert_line, neighbour_line
from pricetune.data.rows import make_prompt
from pricetune.data.sources import load_splits
from pricetune.inference import load_model
from pricetune.regress import regress_prices

VARIANTS = [(0, 1, 2), (2, 1, 0), (0, 1, 3), (1, 0, 2), (0, 2, 3), (1, 2, 3), (1, 2, 0), (2, 0, 1), (0, 2, 1)]
SCHEMES = {  # fixed before scoring: the same three prices in every order; three of the top four
    "permutations of the top 3": [v for v in VARIANTS if sorted(v) == [0, 1, 2]],
    "subsets of the top 4": [(0, 1, 2), (0, 1, 3), (0, 2, 3), (1, 2, 3)],
}


def main(run: str, out: str) -> None:
    splits, _ = load_splits("../shared/data/amazon-items", val_size=10**9, need=("train", "val"))
    rows = splits["val"]
    truth = np.array([r["price"] for r in rows])
    loaded = load_model(run=run)
    index = loaded.neighbours
    index.k = 5
    prompts = [make_prompt(r["prompt"]) for r in rows]
    found = index.neighbours([item_text(p) for p in prompts])
    logs = {}
    for v in VARIANTS:
        lines = [neighbour_line([index.prices[row[j]] for j in v]) for row in found]
        priced = regress_prices(loaded.model, loaded.tokenizer, [insert_line(p, line) for p, line in zip(prompts, lines)],
                                loaded.scale, loaded.max_length, 32)
        logs[v] = np.log1p([p for _, p in priced])

    def mae(log_prices) -> float:
        return round(float(np.abs(np.expm1(log_prices) - truth).mean()), 2)

    result = {
        "run": run, "split": "val", "n": len(rows),
        "variant_mae": {",".join(map(str, v)): mae(logs[v]) for v in VARIANTS},
        "scheme_mae": {name: mae(np.mean([logs[v] for v in vs], 0)) for name, vs in SCHEMES.items()},
    }
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(*sys.argv[1:3])
