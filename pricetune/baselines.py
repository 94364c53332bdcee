"""Classical baselines: what a price model must beat before anyone calls it good.

    pricetune evaluate --baseline tfidf --dataset ../shared/data/amazon-items --limit 0
    pricetune evaluate --baseline median --dataset demo

    from pricetune.baselines import TfidfRidge
    model = TfidfRidge.fit(train_rows, val_rows)     # alpha chosen on val
    model.predict(["What does this cost ...Price is $"])

`tfidf`: word 1-2-grams and character 3-5-grams (`char_wb`) with sublinear term frequency, words
and character n-grams seen in at least two items, and a ridge regression on log(1 + price); its
regularisation is chosen on the validation split by mean absolute error, the fit itself uses the
train split only (so val stays clean for ensemble weights). `mean` / `median`: a constant from the
train split.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from .errors import PricetuneError

ALPHAS = (0.3, 1.0, 3.0)


def item_text(prompt: str) -> str:
    """The item part of a prompt: the question line and the closing "Price is $" carry no signal."""
    from .data import PRICE_TRAILER, QUESTION

    return prompt.removeprefix(QUESTION).removesuffix(PRICE_TRAILER).strip()


def _mae(truths: list[float], guesses: list[float]) -> float:
    return statistics.fmean(abs(a - b) for a, b in zip(truths, guesses))


@dataclass
class TfidfRidge:
    """TF-IDF features and a ridge regression on log price (scikit-learn), alpha chosen on val."""

    pipeline: object
    alpha: float
    val_mae_by_alpha: dict[float, float] = field(default_factory=dict)

    @staticmethod
    def _pipeline(alpha: float):
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import Ridge
        from sklearn.pipeline import make_pipeline, make_union

        features = make_union(
            TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, min_df=2),
            TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, min_df=2),
        )
        return make_pipeline(features, Ridge(alpha=alpha))

    @classmethod
    def fit(cls, train: list[dict], val: list[dict], alphas: tuple[float, ...] = ALPHAS) -> TfidfRidge:
        """Fit on `train` for each alpha; keep the one with the lowest MAE on `val`."""
        if len(train) < 2:
            raise PricetuneError("the tfidf baseline needs at least 2 training rows")
        if not val:
            raise PricetuneError("the tfidf baseline chooses its regularisation on a val split; the dataset has none")
        x = [item_text(r["prompt"]) for r in train]
        y = [math.log1p(r["price"]) for r in train]
        best, scores = None, {}
        for alpha in alphas:
            pipe = cls._pipeline(alpha).fit(x, y)
            scores[alpha] = _mae([r["price"] for r in val], _expm1(pipe.predict([item_text(r["prompt"]) for r in val])))
            if best is None or scores[alpha] < scores[best[0]]:
                best = (alpha, pipe)
        return cls(pipeline=best[1], alpha=best[0], val_mae_by_alpha=scores)

    def predict(self, prompts: list[str]) -> list[float]:
        from .data import make_prompt

        return _expm1(self.pipeline.predict([item_text(make_prompt(p)) for p in prompts]))

    def save(self, path: str | Path) -> Path:
        import joblib

        path = Path(path)
        joblib.dump({"pipeline": self.pipeline, "alpha": self.alpha, "val_mae_by_alpha": self.val_mae_by_alpha}, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> TfidfRidge:
        import joblib

        data = joblib.load(path)
        return cls(pipeline=data["pipeline"], alpha=data["alpha"], val_mae_by_alpha=data["val_mae_by_alpha"])


def _expm1(values) -> list[float]:
    return [max(0.0, math.expm1(float(v))) for v in values]


def constant(train: list[dict], how: str) -> float:
    prices = [r["price"] for r in train]
    if not prices:
        raise PricetuneError("a constant baseline needs a train split")
    return statistics.mean(prices) if how == "mean" else statistics.median(prices)
