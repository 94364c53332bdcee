"""Score every candidate of amazon-18k's seven-member select (the members' val prices as
select-18k-bases-v2.json keeps them) with the pricetune found on sys.path; time it; write the candidates.
    python score.py OUT.json        (run.sh runs it for the code before and after, one after the other)
"""
import json
import sys
import time
from pathlib import Path

import pricetune
from pricetune.data import load_splits
from pricetune.ensemble import Member
from pricetune.ensemble.select import score_candidates

stored = json.loads((Path(__file__).parents[1] / "amazon-18k-bases/select-18k-bases-v2.json").read_text())
splits, _ = load_splits("amazon-18k", val_size=1000, need=("val",))
val = {"truths": [r["price"] for r in splits["val"]], "prices": [m["val_prices"] for m in stored["members"]],
       "maes": [m["val_mae"] for m in stored["members"]]}
members = [Member(m["spec"]) for m in stored["members"]]
Member.llm_only = property(lambda self: not self.classical)  # the runs are not on this disk: only their prices
start = time.perf_counter()
candidates = score_candidates(members, val, cv_repeats=10, progress=True)
seconds = time.perf_counter() - start
json.dump({"code": str(Path(pricetune.__file__).parent), "seconds": round(seconds, 1), "candidates": candidates},
          open(sys.argv[1], "w"), indent=1)
print(f"{len(candidates)} candidates in {seconds:.1f} s ({pricetune.__file__})")
