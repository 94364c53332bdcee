"""select's candidates scored again with MiniLM's val prices replaced by a new run's (minilm-v3.sh).

    .venv/bin/python docs/results/amazon-18k-bases/minilm-v3-select.py SELECT_JSON PREDICTIONS_JSONL OUT_JSON

The other members' val prices are select.json's own; the candidates, picks, each_run_adds and the new
bases' reading (the best candidate with MiniLM or Gemma or both against the best with neither) come from
select.py's functions, as `pricetune select` computes them.
"""

import json
import re
import sys
from types import SimpleNamespace

from pricetune.ensemble.select import PICKS, each_run_adds, label, llm_adds, paired, pick, score_candidates
from pricetune.ensemble.weights import mae_of

CUTS = 10  # select-18k-bases-v2.json's rule: 10 cuts
old = json.load(open(sys.argv[1]))
rows = [json.loads(line) for line in open(sys.argv[2])]
minilm = next(i for i, m in enumerate(old["members"]) if re.search(r"amazon-18k-minilm", m["spec"]))
truths = [r["truth"] for r in rows]
members = [SimpleNamespace(spec=m["spec"], classical=m["kind"] != "run", llm_only=m["kind"] == "run")
           for m in old["members"]]
members[minilm].spec = "runs/amazon-18k-minilm-v3"
prices = [m["val_prices"] for m in old["members"]]
prices[minilm] = [r["price"] for r in rows]
assert len(truths) == old["val_items"] == len(prices[0])
val = {"truths": truths, "prices": prices, "maes": [mae_of(truths, p) for p in prices]}
assert abs(val["maes"][0] - old["members"][0]["val_mae"]) < 1e-6, "the val items are not select.json's, in order"
candidates = score_candidates(members, val, CUTS, progress=True)
picks = {kind: candidates.index(c) for kind, among in PICKS.items() if (c := pick(candidates, among)) is not None}
new = {i for i, m in enumerate(members) if re.search(r"amazon-18k-(minilm|gemma)", m.spec)}
with_new = pick(candidates, lambda c: bool(new & set(c["members"])))
without = pick(candidates, lambda c: not new & set(c["members"]))
record = {
    "dataset": old["dataset"], "rule": old["rule"], "val_items": len(truths),
    "members": [{"spec": m.spec, "val_mae": mae} for m, mae in zip(members, val["maes"])],
    "picks": {kind: {"candidate": label(candidates[i]), "val_mae_cv": candidates[i]["val_mae_cv"]}
              for kind, i in picks.items()},
    "llm_adds": llm_adds(candidates, picks, val, CUTS),
    "each_run_adds": each_run_adds(candidates, picks, members, val, CUTS),
    "new_bases_add": {"with": label(with_new), "without": label(without), "with_val_mae_cv": with_new["val_mae_cv"],
                      "without_val_mae_cv": without["val_mae_cv"], **paired(with_new, without, val, CUTS)},
    "minilm_val_prices": prices[minilm], "candidates": candidates,
}
json.dump(record, open(sys.argv[3], "w"), indent=2)
print(json.dumps({k: record[k] for k in ("members", "picks", "each_run_adds", "new_bases_add")}, indent=2))
