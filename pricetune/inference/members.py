"""A saved ensemble, priced: what each member is, how it is made ready to price, and how a folder's
`ensemble.json` combines their prices (`combine`). Fitting, choosing and refitting ensembles is
`pricetune.ensemble`'s work; pricing with one is here, beside the single models it combines."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import PricetuneError

FITTED = ("tfidf", "tfidf-knn", "mlp")  # classical members fit on the train split, saved as SPEC.joblib
CLASSICAL = (*FITTED, "median", "mean")
# members that left pricetune: an ensemble naming one says so, instead of looking for a run of that name
RETIRED = {"tfidf-embed": "it priced amazon-18k's val $3.28 above mlp (docs/RESULTS.md, 'Options that lost')"}


@dataclass
class Member:
    """One model of an ensemble: `spec` is a run directory or tfidf / tfidf-knn / mlp / median / mean."""

    spec: str
    decode: str = "greedy"
    samples: int = 64
    batch_size: int = 16

    def __post_init__(self):
        if self.spec in RETIRED:
            raise PricetuneError(f"the {self.spec} member left pricetune: {RETIRED[self.spec]}; choose the ensemble "
                                 "again without it (`pricetune select`), or use pricetune at commit 16126d1")

    @property
    def classical(self) -> bool:
        return self.spec in CLASSICAL

    @property
    def llm_only(self) -> bool:
        """A fine-tuned model with no classical part: not a baseline, nor a run that reads its
        neighbours' prices (a TF-IDF lookup) in each prompt."""
        if self.classical:
            return False
        from ..config import load_run_config
        from .load import run_paths

        return not load_run_config(run_paths(self.spec)[0]).neighbours

    def describe(self, folder: Path | None = None) -> dict:
        """The member as ensemble.json records it; a local run also by its path from `folder` (the
        ensemble's), so the ensemble loads from any working directory."""
        d = {"spec": self.spec, "kind": self.spec if self.classical else "run"}
        if not self.classical:
            d.update(decode=self.decode, samples=self.samples)
            if folder is not None and Path(self.spec).exists():
                d["path"] = os.path.relpath(Path(self.spec).resolve(), Path(folder).resolve())
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
            from ..baselines import FITTED as KINDS

            kind = KINDS[member.spec]
            saved = folder / f"{member.spec}.joblib" if folder is not None else None
            if saved is not None and saved.is_file():
                self.fitted = kind.load(saved)
            elif splits is None:
                raise PricetuneError(f"the {member.spec} member needs the dataset to fit on")
            else:
                self.fitted = kind.fit(splits["train"], splits.get("val", []), progress=True)
        elif member.spec in ("median", "mean"):
            from ..baselines import constant

            if splits is None:
                raise PricetuneError(f"the {member.spec} member needs the dataset")
            self.value = constant(splits["train"], member.spec)
        else:
            from .load import load_model

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
    record: dict  # ensemble.json as saved (dataset, fit_on, val MAE, constants, ...)

    @property
    def intercept(self) -> float:
        """The stacked combination's intercept in log(1 + price); 0 for a weighted mean."""
        return self.record.get("intercept", 0.0)

    @property
    def constants(self) -> dict:
        return self.record.get("constants", {})

    @property
    def train_on_val(self) -> bool:
        """A refit: its members trained on the val rows, so it is scored on test only."""
        return self.record.get("train_on_val", False)

    @property
    def llm_only(self) -> bool:
        return all(m.llm_only for m, w in zip(self.members, self.weights) if w != 0)

    @classmethod
    def load(cls, folder: str | Path) -> Ensemble:
        folder = Path(folder)
        path = folder / "ensemble.json"
        if not path.is_file():
            picks = sorted(p.parent.name for p in folder.glob("*/ensemble.json"))
            hint = (f"; it holds select's picks: pass one of {', '.join(str(folder / p) for p in picks)}" if picks
                    else "; make one with `pricetune ensemble` or `pricetune select`")
            raise PricetuneError(f"{folder} is not an ensemble folder (no ensemble.json){hint}")
        data = json.loads(path.read_text(encoding="utf-8"))
        # "path" is relative to the folder; files written before it was recorded name runs from the
        # directory they were made in
        members = [Member(str((folder / m["path"]).resolve()) if "path" in m else m["spec"], m.get("decode", "greedy"),
                          m.get("samples", 64)) for m in data["members"]]
        return cls(members, data["weights"], folder, data)

    def predictors(self) -> list[Predictor | None]:
        """Loaded members (None for those of weight 0: they are not loaded at all)."""
        gone = [m.spec for m, w in zip(self.members, self.weights) if w != 0 and not m.classical
                and not Path(m.spec).exists()]
        if gone:  # said before any member loads
            raise PricetuneError(f"{self.folder}: its member run {gone[0]} is not there (moved or deleted?); an "
                                 "ensemble finds its runs by their place beside its folder: put the run back, or "
                                 "choose again (`pricetune select` or `pricetune ensemble`)")
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
        return combine(self.weights, prices, self.intercept)


def combine(weights: list[float], member_prices: list[list[float | None]],
            intercept: float = 0.0) -> list[float | None]:
    """log(1 + guess) = intercept + the weighted sum of the members' log(1 + price), for each item.

    A weighted mean (weights >= 0, no intercept): a member without a price for an item gives its weight
    to the others in proportion (the priced members' weighted mean). A stack (free weights, an
    intercept): no such rescaling is sound (weights of both signs can sum to about zero), so an item
    that a weighted member did not price gets no price (None)."""
    whole = sum(weights)
    stacked = intercept != 0.0 or any(w < 0 for w in weights)
    out = []
    for prices in zip(*member_prices):
        if stacked and any(p is None for w, p in zip(weights, prices) if w != 0):
            out.append(None)
            continue
        pairs = [(w, math.log1p(max(p, 0.0))) for w, p in zip(weights, prices) if p is not None and w != 0]
        total = sum(w for w, _ in pairs)
        if stacked:
            out.append(math.expm1(intercept + sum(w * x for w, x in pairs)))
        else:
            out.append(math.expm1(whole * sum(w * x for w, x in pairs) / total) if total > 0 else None)
    return out
