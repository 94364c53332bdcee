"""How a regress head's output becomes a price, and the loss it trains with.

    from pricetune.regress import PriceScale
    scale = PriceScale.fit([19.99, 64.0, 250.0], loss="huber", delta=2.0)
    scale.target(64.0)                          # the standardised log price the head learns
    scale.price(torch.tensor([0.0]))            # the training median back in dollars
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import PricetuneError

HEAD_FILE = "regression_head.json"
LOSSES = ("l1", "huber")
POOLINGS = ("last", "mean")
HUBER_DELTA = 1.0  # the default, in standardised units: L1 beyond one spread, squared inside
# Fields of files written by earlier versions for heads this one no longer builds (a histogram head, a
# base cut to its first layers); the values of a plain scalar head on every layer are read and dropped
RETIRED_FIELDS = {"layers": None, "bins": 1, "low": None, "high": None, "sigma": None}


@dataclass(frozen=True)
class PriceScale:
    """How the head's output maps to a price: price = expm1(center + scale * output)."""

    center: float
    scale: float
    loss: str = "l1"
    pooling: str = "last"  # which hidden state the head reads: the last prompt token's, or the mean
    delta: float | None = None  # huber: where the loss turns from squared to absolute, in standardised units

    @classmethod
    def fit(cls, prices: list[float], loss: str = "l1", pooling: str = "last", delta: float = HUBER_DELTA) -> PriceScale:
        logs = [math.log1p(p) for p in prices]
        if not logs:
            raise PricetuneError("the regress objective needs training prices")
        if loss not in LOSSES:
            raise PricetuneError(f"regress loss {loss!r} is not one of {', '.join(LOSSES)}")
        if loss == "huber" and not delta > 0:
            raise PricetuneError(f"the huber loss needs a delta > 0 standardised units (got {delta})")
        center = statistics.median(logs)
        # mean absolute deviation from the median: the spread L1 sees (never 0: one price is allowed)
        scale = statistics.fmean(abs(x - center) for x in logs) or 1.0
        return cls(center=center, scale=scale, loss=loss, pooling=pooling, delta=delta if loss == "huber" else None)

    def target(self, price: float) -> float:
        return (math.log1p(price) - self.center) / self.scale

    def price(self, output: torch.Tensor) -> torch.Tensor:
        """Prices from [batch] head outputs (standardised log prices)."""
        return torch.expm1(self.center + self.scale * output.float()).clamp(min=0.0)

    def loss_of(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return regression_loss(outputs, targets, self.loss, self.delta or HUBER_DELTA)

    def save(self, directory: str | Path) -> None:
        payload = {"formula": "price = expm1(center + scale * model_output)", **asdict(self)}
        (Path(directory) / HEAD_FILE).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> PriceScale:
        path = Path(directory) / HEAD_FILE
        if not path.is_file():
            raise PricetuneError(f"{directory} is a regress run without {HEAD_FILE}; it cannot turn outputs into prices")
        data = json.loads(path.read_text(encoding="utf-8"))
        for key, plain in RETIRED_FIELDS.items():
            if data.get(key, plain) != plain:
                raise PricetuneError(
                    f"{path}: {key} {data[key]!r} is a head this version no longer builds (histogram heads and cut "
                    "bases lost on val: docs/RESULTS.md); price the run with the pricetune version that trained it")
        pooling = data.get("pooling", "last")  # files written before pooling existed read the last token
        if pooling not in POOLINGS:
            raise PricetuneError(f"{path}: pooling {pooling!r} is not one of {', '.join(POOLINGS)}")
        loss = data.get("loss", "l1")
        if loss not in LOSSES:
            raise PricetuneError(f"{path}: loss {loss!r} is not one of {', '.join(LOSSES)}; price the run with the "
                                 "pricetune version that trained it")
        delta = data.get("delta")
        if loss == "huber" and delta is not None and not (isinstance(delta, (int, float)) and delta > 0):
            raise PricetuneError(f"{path}: huber delta {delta!r} is not a number > 0")
        return cls(center=float(data["center"]), scale=float(data["scale"]), loss=loss, pooling=pooling,
                   # files written before delta was saved trained with the default
                   delta=(float(delta) if delta is not None else HUBER_DELTA) if loss == "huber" else None)


def regression_loss(outputs: torch.Tensor, targets: torch.Tensor, kind: str = "l1",
                    delta: float = HUBER_DELTA) -> torch.Tensor:
    """The loss between head outputs and standardised log-price targets (`PriceScale.target`).

    l1: mean absolute distance in standardised log price. huber: the same, squared within `delta`
    spreads (torch's huber_loss: 0.5 r^2 inside, delta * (|r| - 0.5 delta) beyond)."""
    outputs, targets = outputs.float().reshape(-1), targets.float().reshape(-1)
    if kind == "huber":
        return F.huber_loss(outputs, targets, delta=delta)
    return F.l1_loss(outputs, targets)
