"""TF-IDF and the frozen base model's hidden states, side by side in one ridge regression on log price.

    pricetune evaluate --baseline tfidf-embed --dataset ../shared/data/amazon-items --limit 0
    pricetune ensemble --dataset ../shared/data/amazon-items --member tfidf-embed \
        --member runs/amazon-regress-mean --out runs/ens-embed

    from pricetune.baselines import TfidfEmbedRidge
    model = TfidfEmbedRidge.fit(train_rows, val_rows)   # layer, weight and alpha chosen on val
    model.save("embed.joblib"); TfidfEmbedRidge.load("embed.joblib").predict(["Title: ..."])

Each prompt goes once through the untrained base (default: the embedded SmolLM2-135M), encoded as
training encodes it. The mean over its tokens of the hidden states after one decoder layer (through
the final norm, as a base cut after that layer would give them), standardised on the train split and
multiplied by a weight, stands beside the `tfidf` baseline's features, and one ridge regression on
log(1 + price) reads both. The TF-IDF rows have norm sqrt(2), a standardised block of width d about
sqrt(d), so the weight sets how much the ridge penalty lets the dense block speak against the sparse
one. The layer (half, two thirds, three quarters of the depth, or the last: linear probes of the frozen
base found the price in the middle layers, docs/results/history.md), the weight and alpha are chosen together on val by mean absolute error;
the fit itself reads the train split only.

Fitting keeps four read-outs per train item in memory (float32: 4 x 576 x 4 bytes for SmolLM2-135M,
9 KiB an item; 48 KiB with a 3,072-wide base). Pricing costs a forward pass of the base per item, as
a regress run does. It is not `llm_only`: the base is not fine-tuned and the model on top is
classical. The fitted ridge, scaler and vocabulary are saved with joblib; the base is named, not
copied, and loaded again when the saved model prices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import PricetuneError
from .common import item_text, mae, prices_from_logs
from .tfidf import tfidf_features

DEFAULT_BASE = "smollm2-135m"
LAYER_FRACTIONS = (1 / 2, 2 / 3, 3 / 4, 1)
WEIGHTS = (0.05, 0.1, 0.2, 0.4)
ALPHAS = (0.03, 0.1, 0.3)
SAVED = ("base_model", "max_length", "precision", "layer", "weight", "alpha", "vectorizer", "standard", "ridge",
         "val_mae_by_setting")


def candidate_layers(n_layers: int) -> list[int]:
    """The layers val chooses from: half, two thirds, three quarters of the depth, and the last."""
    return sorted({max(1, math.ceil(f * n_layers)) for f in LAYER_FRACTIONS})


def setting_name(layer: int, weight: float, alpha: float) -> str:
    return f"layer {layer}, weight {weight:g}, alpha {alpha:g}"


@dataclass
class TfidfEmbedRidge:
    """TF-IDF features and one layer's mean hidden state of the frozen base, one ridge on log price."""

    base_model: str
    max_length: int
    precision: str
    layer: int
    weight: float
    alpha: float
    vectorizer: object  # fitted TF-IDF feature union
    standard: object  # StandardScaler of the layer's read-out, fit on train
    ridge: object
    val_mae_by_setting: dict[str, float] = field(default_factory=dict)
    batch_size: int = 32
    _reader: tuple | None = field(default=None, repr=False, compare=False)

    @classmethod
    def fit(cls, train: list[dict], val: list[dict], base_model: str = DEFAULT_BASE, max_length: int = 192,
            precision: str = "auto", layers: list[int] | None = None, weights=WEIGHTS, alphas=ALPHAS,
            batch_size: int = 32, progress: bool = True, refit: bool = False) -> TfidfEmbedRidge:
        """Read train and val through the base once, then fit a ridge on train for every (layer,
        weight, alpha); keep the one with the lowest MAE on val. `refit`: then fit that setting again
        on train + val (vocabulary, scaler and ridge), for a model scored on test only."""
        import numpy as np
        from sklearn.linear_model import Ridge
        from sklearn.preprocessing import StandardScaler

        from ..modeling import pick_precision

        if len(train) < 2:
            raise PricetuneError("the tfidf-embed baseline needs at least 2 training rows")
        if not val:
            raise PricetuneError("the tfidf-embed baseline chooses its settings on a val split; the dataset has none")
        precision = pick_precision(precision)
        base, tokenizer = load_reader(base_model, precision)
        layers = sorted(set(layers or candidate_layers(base.config.num_hidden_layers)))
        vectorizer = tfidf_features()
        text = {"train": vectorizer.fit_transform([item_text(r["prompt"]) for r in train]),
                "val": vectorizer.transform([item_text(r["prompt"]) for r in val])}
        states = {name: layer_readouts(base, tokenizer, [r["prompt"] for r in rows], max_length, layers,
                                       batch_size=batch_size, progress=progress, desc=f"reading {name} through the base")
                  for name, rows in (("train", train), ("val", val))}
        y = np.log1p([r["price"] for r in train])
        truth = [r["price"] for r in val]
        best, scores = None, {}
        for i, layer in enumerate(layers):
            standard = StandardScaler().fit(states["train"][:, i])
            for weight in weights:
                x_train = design(text["train"], standard.transform(states["train"][:, i]) * weight)
                x_val = design(text["val"], standard.transform(states["val"][:, i]) * weight)
                for alpha in alphas:
                    ridge = Ridge(alpha=alpha).fit(x_train, y)
                    name = setting_name(layer, weight, alpha)
                    scores[name] = mae(truth, prices_from_logs(ridge.predict(x_val)))
                    if best is None or scores[name] < scores[best[0]]:
                        best = (name, layer, weight, alpha, standard, ridge)
        _, layer, weight, alpha, standard, ridge = best
        if refit:
            i = layers.index(layer)
            rows = train + val
            both = np.concatenate([states["train"][:, i], states["val"][:, i]])
            vectorizer = tfidf_features()
            text_both = vectorizer.fit_transform([item_text(r["prompt"]) for r in rows])
            standard = StandardScaler().fit(both)
            ridge = Ridge(alpha=alpha).fit(design(text_both, standard.transform(both) * weight),
                                           np.log1p([r["price"] for r in rows]))
        return cls(base_model, max_length, precision, layer, weight, alpha, vectorizer, standard, ridge, scores,
                   batch_size, _reader=(base, tokenizer))

    @property
    def val_mae(self) -> float:
        return self.val_mae_by_setting[setting_name(self.layer, self.weight, self.alpha)]

    def reader(self) -> tuple:
        """The frozen base and its tokenizer, loaded on first use."""
        if self._reader is None:
            self._reader = load_reader(self.base_model, self.precision)
        return self._reader

    def predict(self, prompts: list[str], progress: bool = False) -> list[float]:
        from ..data import make_prompt

        if not prompts:
            return []
        prompts = [make_prompt(p) for p in prompts]
        base, tokenizer = self.reader()
        states = layer_readouts(base, tokenizer, prompts, self.max_length, [self.layer], batch_size=self.batch_size,
                                progress=progress, desc="reading through the base")[:, 0]
        x = design(self.vectorizer.transform([item_text(p) for p in prompts]), self.standard.transform(states) * self.weight)
        return prices_from_logs(self.ridge.predict(x))

    def save(self, path: str | Path) -> Path:
        import joblib

        path = Path(path)
        joblib.dump({k: getattr(self, k) for k in SAVED}, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> TfidfEmbedRidge:
        import joblib

        data = joblib.load(path)
        return cls(**{k: data[k] for k in SAVED})


def load_reader(base_model: str, precision: str) -> tuple:
    """The unquantized base in eval mode, and its tokenizer."""
    from ..modeling import load_base_model, load_tokenizer

    return load_base_model(base_model, "none", precision).eval(), load_tokenizer(base_model)


def design(text, dense):
    """The ridge's input: the sparse TF-IDF rows and the weighted dense block, side by side."""
    import scipy.sparse as sp

    return sp.hstack([text, sp.csr_matrix(dense)]).tocsr()


def layer_readouts(model, tokenizer, prompts: list[str], max_length: int, layers, batch_size: int = 32,
                   progress: bool = True, desc: str = "reading the base"):
    """[n, k, hidden] float32 array, prompts in input order, encoded as training encodes them: for
    each of `layers` (1-based decoder layers) the mean over the prompt's tokens of that layer's hidden
    states, through the base's final norm as a base cut there would give them (the final layer's come
    normed). `model`: a causal LM or its decoder."""
    import numpy as np
    import torch

    from ..data import encode_prompts, in_length_order
    from ..regress import RegressionCollator, mean_over_tokens

    collate = RegressionCollator(tokenizer.pad_token_id)
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
    device = next(decoder.parameters()).device
    layers = list(layers)
    n_layers = decoder.config.num_hidden_layers
    if not all(0 < k <= n_layers for k in layers):
        raise PricetuneError(f"layers {layers}: the base has {n_layers} decoder layers")

    @torch.inference_mode()
    def read(ids: list[list[int]]) -> list:
        batch = collate([{"input_ids": x} for x in ids])
        mask = batch["attention_mask"].to(device)
        # hidden_states: the embeddings, then each layer's output; the last one already normed
        states = decoder(input_ids=batch["input_ids"].to(device), output_hidden_states=True).hidden_states
        out = [mean_over_tokens(states[k] if k == n_layers else decoder.norm(states[k]), mask) for k in layers]
        return list(torch.stack(out, 1).cpu().numpy())

    return np.stack(in_length_order(encode_prompts(tokenizer, prompts, max_length), batch_size, read, desc, progress))
