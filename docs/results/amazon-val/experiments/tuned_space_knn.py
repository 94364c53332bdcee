"""Val-only experiment: nearest train items in the fine-tuned run's own space (the mean-pooled final
states its head reads) as a fourth member beside the run, TF-IDF and TF-IDF neighbours, stacked.

    python docs/results/amazon-val/experiments/tuned_space_knn.py runs/amazon-regress-nbrs3 \
        docs/results/amazon-val/tuned-space-knn.json        # 2,016 items read: 10 min on 2 cores

Train items are read with their prompts as training read them (neighbours leave-one-out); the
states come from the run that trained on them, so they are this run's view, not a held-out one.
It reads states through `pricetune.baselines.embed`, which left the package with the tfidf-embed
baseline: run it at commit 16126d1 or earlier (`git checkout 16126d1`).
"""

import json
import sys

import numpy as np
from sklearn.neighbors import KNeighborsRegressor

from pricetune.baselines.knn import TfidfKnn
from pricetune.baselines.tfidf import TfidfRidge
from pricetune.data.sources import load_splits
from pricetune.ensemble.weights import cross_validated_mae, fit_combination
from pricetune.inference import load_model
from pricetune.baselines.embed import layer_readouts

KS = (3, 5, 10, 20, 40)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main(run: str, out: str) -> None:
    splits, _ = load_splits("../shared/data/amazon-items", val_size=10**9, need=("train", "val"))
    train, val = splits["train"], splits["val"]
    loaded = load_model(run=run)
    index, last = loaded.neighbours, loaded.model.config.num_hidden_layers

    def states(prompts: list[str]) -> np.ndarray:
        return unit(layer_readouts(loaded.model, loaded.tokenizer, prompts, loaded.max_length, [last])[:, 0])

    train_x = states(index.add_to_prompts([r["prompt"] for r in train], exclude_self=True))
    val_x = states(index.add_to_prompts([r["prompt"] for r in val]))
    truth = [float(r["price"]) for r in val]
    run_prices = loaded.price([r["prompt"] for r in val], batch_size=32)
    del loaded

    # the same regressor as the TF-IDF neighbours baseline: distance-weighted mean of log prices, cosine
    train_log = np.log1p([r["price"] for r in train])
    knn = {k: list(np.expm1(KNeighborsRegressor(n_neighbors=k, metric="cosine", algorithm="brute",
                                                weights="distance").fit(train_x, train_log).predict(val_x)))
           for k in KS}
    members = [[p for _, p in run_prices], TfidfRidge.fit(train, val).predict([r["prompt"] for r in val]),
               TfidfKnn.fit(train, val).predict([r["prompt"] for r in val])]
    stacks = {}
    for name, extra in [("run + TF-IDF + TF-IDF neighbours", [])] + [(f"the three + tuned-space k {k}", [knn[k]])
                                                                       for k in (5, 10, 20)]:
        weights, intercept, in_sample = fit_combination(truth, members + extra, "stack")
        stacks[name] = {"weights": [round(w, 3) for w in weights], "intercept": round(intercept, 3),
                        "val_mae": round(in_sample, 2),
                        "val_mae_cv": round(cross_validated_mae(truth, members + extra, "stack"), 2)}
    result = {"run": run, "split": "val", "n": len(val),
              "knn_val_mae": {k: round(float(np.abs(np.array(v) - truth).mean()), 2) for k, v in knn.items()},
              "stacks": stacks}
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(*sys.argv[1:3])
