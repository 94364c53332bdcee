"""Pure price logic: parse a model's answer, colour a guess, and score a list of guesses.

    >>> parse_price("$1,299.99")
    1299.99
    >>> parse_price("about 20 dollars")
    20.0
    >>> colour(100.0, 85.0)
    'green'

No model, no I/O: every function here is tested against hand computations.
"""

from __future__ import annotations

import math
import re
import statistics

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
GREEN, ORANGE, RED = "green", "orange", "red"


def parse_price(text: str | float | int | None) -> float | None:
    """The first number in a model's answer ("$1,299.99", "12.99\\n\\nWhat", "about 20 dollars").

    Returns None when there is no number: a failed prediction, counted on its own.
    """
    if text is None or isinstance(text, bool):
        return None
    if isinstance(text, (int, float)):
        return float(text) if math.isfinite(text) else None
    m = _NUMBER.search(text)
    if not m:
        return None
    raw = m.group(0)
    # "1,299.99" is a thousands separator; "12,5" (a decimal comma) is read as 125, as the course does
    value = float(raw.replace(",", ""))
    return value if math.isfinite(value) else None


def colour(truth: float, guess: float) -> str:
    """The course's colours: green if within $40 or 20%, orange within $80 or 40%, else red."""
    error = abs(guess - truth)
    relative = error / truth if truth > 0 else (0.0 if error == 0 else math.inf)
    if error < 40 or relative < 0.2:
        return GREEN
    if error < 80 or relative < 0.4:
        return ORANGE
    return RED


def running_mean_ci(errors: list[float], z: float = 1.96) -> tuple[list[float], list[float]]:
    """Running mean of absolute errors and the half-width of its 95% interval after each item."""
    means, halves = [], []
    total = 0.0
    for i, e in enumerate(errors, start=1):
        total += e
        means.append(total / i)
        halves.append(z * statistics.stdev(errors[:i]) / math.sqrt(i) if i > 1 else 0.0)
    return means, halves


def compute_metrics(truths: list[float], guesses: list[float | None]) -> dict:
    """All the evaluation metrics. A failed parse (None) counts as a guess of 0 in the errors, as red
    in the colours, and in `failed`; negative guesses are clipped to 0 for RMSLE only.

    `mape` is a percentage; `hit_*` are fractions of n; `mae_ci95` is the half-width of the 95%
    confidence interval of the mean absolute error (normal approximation, sample std).
    """
    n = len(truths)
    if n == 0 or n != len(guesses):
        raise ValueError(f"need as many guesses as truths, and at least one (got {n} and {len(guesses)})")
    failed = sum(g is None for g in guesses)
    g = [0.0 if x is None else float(x) for x in guesses]
    t = [float(x) for x in truths]
    errors = [abs(a - b) for a, b in zip(g, t)]
    squared = [e * e for e in errors]
    log_sq = [(math.log1p(max(a, 0.0)) - math.log1p(b)) ** 2 for a, b in zip(g, t)]
    mean_t = sum(t) / n
    sst = sum((x - mean_t) ** 2 for x in t)
    positive = [(e, b) for e, b in zip(errors, t) if b > 0]
    # a failed parse is red whatever the truth ($0 is not "close" to a cheap item)
    colours = [RED if raw is None else colour(b, a) for raw, a, b in zip(guesses, g, t)]
    mse = sum(squared) / n
    return {
        "n": n,
        "failed": failed,
        "mae": sum(errors) / n,
        "median_ae": statistics.median(errors),
        "mse": mse,
        "rmse": math.sqrt(mse),
        "rmsle": math.sqrt(sum(log_sq) / n),
        "r2": (1 - sum(squared) / sst) if sst > 0 else None,
        "mape": 100 * sum(e / b for e, b in positive) / len(positive) if positive else None,
        "hit_green": colours.count(GREEN) / n,
        "hit_orange": colours.count(ORANGE) / n,
        "hit_red": colours.count(RED) / n,
        "mae_ci95": 1.96 * statistics.stdev(errors) / math.sqrt(n) if n > 1 else 0.0,
    }


def paired_difference(truths: list[float], guesses: list[float | None], reference: list[float | None],
                      z: float = 1.96) -> dict:
    """A model against a reference on the same items: the mean of the per-item differences of their
    absolute errors (negative: the model is closer), the half-width of its 95% interval, and the share
    of items each is closer on. Pairing removes what the items share (a dear item is hard for both),
    so this interval is far narrower than the two MAEs' own. A failed parse (None) counts as 0.
    """
    n = len(truths)
    if n < 2 or not n == len(guesses) == len(reference):
        raise ValueError(f"need two lists of guesses as long as the truths, n >= 2 (got {n}, {len(guesses)}, "
                         f"{len(reference)})")
    diffs = [abs((a or 0.0) - t) - abs((b or 0.0) - t) for t, a, b in zip(truths, guesses, reference)]
    return {
        "n": n,
        "mae_diff": statistics.fmean(diffs),
        "diff_ci95": z * statistics.stdev(diffs) / math.sqrt(n),
        "closer": sum(d < 0 for d in diffs) / n,
        "further": sum(d > 0 for d in diffs) / n,
    }
