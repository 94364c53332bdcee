"""What the two new bases add together, on val: the best candidate (by select's rule) with MiniLM or
Gemma or both, against the best candidate with neither, item by item, in sample and cross-validated
(select's own `pick` and `paired`, on the val prices select.json keeps). Written before the select it
reads had run. The issue's target: the first at least $2 under the second, the interval clear of zero.

    .venv/bin/python docs/results/amazon-18k-bases/new-bases-add.py runs/select-18k-bases/select.json \
        > docs/results/amazon-18k-bases/new-bases-add.json
"""

import json
import re
import sys

from pricetune.data import load_splits
from pricetune.ensemble.select import label, paired, pick

record = json.load(open(sys.argv[1]))
names = [m["spec"] for m in record["members"]]
new = {i for i, n in enumerate(names) if re.search(r"amazon-18k-(minilm|gemma)(-v2)?/?$", n)}
splits, _ = load_splits(record["dataset"], val_size=10**9, need=("val",))
val = {"truths": [r["price"] for r in splits["val"]], "prices": [m["val_prices"] for m in record["members"]]}
cuts = int(re.search(r"(\d+) cuts", record["rule"]).group(1))
cands = record["candidates"]
with_new = pick(cands, lambda c: bool(new & set(c["members"])))
without = pick(cands, lambda c: not new & set(c["members"]))
out = {"new_bases": sorted(names[i] for i in new), "with": label(with_new), "without": label(without),
       "with_val_mae_cv": with_new["val_mae_cv"], "without_val_mae_cv": without["val_mae_cv"],
       **paired(with_new, without, val, cuts)}
print(json.dumps(out, indent=2))
