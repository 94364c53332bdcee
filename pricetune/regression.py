"""The regress objective: a scalar head on the base model's hidden states, trained on log price.

    pricetune train --objective regress --dataset ../shared/data/amazon-items --base-model smollm2-135m
    pricetune evaluate runs/<a regress run>           # one forward pass per item, no decoding

The model is transformers' sequence-classification form of the base (`num_labels=1`, the head
`score` reading the hidden state at the last non-padding token) with LoRA on the base and the head
trained in full (PEFT `task_type="SEQ_CLS"`, head in `modules_to_save`). The target is log(1 + price),
standardised by the training split's median and spread so a freshly initialised head starts near
the right answer; the L1 loss on it has the median as its optimum, the answer that minimises the
mean absolute error the course scores. The standardisation is saved beside the adapter as
`regression_head.json`, so a price is `expm1(center + scale * output)` anywhere.

`regress_pooling: mean` makes the head read the mean of the final hidden states over the prompt's
tokens instead of the last one (the same `score` layer, applied to the mean). On amazon-items it
priced the val split at $65.17 against the last token's $66.62, same settings and seed
(docs/results/history.md); `python -m pricetune.probe` asks the frozen base the same question before any
training. The choice is saved in `regression_head.json`, and every pricing path honours it.

`regress_layers: N` builds the model from the base's first N decoder layers only (the final norm
and the head follow layer N; the later layers are never loaded), so the head reads a middle layer
and training and pricing cost about N / all of the full depth. Saved in `regression_head.json` too.

`regress_head_init: probe` starts the head from a linear probe instead of a random vector (LP-FT:
linear probing, then fine-tuning): before LoRA is attached, the train split's prompts go through the
frozen base once, a ridge regression on log price is fit to what the head reads (alpha chosen on
val), and its weights become the head's. The head has no bias, so the ridge's intercept becomes the
scale's center. Fine-tuning then starts from the probe's prices, not from a constant.

    pricetune train --config amazon-regress --regress-head-init probe --head-learning-rate 5e-4

`regress_loss: bins` gives the head `regress_bins` outputs instead of one: a histogram over log
price (equal bins spanning the training prices), trained with cross-entropy against a Gaussian
spread over the bins around each item's price (HL-Gauss, Imani & White 2018; Farebrother et al.
2024), and priced at the median of the predicted distribution, the answer MAE wants, read between
bin edges. The bins' span is saved in `regression_head.json` with the rest of the scale.

    pricetune train --config amazon-regress --regress-loss bins --output-dir runs/amazon-regress-bins
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from .data import encode_prompts, in_length_order, is_right_padded, make_prompt
from .errors import PricetuneError

HEAD_FILE = "regression_head.json"
POOLINGS = ("last", "mean")
HUBER_DELTA = 1.0  # the default, in standardised units: L1 beyond one spread, squared inside
# dollars: outputs this many spreads above the center are priced as if there (exp of more would
# overflow float32 long before any real price)
MAX_STANDARD_OUTPUT = 30.0
# bins: the histogram spans the training targets plus this much (standardised units) either side, and
# by default each target is spread over it as a Gaussian this many bin widths wide (HL-Gauss's 0.75)
BIN_MARGIN = 0.5
BIN_SIGMA_WIDTHS = 0.75


@dataclass(frozen=True)
class PriceScale:
    """How the head's output maps to a price: price = expm1(center + scale * output)."""

    center: float
    scale: float
    loss: str = "l1"
    pooling: str = "last"  # which hidden state the head reads: the last prompt token's, or the mean
    layers: int | None = None  # the base's first N decoder layers carry the head (None: all of them)
    bins: int = 1  # the head's outputs: 1 (a standardised log price) or a histogram's logits
    low: float | None = None  # bins: the histogram's span, in standardised units
    high: float | None = None
    sigma: float | None = None  # bins: the training targets' Gaussian spread, in bin widths
    delta: float | None = None  # huber: where the loss turns from squared to absolute, in standardised units

    @classmethod
    def fit(cls, prices: list[float], loss: str = "l1", pooling: str = "last", layers: int | None = None,
            bins: int = 1, sigma: float = BIN_SIGMA_WIDTHS, delta: float = HUBER_DELTA) -> PriceScale:
        logs = [math.log1p(p) for p in prices]
        if not logs:
            raise PricetuneError("the regress objective needs training prices")
        if (loss == "bins") != (bins > 1):
            raise PricetuneError(f"loss {loss!r} with {bins} head outputs: the bins loss needs at least 2, the others 1")
        center = statistics.median(logs)
        # mean absolute deviation from the median: the spread L1 sees (never 0: one price is allowed)
        scale = statistics.fmean(abs(x - center) for x in logs) or 1.0
        low = high = None
        if bins > 1:
            if not sigma > 0:
                raise PricetuneError(f"the bins loss needs a Gaussian spread > 0 bin widths (got {sigma})")
            low, high = (min(logs) - center) / scale - BIN_MARGIN, (max(logs) - center) / scale + BIN_MARGIN
        if loss == "huber" and not delta > 0:
            raise PricetuneError(f"the huber loss needs a delta > 0 standardised units (got {delta})")
        return cls(center=center, scale=scale, loss=loss, pooling=pooling, layers=layers, bins=bins, low=low, high=high,
                   sigma=sigma if bins > 1 else None, delta=delta if loss == "huber" else None)

    def target(self, price: float) -> float:
        return (math.log1p(price) - self.center) / self.scale

    def edges(self, device=None) -> torch.Tensor:
        """The bins' edges in standardised units, bins + 1 of them."""
        return torch.linspace(self.low, self.high, self.bins + 1, device=device)

    def price(self, output: torch.Tensor) -> torch.Tensor:
        """Prices from head outputs: [batch] standardised log prices, or [batch, bins] logits."""
        if output.dim() == 2:
            output = histogram_median(output, self.edges(output.device))
        return torch.expm1(self.center + self.scale * output.float()).clamp(min=0.0)

    def save(self, directory: str | Path) -> None:
        formula = ("price = expm1(center + scale * m), m the median of softmax(model_output) spread evenly over "
                   "`bins` equal bins from low to high" if self.bins > 1 else "price = expm1(center + scale * model_output)")
        payload = {"formula": formula, **asdict(self)}
        (Path(directory) / HEAD_FILE).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> PriceScale:
        path = Path(directory) / HEAD_FILE
        if not path.is_file():
            raise PricetuneError(f"{directory} is a regress run without {HEAD_FILE}; it cannot turn outputs into prices")
        data = json.loads(path.read_text(encoding="utf-8"))
        pooling = data.get("pooling", "last")  # files written before pooling existed read the last token
        if pooling not in POOLINGS:
            raise PricetuneError(f"{path}: pooling {pooling!r} is not one of {', '.join(POOLINGS)}")
        layers = data.get("layers")  # files written before layers existed used them all
        if layers is not None:
            _check_positive_whole(path, "layers", layers)
        bins = _check_positive_whole(path, "bins", data.get("bins", 1))  # older files: a single output
        low, high, sigma, delta = data.get("low"), data.get("high"), data.get("sigma"), data.get("delta")
        if bins > 1 and not (isinstance(low, (int, float)) and isinstance(high, (int, float)) and low < high):
            raise PricetuneError(f"{path}: {bins} bins need a span low < high (got {low!r}, {high!r})")
        loss = data.get("loss", "l1")
        if loss == "huber" and delta is not None and not (isinstance(delta, (int, float)) and delta > 0):
            raise PricetuneError(f"{path}: huber delta {delta!r} is not a number > 0")
        return cls(center=float(data["center"]), scale=float(data["scale"]), loss=loss,
                   pooling=pooling, layers=layers, bins=bins, low=low, high=high,
                   sigma=(float(sigma) if sigma is not None else BIN_SIGMA_WIDTHS) if bins > 1 else None,
                   # files written before delta was saved trained with the default
                   delta=(float(delta) if delta is not None else HUBER_DELTA) if loss == "huber" else None)


def _check_positive_whole(path: Path, name: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise PricetuneError(f"{path}: {name} {value!r} is not a positive whole number")
    return value


def histogram_median(logits: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """[batch] medians of the distributions [batch, bins] logits put on the bins between `edges`
    (bins + 1), each bin's mass spread evenly over it: where the cumulative mass reaches one half."""
    probs = torch.softmax(logits.float(), dim=-1)
    cdf = probs.cumsum(-1)
    at = (cdf < 0.5).sum(-1, keepdim=True).clamp(max=probs.shape[-1] - 1)  # the bin holding the median
    below = (cdf - probs).gather(-1, at)
    inside = ((0.5 - below) / probs.gather(-1, at).clamp(min=1e-12)).clamp(0.0, 1.0)
    edges = edges.float()
    return (edges[at] + inside * (edges[at + 1] - edges[at])).squeeze(-1)


def gaussian_bin_targets(targets: torch.Tensor, edges: torch.Tensor, sigma: float) -> torch.Tensor:
    """[batch, bins]: the mass of a Gaussian around each target (sd `sigma`) that falls in each bin,
    renormalised to the histogram's span (HL-Gauss's target distribution)."""
    cdf = torch.special.ndtr((edges.float()[None, :] - targets.float()[:, None]) / sigma)
    mass = cdf[:, 1:] - cdf[:, :-1]
    return mass / (cdf[:, -1:] - cdf[:, :1]).clamp(min=1e-12)


def regression_loss(outputs: torch.Tensor, targets: torch.Tensor, kind: str = "l1", spread: float = 1.0,
                    edges: torch.Tensor | None = None, sigma: float = BIN_SIGMA_WIDTHS,
                    delta: float = HUBER_DELTA) -> torch.Tensor:
    """The loss between head outputs and standardised log-price targets (`PriceScale.target`).

    l1: mean absolute distance in standardised log price. huber: the same, squared within `delta`
    spreads (torch's huber_loss: 0.5 r^2 inside, delta * (|r| - 0.5 delta) beyond).
    dollars: the mean absolute error of the prices themselves, |exp(spread * output) -
    exp(spread * target)|, which is |(1 + guess) - (1 + truth)| / (1 + center price): the course's
    metric in units of the median price. Its optimum is the median, as l1's, but each item counts by
    its dollars, so the dear items, where most of the error is, pull hardest (on amazon-items that
    priced val level with l1 and left the dear items as far under: docs/results/history.md). `spread` is the scale's.
    bins: outputs are [batch, bins] logits over the histogram between `edges`; the cross-entropy
    against each target's Gaussian spread over the bins (`gaussian_bin_targets`), `sigma` bin widths wide."""
    if kind == "bins":
        if edges is None or outputs.dim() != 2 or outputs.shape[-1] != len(edges) - 1:
            raise PricetuneError("the bins loss needs [batch, bins] outputs and the bins' edges")
        edges = edges.to(outputs.device)
        spread_over = gaussian_bin_targets(targets.reshape(-1), edges, sigma * float(edges[1] - edges[0]))
        return -(spread_over * torch.log_softmax(outputs.float(), dim=-1)).sum(-1).mean()
    outputs, targets = outputs.float().reshape(-1), targets.float().reshape(-1)
    if kind == "huber":
        return F.huber_loss(outputs, targets, delta=delta)
    if kind == "dollars":
        outputs = outputs.clamp(max=MAX_STANDARD_OUTPUT / spread)
        return (torch.exp(spread * outputs) - torch.exp(spread * targets)).abs().mean()
    return F.l1_loss(outputs, targets)


# ------------------------------------------------------------------------------------------------
# Data


def tokenize_regression_rows(tokenizer, rows: list[dict], max_length: int, scale: PriceScale):
    """A `datasets.Dataset` of prompt ids (cut exactly as at inference) and standardised targets."""
    from .data import encode_prompts, map_batched

    def encode(batch: dict) -> dict:
        return {"input_ids": encode_prompts(tokenizer, batch["prompt"], max_length),
                "labels": [scale.target(p) for p in batch["price"]]}

    return map_batched(rows, ["prompt", "price"], encode, "tokenizing")


def restandardise(ds, old: PriceScale, new: PriceScale):
    """A tokenized dataset's targets, standardised by `new` instead of `old`."""
    return ds.map(lambda b: {"labels": [(old.center + old.scale * y - new.center) / new.scale for y in b["labels"]]},
                  batched=True, desc="restandardising targets")


class RegressionCollator:
    """Right-pads prompt ids; float labels. Right padding keeps every real token at the position it
    has alone, so a prompt's output does not depend on its batch."""

    def __init__(self, pad_token_id: int):
        self.pad = pad_token_id

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), self.pad, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        for i, f in enumerate(features):
            ids[i, : len(f["input_ids"])] = torch.tensor(f["input_ids"])
            mask[i, : len(f["input_ids"])] = 1
        batch = {"input_ids": ids, "attention_mask": mask}
        if "labels" in features[0]:
            batch["labels"] = torch.tensor([float(f["labels"]) for f in features])
        return batch


def head_outputs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                 pooling: str = "last") -> torch.Tensor:
    """The head's output for each row of a right-padded batch, shape [batch] ([batch, bins] for a
    histogram head): read at the last real token (`last`, transformers' own sequence-classification
    output) or on the mean of the final hidden states over the real tokens (`mean`)."""
    mask = attention_mask
    if attention_mask is not None and is_right_padded(attention_mask):
        # causal attention never lets a real token see the padding after it; transformers finds the
        # last real token from input_ids, so the mask changes nothing but the attention kernel
        attention_mask = None
    if pooling == "last":
        out = model(input_ids=input_ids, attention_mask=attention_mask).logits
    else:
        pooled = mean_over_tokens(final_states(model, input_ids, attention_mask),
                                  mask if mask is not None else torch.ones_like(input_ids))
        head = score_layer(model)
        out = head(pooled.to(next(head.parameters()).dtype))
    return out.reshape(-1) if out.shape[-1] == 1 else out


def final_states(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """The final, normed hidden states the head reads, [batch, seq, dim]. Through the model's own
    forward, and so through a DDP wrapper, which syncs gradients only for what its forward ran."""
    return model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True).hidden_states[-1]


def mean_over_tokens(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[batch, seq, dim] states averaged over the real tokens of each row (mask 1), in float32."""
    weights = mask.to(torch.float32).unsqueeze(-1)
    return (hidden.float() * weights).sum(1) / weights.sum(1)


@torch.inference_mode()
def layer_readouts(model, tokenizer, prompts: list[str], max_length: int, layers, last_token: bool = False,
                   batch_size: int = 32, progress: bool = True, desc: str = "reading the base"):
    """[n, k, hidden] float32 array, prompts in input order, encoded as training encodes them: for
    each of `layers` (1-based decoder layers) the mean over the prompt's tokens of that layer's hidden
    states, through the base's final norm as a base cut there would give them (the final layer's come
    normed); with `last_token`, first the final layer's state at the last prompt token (what
    transformers' sequence classification reads). `model`: a causal LM or its decoder."""
    import numpy as np

    collate = RegressionCollator(tokenizer.pad_token_id)
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
    device = next(decoder.parameters()).device
    layers = list(layers)
    n_layers = decoder.config.num_hidden_layers
    if not all(0 < k <= n_layers for k in layers):
        raise PricetuneError(f"layers {layers}: the base has {n_layers} decoder layers")

    def read(ids: list[list[int]]) -> list:
        batch = collate([{"input_ids": x} for x in ids])
        mask = batch["attention_mask"].to(device)
        # hidden_states: the embeddings, then each layer's output; the last one already normed
        states = decoder(input_ids=batch["input_ids"].to(device), output_hidden_states=True).hidden_states
        out = [states[-1][torch.arange(len(ids)), mask.sum(1) - 1].float()] if last_token else []
        out += [mean_over_tokens(states[k] if k == n_layers else decoder.norm(states[k]), mask) for k in layers]
        return list(torch.stack(out, 1).cpu().numpy())

    return np.stack(in_length_order(encode_prompts(tokenizer, prompts, max_length), batch_size, read, desc, progress))


def score_layer(model) -> torch.nn.Module:
    """The scalar head of a (DDP-wrapped, PEFT-wrapped or merged) sequence-classification model."""
    inner = getattr(model, "module", model)  # DistributedDataParallel
    if hasattr(inner, "get_base_model"):  # PEFT: `score` is its modules_to_save wrapper (the trained copy)
        inner = inner.get_base_model()
    return inner.score


# ------------------------------------------------------------------------------------------------
# A head that starts from the linear probe (regress_head_init: probe)

PROBE_ALPHAS = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0)


def ridge_on_log_price(train_x, train_prices, val_x, val_prices, alphas=PROBE_ALPHAS) -> dict:
    """Ridge regression of log(1 + price) on standardised features, the alpha with the lowest val
    MAE in dollars. Returns val_mae, alpha, val_mae_by_alpha, and the fit on the raw features:
    log(1 + price) ~ features @ coef + intercept."""
    import numpy as np
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler

    y = np.log1p(np.asarray(train_prices, dtype=float))
    truth = np.asarray(val_prices, dtype=float)
    standard = StandardScaler().fit(train_x)
    fits, by_alpha = {}, {}
    for alpha in alphas:
        fits[alpha] = Ridge(alpha=alpha).fit(standard.transform(train_x), y)
        guess = np.clip(np.expm1(fits[alpha].predict(standard.transform(val_x))), 0.0, None)
        by_alpha[alpha] = float(np.mean(np.abs(guess - truth)))
    best = min(by_alpha, key=by_alpha.get)
    coef = fits[best].coef_ / standard.scale_  # back to the raw features the head will read
    intercept = float(fits[best].intercept_ - coef @ standard.mean_)
    return {"val_mae": by_alpha[best], "alpha": best, "val_mae_by_alpha": by_alpha, "coef": coef, "intercept": intercept}


def pooled_features(model, tokenizer, prompts: list[str], max_length: int, pooling: str, batch_size: int = 32,
                    progress: bool = True):
    """[n, dim] float32 array: what the head reads for each prompt (already in the course format)."""
    last = pooling == "last"
    layers = [] if last else [model.config.num_hidden_layers]
    return layer_readouts(model, tokenizer, prompts, max_length, layers, last_token=last, batch_size=batch_size,
                          progress=progress, desc="features for the head")[:, 0]


def init_head_from_probe(model, tokenizer, train_rows: list[dict], val_rows: list[dict], scale: PriceScale,
                         max_length: int, batch_size: int = 32, progress: bool = True) -> tuple[PriceScale, dict]:
    """Sets the (not yet LoRA-wrapped) model's head to a ridge probe fit on its train features, and
    returns the price scale that goes with it, plus the probe's figures.

    The head has no bias (transformers' `score`), so the ridge intercept becomes the scale's center:
    price = expm1(intercept + scale * output), with the head's weight coef / scale. Training targets
    must then be standardised by the returned scale."""
    if not val_rows:
        raise PricetuneError("regress_head_init: probe chooses its ridge alpha on the val split; this dataset has none")
    if scale.bins > 1:
        raise PricetuneError("regress_head_init: probe fits a single output; a histogram head (regress_loss: bins) starts at random")
    was_training = model.training
    model.eval()
    feats = {name: pooled_features(model, tokenizer, [r["prompt"] for r in rows], max_length, scale.pooling,
                                   batch_size, progress)
             for name, rows in (("train", train_rows), ("val", val_rows))}
    model.train(was_training)
    fit = ridge_on_log_price(feats["train"], [r["price"] for r in train_rows], feats["val"], [r["price"] for r in val_rows])
    head = score_layer(model)
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(fit["coef"] / scale.scale, dtype=head.weight.dtype).reshape(head.weight.shape))
    figures = {"alpha": fit["alpha"], "val_mae": fit["val_mae"], "val_mae_by_alpha": fit["val_mae_by_alpha"],
               "train_rows": len(train_rows), "val_rows": len(val_rows)}
    return replace(scale, center=fit["intercept"]), figures


# ------------------------------------------------------------------------------------------------
# Inference


@torch.inference_mode()
def regress_prices(model, tokenizer, prompts: list[str], scale: PriceScale, max_length: int = 128,
                   batch_size: int = 16, progress: bool = False) -> list[tuple[str, float | None]]:
    """(text, price) for each prompt, in input order: one forward pass per batch, no decoding."""
    device = next(model.parameters()).device
    collate = RegressionCollator(tokenizer.pad_token_id)

    def run_batch(ids: list[list[int]]) -> list[tuple[str, float | None]]:
        batch = collate([{"input_ids": x} for x in ids])
        out = head_outputs(model, batch["input_ids"].to(device), batch["attention_mask"].to(device), scale.pooling)
        return [(f"{p:.2f}", float(p)) if math.isfinite(p) else ("", None) for p in scale.price(out).tolist()]

    encoded = encode_prompts(tokenizer, [make_prompt(p) for p in prompts], max_length)
    return in_length_order(encoded, batch_size, run_batch, "pricing (regress)", progress)
