"""A sparse MLP on TF-IDF features: the strongest cheap model, as the Mercari price challenge's winners
built it on CPUs.

    pricetune evaluate --baseline mlp --dataset amazon-18k --split val --limit 0
    pricetune select --dataset amazon-18k --member runs/X --member mlp --member tfidf --out runs/pick

The features are `tfidf.py`'s (word 1-2-grams and character 3-5-grams); each net is
features -> 256 -> 64 -> 64 -> 1 with ReLUs, trained with a Huber loss on standardised log(1 + price).
The first layer is an `EmbeddingBag` over the item's non-zero features (a sparse matrix product) with
sparse gradients and `SparseAdam`, so an epoch touches only the rows of the features an item has:
minutes on a CPU where a dense first layer over ~300k inputs would take hours. The batch doubles each
epoch (32, 64, 128, ...), as the winners did: large steps first, then finer ones.

`SEEDS` nets are trained, half reading the TF-IDF values and half the same features as 0/1 (the
winners' way to make the nets differ), and their log prices are averaged. The number of epochs is
chosen on val: all nets advance one epoch at a time, and training stops at the first epoch whose
averaged val MAE is no better than the one before it, keeping the best. The fit reads train (and val
for that choice), never test; a given seed gives the same prices.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import PricetuneError
from .common import item_text, mae, prices_from_logs, val_mae_record

SEEDS = 4
MAX_EPOCHS = 4
FIRST_BATCH = 32
LEARNING_RATE = 3e-3


@dataclass
class SparseMlp:
    """TF-IDF features and `SEEDS` sparse MLPs averaged on log price, the epochs chosen on val."""

    features: object  # the fitted TF-IDF union
    states: list[dict]  # each net's weights (numpy; the first layer in float16 to halve the file)
    binary: list[bool]
    epochs: int
    centre: float  # log-price standardisation, from train
    spread: float
    seed: int = 0
    val_mae_by_epochs: dict[int, float] = field(default_factory=dict)
    LABEL = "TF-IDF sparse MLP"

    @classmethod
    def fit(cls, train: list[dict], val: list[dict], seed: int = 0, seeds: int = SEEDS,
            epochs: int | None = None, refit: bool = False, progress: bool = False) -> SparseMlp:
        """Fit on `train`, the number of epochs chosen on `val` (or `epochs` given). `refit`: choose the
        epochs on val, then fit again on train + val with that number (a model scored on test only)."""
        from .tfidf import tfidf_features

        if len(train) < 2:
            raise PricetuneError("the mlp baseline needs at least 2 training rows")
        if epochs is None and not val:
            raise PricetuneError("the mlp baseline chooses its epochs on a val split; the dataset has none")
        if refit:
            chosen = cls.fit(train, val, seed, seeds, progress=progress) if epochs is None else None
            model = cls.fit(train + val, [], seed, seeds, epochs or chosen.epochs, progress=progress)
            model.val_mae_by_epochs = chosen.val_mae_by_epochs if chosen else {}
            return model
        features = tfidf_features()
        x = features.fit_transform([item_text(r["prompt"]) for r in train]).astype(np.float32).tocsr()
        logs = np.log1p([r["price"] for r in train])
        centre, spread = float(logs.mean()), float(logs.std()) or 1.0
        y = ((logs - centre) / spread).astype(np.float32)
        val_x = features.transform([item_text(r["prompt"]) for r in val]).astype(np.float32).tocsr() if val else None
        binary = [i % 2 == 1 for i in range(seeds)]
        nets, scores = _train_nets(x, y, binary, seed, epochs, val_x, [r["price"] for r in val],
                                   (centre, spread), progress)
        from .sparse_net import to_state

        states = [to_state(net) for net in nets]
        return cls(features, states, binary, epochs or min(scores, key=scores.get), centre, spread, seed, scores)

    def settings(self) -> dict:
        return {"epochs": self.epochs, "nets": len(self.states), **val_mae_record("epochs", self.val_mae_by_epochs)}

    def predict(self, prompts: list[str], progress: bool = False) -> list[float]:
        from ..data import make_prompt
        from .sparse_net import from_state, predict_scaled

        x = self.features.transform([item_text(make_prompt(p)) for p in prompts]).astype(np.float32).tocsr()
        scaled = [predict_scaled(from_state(state), x, b) for state, b in zip(self.states, self.binary)]
        return prices_from_logs(np.mean(scaled, axis=0) * self.spread + self.centre)

    def save(self, path: str | Path) -> Path:
        import joblib

        path = Path(path)
        joblib.dump(self.__dict__, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> SparseMlp:
        import joblib

        return cls(**joblib.load(path))


def _train_nets(x, y, binary: list[bool], seed: int, epochs: int | None, val_x, val_prices: list[float],
                scale: tuple[float, float], progress: bool):
    """Train one net per entry of `binary` in lockstep, one epoch at a time. With `epochs` None, stop at
    the first epoch whose averaged val MAE does not improve and return the nets of the best epoch.
    Returns (nets, {epochs: val MAE})."""
    from tqdm.auto import tqdm

    from .sparse_net import SparseNet, predict_scaled, train_epoch

    nets = [SparseNet(x.shape[1], seed + i) for i in range(len(binary))]
    optimizers = [net.optimizers(LEARNING_RATE) for net in nets]
    rngs = [np.random.default_rng(seed + i) for i in range(len(binary))]
    last = epochs or MAX_EPOCHS
    scores, best = {}, None
    with tqdm(total=x.shape[0] * len(nets) * last, unit="row", desc="mlp", disable=not progress) as bar:
        for epoch in range(1, last + 1):
            batch = FIRST_BATCH * 2 ** (epoch - 1)
            for net, opts, b, rng in zip(nets, optimizers, binary, rngs):
                train_epoch(net, opts, x, y, batch, b, rng, bar)
            if epochs is not None:
                continue
            scaled = np.mean([predict_scaled(n, val_x, b) for n, b in zip(nets, binary)], axis=0)
            scores[epoch] = mae(val_prices, prices_from_logs(scaled * scale[1] + scale[0]))
            if best is not None and scores[epoch] >= scores[best[0]]:
                break
            best = (epoch, [copy.deepcopy(n.state_dict()) for n in nets])
    if best is not None:
        for net, state in zip(nets, best[1]):
            net.load_state_dict(state)
    return nets, scores
