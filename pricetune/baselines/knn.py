"""TF-IDF nearest neighbours: an item costs what the most similar train items cost.

The same TF-IDF features as `tfidf.py`; an item's log price is the mean of the log prices of its k
nearest train items by cosine distance, each weighted by 1 / distance (scikit-learn's
`KNeighborsRegressor`). k is chosen on the validation split by mean absolute error. A ridge draws
every price toward the middle; neighbours do not, so a dear item with dear look-alikes keeps its
price, which makes it a different kind of error to put beside the ridge in an ensemble.

    pricetune evaluate --baseline tfidf-knn --dataset amazon-18k --limit 0
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .common import val_mae_record
from .tfidf import TextPipelineModel, choose_on_val

NEIGHBOURS = (3, 5, 10, 20)


@dataclass
class TfidfKnn(TextPipelineModel):
    """TF-IDF features and a k-nearest-neighbours regression on log price, k chosen on val."""

    pipeline: object
    k: int
    val_mae_by_k: dict[int, float] = field(default_factory=dict)
    LABEL = "TF-IDF nearest neighbours"

    @staticmethod
    def _head(k: int):
        from sklearn.neighbors import KNeighborsRegressor

        # brute force: cosine distance on sparse rows has no tree index, and a few thousand rows need none
        return KNeighborsRegressor(n_neighbors=k, metric="cosine", algorithm="brute", weights="distance")

    @classmethod
    def fit(cls, train: list[dict], val: list[dict], ks: tuple[int, ...] = NEIGHBOURS, refit: bool = False,
            progress: bool = False) -> TfidfKnn:
        """Fit on `train` for each k (those above the train size are skipped); keep the k with the lowest
        MAE on `val`. `refit`: then fit that k again on train + val, for a model scored on test only."""
        usable = tuple(k for k in ks if k <= len(train)) or (len(train),)
        k, pipe, scores = choose_on_val("tfidf-knn", cls._head, usable, train, val, refit, progress)
        return cls(pipeline=pipe, k=k, val_mae_by_k=scores)

    def settings(self) -> dict:
        return {"k": self.k, **val_mae_record("k", self.val_mae_by_k)}
