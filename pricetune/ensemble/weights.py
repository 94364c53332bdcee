"""The combination itself: a weighted mean of log(1 + price), weights on a simplex grid fit to one split.
Pure functions, no model: `fit_weights` picks the grid point with the lowest MAE on the prices given."""

from __future__ import annotations

import math

GRID = 20


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
