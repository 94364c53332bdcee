"""The combination itself, fit to one split: pure functions, no model.

Two ways to combine (`pricetune ensemble --combine`):

- `weights` (the default): a weighted mean of log(1 + price), the weights on a simplex grid (non-negative,
  summing to 1); `fit_weights` picks the grid point with the lowest MAE on the prices given.
- `stack`: a median regression of log(1 + truth) on the members' log(1 + price), with an intercept
  (scikit-learn's `QuantileRegressor`); the weights may take any sign and need not sum to 1, so the
  combination can spread its guesses wider than any mean of the members. Means of regressors pull every
  guess towards the middle, and dear items pay for it most.

`cross_validated_mae` scores a way of combining on items its fit did not see: the in-sample val MAE
always favours the way with more free parameters, so compare combinations on this figure.
"""

from __future__ import annotations

import math

from ..inference.members import combine

GRID = 20
METHODS = {
    "weights": "weighted mean of log(1 + price), weights on a 1/20 simplex grid, lowest val MAE",
    "stack": "median regression of log(1 + price) on the members' log(1 + price): free weights and an intercept "
             "(scikit-learn QuantileRegressor, quantile 0.5, no penalty)",
}


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


def mae_of(truths: list[float], guesses: list[float | None]) -> float:
    """Mean absolute error; no guess counts as $0, as everywhere in pricetune."""
    return sum(abs((g if g is not None else 0.0) - t) for g, t in zip(guesses, truths, strict=True)) / len(truths)


def fit_weights(truths: list[float], member_prices: list[list[float | None]],
                chunk: int = 4096) -> tuple[list[float], float]:
    """The simplex grid point with the lowest MAE against `truths` (the val split), and that MAE:
    `combine` for every grid point at once (a member without a price for an item gives its weight
    to the others; no price at all counts as $0). Seven members make 230,230 points."""
    return fit_weights_each(truths, member_prices, [range(len(truths))], chunk)[0]


def fit_weights_each(truths: list[float], member_prices: list[list[float | None]], subsets: list,
                     chunk: int = 4096) -> list[tuple[list[float], float]]:
    """`fit_weights` on each subset of the items (a list of item indices), all in one pass over the
    grid: every point prices every item once, and each subset's MAE is a sum over its items. The
    cross-validation's 50 fits cost about one (seven members: 230,230 points x 1,000 items)."""
    import numpy as np

    grid = np.array(simplex_grid(len(member_prices)))
    priced = np.array([[p is not None for p in prices] for prices in member_prices], dtype=float)
    logs = np.array([[math.log1p(max(p, 0.0)) if p is not None else 0.0 for p in prices]
                     for prices in member_prices])
    truth = np.asarray(truths, dtype=float)
    share = np.zeros((len(truths), len(subsets)))  # column j: 1 / |subset j| on its items, so E @ share is the MAE
    for j, items in enumerate(subsets):
        share[list(items), j] = 1.0 / len(items)
    maes = np.empty((len(grid), len(subsets)))
    for at in range(0, len(grid), chunk):
        w = grid[at:at + chunk]
        total = w @ priced
        with np.errstate(invalid="ignore", divide="ignore"):
            guess = np.where(total > 0, np.expm1((w @ (logs * priced)) / total), 0.0)
        maes[at:at + chunk] = np.abs(guess - truth) @ share
    out = []
    for column in maes.T:
        best = int(np.flatnonzero(column <= column.min() + 1e-12)[0])  # ties: the earlier grid point
        out.append(([float(x) for x in grid[best]], float(column[best])))
    return out


def fit_stack(truths: list[float], member_prices: list[list[float | None]]) -> tuple[list[float], float, float]:
    """Weights and intercept of the median regression of log(1 + truth) on the members' log(1 + price),
    fit on the items every member priced; and the MAE of `combine` with them over all the items. The
    median, as the course scores absolute error: on log price it is the median in dollars too."""
    import numpy as np
    from sklearn.linear_model import QuantileRegressor

    rows = [i for i in range(len(truths)) if all(prices[i] is not None for prices in member_prices)]
    if len(rows) <= len(member_prices) + 1:
        raise ValueError(f"stacking {len(member_prices)} members needs more than {len(member_prices) + 1} items "
                         f"that every member priced; {len(rows)} were")
    x = np.log1p(np.maximum(np.array([[prices[i] for prices in member_prices] for i in rows], dtype=float), 0.0))
    y = np.log1p(np.maximum(np.array([truths[i] for i in rows], dtype=float), 0.0))
    fit = QuantileRegressor(quantile=0.5, alpha=0.0, solver="highs").fit(x, y)
    weights, intercept = [float(w) for w in fit.coef_], float(fit.intercept_)
    return weights, intercept, mae_of(truths, combine(weights, member_prices, intercept))


def fit_combination(truths: list[float], member_prices: list[list[float | None]],
                    method: str = "weights") -> tuple[list[float], float, float]:
    """(weights, intercept, in-sample MAE) of `method` (a key of METHODS) fit to these items."""
    if method == "weights":
        weights, mae = fit_weights(truths, member_prices)
        return weights, 0.0, mae
    if method == "stack":
        return fit_stack(truths, member_prices)
    raise ValueError(f"unknown combination {method!r}; choose one of {', '.join(METHODS)}")


def out_of_fold(truths: list[float], member_prices: list[list[float | None]], method: str = "weights",
                folds: int = 5, repeats: int = 10, seed: int = 0) -> list[list[float | None]]:
    """`method` on items its fit did not see: for each of `repeats` random cuts of the items into
    `folds`, every item priced by the combination fit on the other folds. One list of guesses per cut;
    the same `seed` gives the same cuts, so two combinations' lists pair item by item."""
    import numpy as np

    rng = np.random.RandomState(seed)
    n = len(truths)
    held_out = [[int(i) for i in held] for _ in range(repeats) for held in np.array_split(rng.permutation(n), folds)]
    kept = [sorted(set(range(n)) - set(held)) for held in held_out]
    if method == "weights":  # every fold's fit in one pass over the grid
        fits = [(weights, 0.0) for weights, _ in fit_weights_each(truths, member_prices, kept)]
    else:
        fits = [fit_combination([truths[i] for i in items], [[p[i] for i in items] for p in member_prices], method)[:2]
                for items in kept]
    folds_fit = list(zip(held_out, fits))
    out = []
    for cut in range(repeats):
        guesses: list[float | None] = [None] * n
        for held, (weights, intercept) in folds_fit[cut * folds:(cut + 1) * folds]:
            for i, g in zip(held, combine(weights, [[p[i] for i in held] for p in member_prices], intercept)):
                guesses[i] = g
        out.append(guesses)
    return out


def cross_validated_mae(truths: list[float], member_prices: list[list[float | None]], method: str = "weights",
                        folds: int = 5, repeats: int = 10, seed: int = 0) -> float:
    """The mean MAE of `out_of_fold` guesses over the cuts (one cut's figure moves by about a dollar on
    255 items with the cut alone): compare ways of combining on this, not the in-sample MAE."""
    runs = out_of_fold(truths, member_prices, method, folds, repeats, seed)
    return float(sum(mae_of(truths, g) for g in runs) / len(runs))
