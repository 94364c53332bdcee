"""What the baselines share: the item text they read, the price they predict, constants."""

from __future__ import annotations

import math
import statistics

from ..errors import PricetuneError


def item_text(prompt: str) -> str:
    """The item part of a prompt: the question line and the closing "Price is $" carry no signal."""
    from ..data import PRICE_TRAILER, QUESTION

    return prompt.removeprefix(QUESTION).removesuffix(PRICE_TRAILER).strip()


def mae(truths: list[float], guesses: list[float]) -> float:
    return statistics.fmean(abs(a - b) for a, b in zip(truths, guesses))


def prices_from_logs(values) -> list[float]:
    """Predictions of log(1 + price) back to prices, never below $0."""
    return [max(0.0, math.expm1(float(v))) for v in values]


def val_mae_record(name: str, scores: dict, fmt: str = "") -> dict:
    """Every setting's val MAE as one line of an evaluation's settings.json (`val_mae_by_<name>`)."""
    return {f"val_mae_by_{name}": ", ".join(f"{s:{fmt}}: ${m:,.2f}" for s, m in scores.items())}


def constant(train: list[dict], how: str) -> float:
    prices = [r["price"] for r in train]
    if not prices:
        raise PricetuneError("a constant baseline needs a train split")
    return statistics.mean(prices) if how == "mean" else statistics.median(prices)
