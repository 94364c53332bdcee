"""Fitting an ensemble: each member prices the val split, the weights are the simplex grid point with
the lowest val MAE, and the folder records what was combined.

    pricetune ensemble --dataset ../shared/data/amazon-items --member runs/amazon-regress --member tfidf \
        --out runs/ensemble
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from ..errors import PricetuneError
from .members import FITTED, Member, Predictor, new_folder, refuse_filled
from .weights import fit_weights


def fit_ensemble(dataset: str, members: list[Member], out: str | Path, log=print) -> dict:
    """Price the val split with each member, fit the weights there, and save the ensemble folder."""
    from ..data import load_splits

    out = Path(out)
    refuse_filled(out)
    if len(members) < 2:
        raise PricetuneError("an ensemble needs at least two --member")
    runs = [m.spec for m in members if not m.classical]
    if runs:
        from ..config import refuse_val_of_refit
        from ..inference import run_paths

        for spec in runs:
            refuse_val_of_refit(run_paths(spec)[0], "fitting ensemble weights")
    splits, _ = load_splits(dataset, val_size=10**9, need=("train", "val"))
    val = splits["val"]
    prompts, truths = [r["prompt"] for r in val], [r["price"] for r in val]
    member_prices, member_mae, constants = [], [], {}
    with new_folder(out):
        for m in members:
            log(f"pricing {len(val)} val items with {m.spec}")
            predictor = Predictor(m, splits=splits)
            # a progress bar where a model reads each item: the runs, and tfidf-embed's frozen base
            prices = predictor.predict(prompts, progress=not m.classical or m.spec == "tfidf-embed")
            if m.spec in FITTED:
                predictor.fitted.save(out / f"{m.spec}.joblib")
            if m.spec in ("median", "mean"):
                constants[m.spec] = predictor.value
            member_prices.append(prices)
            member_mae.append(statistics.fmean(abs((p or 0.0) - t) for p, t in zip(prices, truths)))
            del predictor
        weights, val_mae = fit_weights(truths, member_prices)
        record = {
            "dataset": dataset,
            "fit_on": f"val split, {len(val)} items",
            "combination": "weighted mean of log(1 + price), weights on a 1/20 simplex grid, lowest val MAE",
            "members": [m.describe() for m in members],
            "weights": weights,
            "member_val_mae": member_mae,
            "val_mae": val_mae,
            "constants": constants,
        }
        (out / "ensemble.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record
