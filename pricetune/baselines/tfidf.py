"""TF-IDF + ridge on log price: the baseline every results table carries.

Word 1-2-grams and character 3-5-grams (`char_wb`) with sublinear term frequency, words and character
n-grams seen in at least two items, and a ridge regression on log(1 + price); its regularisation is
chosen on the validation split by mean absolute error, the fit itself uses the train split only.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..errors import PricetuneError
from .common import item_text, mae, prices_from_logs, val_mae_record

# down to 0.01: a grid from 0.3 up had val choose its edge on the amazon items
# (docs/results/amazon-val/tfidf-alphas.json)
ALPHAS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)


def tfidf_features():
    """The unfitted feature union: word 1-2-grams and character 3-5-grams, each row l2-normalised."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_union

    return make_union(
        TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, min_df=2),
        TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, min_df=2),
    )


def choose_on_val(name: str, make_head, settings, train: list[dict], val: list[dict], refit: bool = False,
                  progress: bool = False):
    """The TF-IDF features fit on `train` once, then `make_head(setting)` (a scikit-learn regressor on
    them -> log price) for each setting; the one with the lowest MAE on `val` is kept, as a pipeline
    from item text. `refit`: that setting fit again, features too, on train + val. `progress`: a bar
    over the settings on stderr (minutes on tens of thousands of rows).
    Returns (setting, fitted pipeline, {setting: val MAE})."""
    from sklearn.pipeline import make_pipeline
    from tqdm.auto import tqdm

    if len(train) < 2:
        raise PricetuneError(f"the {name} baseline needs at least 2 training rows")
    if not val:
        raise PricetuneError(f"the {name} baseline chooses its settings on a val split; the dataset has none")
    x = [item_text(r["prompt"]) for r in train]
    y = [math.log1p(r["price"]) for r in train]
    val_x, val_prices = [item_text(r["prompt"]) for r in val], [r["price"] for r in val]
    bar = tqdm(total=len(settings), desc=f"{name}: TF-IDF features", unit="setting", file=sys.stderr,
               disable=not progress)
    features = tfidf_features()
    train_features = features.fit_transform(x)  # the same for every setting: fit once
    val_features = features.transform(val_x)
    bar.set_description(f"{name}: each setting on val")
    best, scores = None, {}
    for setting in settings:
        head = make_head(setting).fit(train_features, y)
        scores[setting] = mae(val_prices, prices_from_logs(head.predict(val_features)))
        if best is None or scores[setting] < scores[best[0]]:
            best = (setting, head)
        bar.update()
    bar.close()
    if refit:
        pipe = make_pipeline(tfidf_features(), make_head(best[0]))
        return best[0], pipe.fit(x + val_x, y + [math.log1p(p) for p in val_prices]), scores
    return best[0], make_pipeline(features, best[1]), scores


class TextPipelineModel:
    """What the TF-IDF baselines share: a fitted scikit-learn `pipeline` on item text -> log price,
    priced from prompts, saved with joblib as a dict of the dataclass's fields."""

    pipeline: object

    def predict(self, prompts: list[str], progress: bool = False) -> list[float]:
        from ..data import make_prompt

        return prices_from_logs(self.pipeline.predict([item_text(make_prompt(p)) for p in prompts]))

    def save(self, path: str | Path) -> Path:
        import joblib

        path = Path(path)
        joblib.dump({f.name: getattr(self, f.name) for f in fields(self)}, path)
        return path

    @classmethod
    def load(cls, path: str | Path):
        import joblib

        data = joblib.load(path)
        return cls(**{f.name: data[f.name] for f in fields(cls)})


@dataclass
class TfidfRidge(TextPipelineModel):
    """TF-IDF features and a ridge regression on log price (scikit-learn), alpha chosen on val."""

    pipeline: object
    alpha: float
    val_mae_by_alpha: dict[float, float] = field(default_factory=dict)
    LABEL = "TF-IDF + ridge"

    @staticmethod
    def _head(alpha: float):
        from sklearn.linear_model import Ridge

        return Ridge(alpha=alpha)

    @classmethod
    def fit(cls, train: list[dict], val: list[dict], alphas: tuple[float, ...] = ALPHAS,
            refit: bool = False, progress: bool = False) -> TfidfRidge:
        """Fit on `train` for each alpha; keep the one with the lowest MAE on `val`. `refit`: then fit
        that alpha again on train + val (features included), for a model scored on test only."""
        alpha, pipe, scores = choose_on_val("tfidf", cls._head, alphas, train, val, refit, progress)
        return cls(pipeline=pipe, alpha=alpha, val_mae_by_alpha=scores)

    def settings(self) -> dict:
        return {"alpha": self.alpha, **val_mae_record("alpha", self.val_mae_by_alpha, "g")}
