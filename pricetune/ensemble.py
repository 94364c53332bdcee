"""Combining price models: weights fit on the validation split only, saved as a small folder.

    pricetune ensemble --dataset ../shared/data/amazon-items --member runs/amazon-regress --member tfidf \
        --out runs/ensemble
    pricetune evaluate --ensemble runs/ensemble --limit 0          # the test split, each row run once

    from pricetune.inference import Pricer
    Pricer.from_ensemble("runs/ensemble").price("Title: ...")

A member is a run directory (a generate run prices with `--decode`, a regress run with its head),
`tfidf`, `tfidf-embed` (reading `--base-model`), `median` or `mean`. The combination is a weighted
mean of log(1 + price), weights on the simplex (non-negative, summing to 1) on a grid of step 1/20,
the grid point with the lowest mean absolute error on val wins; ties go to the earlier grid point.
`ensemble.json` records the members, their val MAE, the weights and the dataset; a fitted baseline
member is saved beside it (`tfidf.joblib`, `tfidf-embed.joblib`) so the ensemble prices without the
training data.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from .errors import PricetuneError

GRID = 20
FITTED = ("tfidf", "tfidf-embed")  # classical members fit on the train split, saved as SPEC.joblib
CLASSICAL = (*FITTED, "median", "mean")


def simplex_grid(k: int, steps: int = GRID) -> list[tuple[float, ...]]:
    """Every weight vector of k non-negative multiples of 1/steps that sum to 1, in lexicographic order."""

    def counts(n: int, left: int):
        if n == 1:
            yield (left,)
            return
        for c in range(left + 1):
            for rest in counts(n - 1, left - c):
                yield (c, *rest)

    return [tuple(c / steps for c in cut) for cut in counts(k, steps)]


def combine(weights: list[float], member_prices: list[list[float | None]]) -> list[float | None]:
    """Weighted mean in log(1 + price) for each item; a member without a price for an item gives
    its weight to the others."""
    out = []
    for prices in zip(*member_prices):
        pairs = [(w, math.log1p(max(p, 0.0))) for w, p in zip(weights, prices) if p is not None and w > 0]
        total = sum(w for w, _ in pairs)
        out.append(math.expm1(sum(w * x for w, x in pairs) / total) if total > 0 else None)
    return out


def fit_weights(truths: list[float], member_prices: list[list[float | None]],
                chunk: int = 4096) -> tuple[list[float], float]:
    """The simplex grid point with the lowest MAE against `truths` (the val split), and that MAE:
    `combine` for every grid point at once (a member without a price for an item gives its weight
    to the others; no price at all counts as $0). Seven members make 230,230 points."""
    import numpy as np

    grid = np.array(simplex_grid(len(member_prices)))
    priced = np.array([[p is not None for p in prices] for prices in member_prices], dtype=float)
    logs = np.array([[math.log1p(max(p, 0.0)) if p is not None else 0.0 for p in prices]
                     for prices in member_prices])
    truth = np.asarray(truths, dtype=float)
    maes = []
    for at in range(0, len(grid), chunk):
        w = grid[at:at + chunk]
        total = w @ priced
        with np.errstate(invalid="ignore", divide="ignore"):
            guess = np.where(total > 0, np.expm1((w @ (logs * priced)) / total), 0.0)
        maes.append(np.abs(guess - truth).mean(1))
    maes = np.concatenate(maes)
    best = int(np.flatnonzero(maes <= maes.min() + 1e-12)[0])  # ties: the earlier grid point
    return [float(x) for x in grid[best]], float(maes[best])


# ------------------------------------------------------------------------------------------------
# Members


@dataclass
class Member:
    """One model of an ensemble: `spec` is a run directory or tfidf / tfidf-embed / median / mean."""

    spec: str
    decode: str = "greedy"
    samples: int = 64
    batch_size: int = 16
    base_model: str = "smollm2-135m"  # the frozen base a tfidf-embed member reads

    @property
    def classical(self) -> bool:
        return self.spec in CLASSICAL

    def describe(self) -> dict:
        d = {"spec": self.spec, "kind": self.spec if self.classical else "run"}
        if not self.classical:
            d.update(decode=self.decode, samples=self.samples)
        if self.spec == "tfidf-embed":
            d["base_model"] = self.base_model
        return d


class Predictor:
    """A member made ready to price prompts: a fitted baseline, or a loaded run."""

    def __init__(self, member: Member, folder: Path | None = None, splits: dict | None = None,
                 constant_value: float | None = None):
        """`constant_value`: a saved ensemble's mean/median member, which needs no dataset."""
        self.member = member
        if member.spec in ("median", "mean") and constant_value is not None:
            self.value = constant_value
        elif member.spec in FITTED:
            from .baselines import TfidfEmbedRidge, TfidfRidge

            kind = TfidfRidge if member.spec == "tfidf" else TfidfEmbedRidge
            saved = folder / f"{member.spec}.joblib" if folder is not None else None
            if saved is not None and saved.is_file():
                self.fitted = kind.load(saved)
                if kind is TfidfEmbedRidge:
                    self.fitted.reader()  # load the base now, not on the first request a server gets
            elif splits is None:
                raise PricetuneError(f"the {member.spec} member needs the dataset to fit on")
            elif kind is TfidfRidge:
                self.fitted = TfidfRidge.fit(splits["train"], splits.get("val", []))
            else:
                self.fitted = TfidfEmbedRidge.fit(splits["train"], splits.get("val", []), base_model=member.base_model,
                                                  batch_size=member.batch_size)
        elif member.spec in ("median", "mean"):
            from .baselines import constant

            if splits is None:
                raise PricetuneError(f"the {member.spec} member needs the dataset")
            self.value = constant(splits["train"], member.spec)
        else:
            from .inference import load_model

            self.lm = load_model(run=member.spec)

    def predict(self, prompts: list[str], progress: bool = False) -> list[float | None]:
        spec = self.member.spec
        if spec in FITTED:
            return self.fitted.predict(prompts, progress)
        if spec in ("median", "mean"):
            return [self.value] * len(prompts)
        out = self.lm.price(prompts, self.member.decode, self.member.batch_size, self.member.samples, progress)
        return [p for _, p in out]


@dataclass
class Ensemble:
    members: list[Member]
    weights: list[float]
    folder: Path
    constants: dict

    @property
    def llm_only(self) -> bool:
        return not any(m.classical for m, w in zip(self.members, self.weights) if w > 0)

    @classmethod
    def load(cls, folder: str | Path) -> Ensemble:
        folder = Path(folder)
        path = folder / "ensemble.json"
        if not path.is_file():
            raise PricetuneError(f"{folder} is not an ensemble folder (no ensemble.json); make one with `pricetune ensemble`")
        data = json.loads(path.read_text(encoding="utf-8"))
        members = [Member(m["spec"], m.get("decode", "greedy"), m.get("samples", 64)) for m in data["members"]]
        return cls(members, data["weights"], folder, data.get("constants", {}))

    def predictors(self) -> list[Predictor | None]:
        """Loaded members (None for those of weight 0: they are not loaded at all)."""
        out = []
        for m, w in zip(self.members, self.weights):
            if w == 0:
                out.append(None)
            elif m.spec in ("median", "mean"):
                out.append(Predictor(m, constant_value=self.constants[m.spec]))
            else:
                out.append(Predictor(m, self.folder))
        return out

    def predict(self, prompts: list[str], predictors=None, progress: bool = False) -> list[float | None]:
        predictors = predictors or self.predictors()
        prices = [p.predict(prompts, progress) if p is not None else [None] * len(prompts) for p in predictors]
        return combine(self.weights, prices)


def fit_ensemble(dataset: str, members: list[Member], out: str | Path, log=print) -> dict:
    """Price the val split with each member, fit the weights there, and save the ensemble folder."""
    from .data import load_splits

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise PricetuneError(f"{out} already exists and is not empty; choose another --out")
    if len(members) < 2:
        raise PricetuneError("an ensemble needs at least two --member")
    runs = [m.spec for m in members if not m.classical]
    if runs:
        from .config import refuse_val_of_refit
        from .inference import run_paths

        for spec in runs:
            refuse_val_of_refit(run_paths(spec)[0], "fitting ensemble weights")
    splits, _ = load_splits(dataset, val_size=10**9, need=("train", "val"))
    val = splits["val"]
    prompts, truths = [r["prompt"] for r in val], [r["price"] for r in val]
    member_prices, member_mae, constants = [], [], {}
    out.mkdir(parents=True, exist_ok=True)
    try:
        for m in members:
            log(f"pricing {len(val)} val items with {m.spec}")
            predictor = Predictor(m, splits=splits)
            prices = predictor.predict(prompts, progress=m.spec not in ("tfidf", "median", "mean"))
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
    except BaseException:
        import shutil

        shutil.rmtree(out, ignore_errors=True)
        raise
    return record


def add_ensemble_arguments(p) -> None:
    p.description = ("Combine several price models (runs and classical baselines) with weights fit on the "
                     "validation split only; evaluate the result with `pricetune evaluate --ensemble DIR`.")
    p.add_argument("--dataset", required=True, help="Dataset with train and val splits (as `train --dataset`).")
    p.add_argument("--member", action="append", required=True, metavar="RUN|tfidf|tfidf-embed|median|mean",
                   help="A member: a run directory (or one of its checkpoint-N folders), tfidf, tfidf-embed, median or "
                   "mean (see `pricetune evaluate --help`, --baseline). Repeat.")
    p.add_argument("--out", required=True, help="New folder for ensemble.json (and the fitted baselines' SPEC.joblib).")
    p.add_argument("--base-model", default="smollm2-135m",
                   help="The frozen base a tfidf-embed member reads (default: the embedded smollm2-135m).")
    p.add_argument("--decode", default="greedy", choices=["greedy", "expected", "median"],
                   help="How generate runs price (regress runs have one way).")
    p.add_argument("--samples", type=int, default=64, help="Draws per item for --decode median.")
    p.add_argument("--batch-size", type=int, default=16, help="Prompts priced together.")


def ensemble_cli(ns) -> int:
    members = [Member(s, ns.decode, ns.samples, ns.batch_size, ns.base_model) for s in ns.member]
    record = fit_ensemble(ns.dataset, members, ns.out)
    for m, w, mae in zip(record["members"], record["weights"], record["member_val_mae"]):
        print(f"  {m['spec']:<40} weight {w:.2f}   val MAE ${mae:,.2f}")
    print(f"  ensemble val MAE ${record['val_mae']:,.2f}")
    print(f"ensemble: {ns.out}")
    return 0
