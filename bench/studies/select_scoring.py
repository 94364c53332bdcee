"""How long `pricetune select` scores its candidates with seven members (three runs and four classical
members, as on amazon-18k), on 1,000 synthetic val items: no model, the combination fits alone.

    python bench/studies/select_scoring.py
"""

import math
import random
import time

from pricetune.ensemble import Member
from pricetune.ensemble.select import score_candidates

if __name__ == "__main__":
    rng = random.Random(0)
    truths = [math.exp(rng.gauss(3.5, 1.2)) for _ in range(1000)]
    prices = [[t * math.exp(rng.gauss(0, 0.5)) for t in truths] for _ in range(6)] + [[30.0] * 1000]
    members = [Member(s) for s in ("tfidf", "tfidf-knn", "mlp", "median", "run-1", "run-2", "run-3")]
    Member.llm_only = property(lambda self: not self.classical)  # stand-ins: no run folders to read
    start = time.perf_counter()
    candidates = score_candidates(members, {"truths": truths, "prices": prices, "maes": [0.0] * 7}, 10, progress=True)
    print(f"{len(candidates)} candidates of {len(members)} members in {time.perf_counter() - start:.1f} s")
