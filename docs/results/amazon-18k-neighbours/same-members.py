"""The two runs in one pipeline shape with the same classical members: both stacked with the mlp and TF-IDF
neighbours whose val prices this machine's select fit (the mlp's prices move with the CPU that fits it, so
the earlier select's $63.11 used other mlp prices). Not part of the rule (rule.sh), which was decided by (a).
    .venv/bin/python docs/results/amazon-18k-neighbours/same-members.py   # -> same-members.json
"""
import json

from pricetune.data import load_splits
from pricetune.ensemble.weights import cross_validated_mae

old = json.load(open("docs/results/amazon-18k-bases/select-18k-bases-v2.json"))
new = json.load(open("docs/results/amazon-18k-neighbours/select-18k-nbrs3.json"))
prices = {m["spec"]: m["val_prices"] for m in new["members"]}
prices["runs/amazon-18k-regress"] = next(m["val_prices"] for m in old["members"] if m["spec"] == "runs/amazon-18k-regress")
truth = [r["price"] for r in load_splits("amazon-18k", val_size=1000)[0]["val"]]
out = {"mlp_val_mae_here": next(m["val_mae"] for m in new["members"] if m["spec"] == "mlp"),
       "mlp_val_mae_in_select-18k-bases-v2": next(m["val_mae"] for m in old["members"] if m["spec"] == "mlp")}
for run in ("runs/amazon-18k-regress", "runs/amazon-18k-nbrs3"):
    members = [run, "mlp", "tfidf-knn"]
    out[" + ".join(members) + " (stack), cross-validated"] = cross_validated_mae(
        truth, [prices[m] for m in members], "stack", repeats=10)
out["mlp + tfidf-knn (stack), cross-validated"] = cross_validated_mae(
    truth, [prices["mlp"], prices["tfidf-knn"]], "stack", repeats=10)
print(json.dumps(out, indent=2))
