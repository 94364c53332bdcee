"""Price ranges with a promise: split conformal prediction on log price, calibrated on the val split.

    pricetune calibrate runs/<run>                       # prices val, writes runs/<run>/calibration.json
    pricetune predict --run runs/<run> --interval 0.8 "Title: ..."   # $64.00 (80%: $41.20 - $99.10)
    pricetune evaluate runs/<run> --limit 0              # + the interval's coverage and width on test

For each val item, the error |log(1 + price) - log(1 + guess)|; an interval at coverage c around a new
guess g is log(1 + g) -/+ the ceil((n + 1) c)-th smallest of the n val errors. If val and new items
are exchangeable, at least a share c of new items fall inside (split conformal prediction; Vovk et
al., Lei et al. 2018). Error grows with price, so the val items are cut into price bands by their
*guessed* price (known for a new item too) and each band gets its own errors (Mondrian conformal):
the promise then holds within each band, not only on average. Pure functions; no model here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

CALIBRATION_FILE = "calibration.json"
MIN_PER_BAND = 100  # fewer val items than this in a band: too few to promise much (an 80% interval
# from 100 errors is the 81st smallest; from 20 it would be the 17th, and far less steady)


def band_edges(guesses: list[float], bands: int) -> list[float]:
    """Inner edges cutting the guesses into `bands` groups of (nearly) equal size."""
    ordered = sorted(guesses)
    return [ordered[len(ordered) * b // bands] for b in range(1, bands)]


def band_of(guess: float, edges: list[float]) -> int:
    return sum(guess >= e for e in edges)


def fit(truths: list[float], guesses: list[float | None], bands: int | None = None) -> dict:
    """The calibration: band edges and each band's sorted log errors. `bands`: None picks as many as
    keep MIN_PER_BAND items each, at most 3. An unpriced guess is left out (it gets no range either)."""
    pairs = [(t, g) for t, g in zip(truths, guesses, strict=True) if g is not None]
    if len(pairs) < 10:
        raise ValueError(f"calibrating needs at least 10 priced val items (got {len(pairs)})")
    if bands is None:
        bands = max(1, min(3, len(pairs) // MIN_PER_BAND))
    # guesses that tie (a model that says $12 for many items) can leave a band thin or empty: fewer bands
    for b in range(bands, 0, -1):
        edges = sorted(set(band_edges([g for _, g in pairs], b)))
        errors: list[list[float]] = [[] for _ in range(len(edges) + 1)]
        for t, g in pairs:
            errors[band_of(g, edges)].append(abs(math.log1p(max(t, 0.0)) - math.log1p(max(g, 0.0))))
        if b == 1 or min(map(len, errors)) >= len(pairs) // (2 * b):
            break
    return {"method": "split conformal on log(1 + price), bands by guessed price", "items": len(pairs),
            "edges": edges, "errors": [sorted(e) for e in errors]}


def half_width(errors: list[float], coverage: float) -> float:
    """The conformal quantile: the ceil((n + 1) c)-th smallest error; infinite when n is too small to
    promise c (the range is then everything)."""
    if not 0 < coverage < 1:
        raise ValueError(f"coverage must be between 0 and 1 (got {coverage})")
    k = math.ceil((len(errors) + 1) * coverage)
    return errors[k - 1] if k <= len(errors) else math.inf


def interval(guess: float | None, calibration: dict, coverage: float = 0.8) -> tuple[float, float] | None:
    """(low, high) around `guess` at `coverage`; None for no guess."""
    if guess is None:
        return None
    q = half_width(calibration["errors"][band_of(guess, calibration["edges"])], coverage)
    centre = math.log1p(max(guess, 0.0))
    return max(0.0, math.expm1(centre - q)), math.expm1(centre + q) if q < math.inf else math.inf


def coverage_report(truths: list[float], guesses: list[float | None], calibration: dict,
                    coverage: float = 0.8) -> dict:
    """How often the ranges held the truth, and how wide they were, overall and per price band (the
    bands of the calibration, by guessed price)."""
    rows = []
    for t, g in zip(truths, guesses, strict=True):
        r = interval(g, calibration, coverage)
        if r is not None:
            rows.append((band_of(g, calibration["edges"]), r[0] <= t <= r[1], r[1] - r[0]))

    def summary(part):
        # a band with too few val errors to promise the coverage gives an unbounded range: counted, not averaged
        finite = [w for _, _, w in part if w < math.inf]
        return {"items": len(part), "covered": sum(c for _, c, _ in part) / len(part) if part else None,
                "mean_width": sum(finite) / len(finite) if finite else None, "unbounded": len(part) - len(finite)}

    bands = [summary([r for r in rows if r[0] == b]) for b in range(len(calibration["errors"]))]
    return {"coverage_asked": coverage, **summary(rows), "bands": bands, "band_edges": calibration["edges"]}


def save(folder: str | Path, calibration: dict) -> Path:
    path = Path(folder) / CALIBRATION_FILE
    path.write_text(json.dumps(calibration) + "\n", encoding="utf-8")
    return path


def calibrate_command(folder, ensemble: bool = False, decode: str | None = None, dataset: str | None = None) -> str:
    """The command that calibrates `folder` (a run, checkpoint or ensemble), for the messages that need it."""
    return (f"pricetune calibrate {'--ensemble ' if ensemble else ''}{folder or 'RUN'}"
            + (f" --decode {decode}" if decode else "") + (f" --dataset {dataset}" if dataset else ""))


def load(folder: str | Path, decode: str | None = None) -> dict | None:
    """The folder's calibration, or None when it has none. `decode`: how the model will price; a
    calibration made with another decoding is refused (its errors are another model's), naming the fix."""
    from .errors import PricetuneError

    path = Path(folder) / CALIBRATION_FILE
    if not path.is_file():
        return None
    calibration = json.loads(path.read_text(encoding="utf-8"))
    made_with = calibration.get("decode", "greedy")  # calibrate decoded greedily before it recorded how
    if decode is not None and made_with != decode:
        raise PricetuneError(f"{path} was calibrated on prices decoded with --decode {made_with}, so its ranges do not "
                             f"fit --decode {decode}: run `{calibrate_command(folder, decode=decode)}` (or price "
                             f"with --decode {made_with})")
    return calibration


def applies_to(calibration: dict, val_fingerprint: str | None) -> bool:
    """Whether a calibration was made on this val split (by its rows' fingerprint; True when either is unknown)."""
    made_on = calibration.get("val_fingerprint")
    return made_on is None or val_fingerprint is None or made_on == val_fingerprint
