"""Where an evaluation's prices come from: predictions made elsewhere, a baseline, a run, an ensemble.
Each source returns a `Scored`: the label, the model's texts and prices, and the settings to record."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .. import distributed as dist
from ..errors import PricetuneError
from ..inference.kept import model_key, partial_path, price_keeping
from ..metrics import parse_price
from .report import item_title


def read_predictions(path: Path) -> tuple[list[str], list[float], list[str], list[float | None]]:
    """A jsonl of predictions made elsewhere: `prediction` (text or number) and `price` (or `completion`)."""
    from ..data import completion_price, iter_jsonl

    titles, truths, texts, guesses = [], [], [], []
    for n, (where, row) in enumerate(iter_jsonl(path), start=1):
        if not isinstance(row, dict) or "prediction" not in row:
            raise PricetuneError(f"{where}: each line needs a 'prediction' (text or number)")
        truth = row.get("price", row.get("completion"))
        try:
            truths.append(completion_price(truth))
        except ValueError as e:
            raise PricetuneError(f"{where}: the truth ('price', else 'completion') is unusable: {e}") from None
        text = row["prediction"]
        texts.append(text if isinstance(text, str) else json.dumps(text))
        guesses.append(parse_price(text))
        titles.append(str(row.get("title") or item_title(row.get("prompt", "")) or f"item {n}"))
    if not truths:
        raise PricetuneError(f"{path}: no predictions")
    return titles, truths, texts, guesses


@dataclass
class Scored:
    """What one evaluation source produced for the items."""

    label: str
    texts: list[str]
    guesses: list[float | None]
    settings: dict
    llm_only: bool
    kept: Path | None = None  # where its prices were kept as they came, to go once the results are written


KeepAt = Callable[[str, "str | None"], Path]  # (label, decode) -> the results' place, without a time in its name


def split_items(ns, dataset: str):
    from ..data import load_rows

    splits, _ = load_rows(dataset, ns.on_bad_rows)  # validated before any model is loaded
    if not splits.get(ns.split):
        raise PricetuneError(f"dataset {dataset} has no {ns.split} split (found: {', '.join(splits)})")
    return splits, splits[ns.split][: ns.limit or None]


def from_baseline(ns, splits: dict, items: list[dict]) -> Scored:
    from ..baselines import FITTED, constant
    from ..data import take_train

    splits = {**splits, "train": take_train(splits.get("train", []), ns.train_size, ns.train_sample, ns.seed)}
    drawn = {"train_rows": len(splits["train"]), "train_sample": ns.train_sample if ns.train_size else "all",
             "seed": ns.seed}
    if ns.train_on_val:
        if ns.split == "val":
            raise PricetuneError("--train-on-val fits the baseline on the val rows; score it on test")
        if not splits.get("val"):
            raise PricetuneError("--train-on-val needs a val split to train on; the dataset has none")
    if ns.baseline in FITTED:
        model = FITTED[ns.baseline].fit(splits["train"], splits.get("val", []), refit=ns.train_on_val, progress=True)
        guesses = model.predict([r["prompt"] for r in items])
        return Scored(model.LABEL + (" (refit on train + val)" if ns.train_on_val else ""),
                      [f"{g:.2f}" for g in guesses], guesses,
                      {"baseline": ns.baseline, **model.settings(), "train_on_val": ns.train_on_val, **drawn}, False)
    rows, which = (splits.get("train", []) + splits["val"], "train + val") if ns.train_on_val else \
        (splits.get("train", []), "train")
    value = constant(rows, ns.baseline)
    return Scored(f"constant {ns.baseline} {value:,.2f}", [f"{value:.2f}"] * len(items), [value] * len(items),
                  {"baseline": f"{ns.baseline} of {len(rows)} {which} prices = {value:.2f}", **drawn}, False)


def from_model(ns, run_dir: str | None, items: list[dict], keep_at: KeepAt) -> Scored:
    """A run's (or adapter's, or base's) prices, kept as they come: an interrupted evaluation's same
    command prices only the rest."""
    from ..inference import load_from_args

    ns.run = run_dir
    lm = load_from_args(ns)
    decode = ns.decode if lm.objective == "generate" else None
    kept = keep_at(lm.label, decode)

    def price(texts: list[str]) -> list:
        # under a launcher each process prices its share; every item's draws are seeded by the item
        # itself, so the split changes no price
        return dist.map_shared(lambda share: lm.price(share, ns.decode, ns.batch_size, ns.samples), texts)

    out = price_keeping([r["prompt"] for r in items], price, kept, model_key(ns))
    settings = dict(model=lm.label, objective=lm.objective, max_length=lm.max_length, batch_size=ns.batch_size,
                    adapter_merged=lm.merged, neighbours=lm.neighbours.k if lm.neighbours is not None else 0)
    label = lm.label
    if lm.objective == "generate":
        settings["decode"] = ns.decode
        label += "" if ns.decode == "greedy" else f" ({ns.decode})"
        if ns.decode == "median":
            settings["samples"] = ns.samples
    return Scored(label, [t for t, _ in out], [p for _, p in out], settings,
                  llm_only=not ns.no_adapter and lm.neighbours is None, kept=partial_path(kept))


def shown(spec: str) -> str:
    """A member as a results file names it: a run by its path from the working directory, or by its
    name, never by this machine's absolute path (an ensemble loads its runs by absolute paths)."""
    path = Path(spec)
    if not path.is_absolute():
        return spec
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return path.name


def from_ensemble(ns, ens, items: list[dict], keep_at: KeepAt) -> Scored:
    """`ens`: the loaded `Ensemble` named by `--ensemble`; its prices kept as they come, as a run's."""
    label = f"ensemble {Path(ns.ensemble).name}"
    kept = keep_at(label, None)
    predictors = ens.predictors()  # loaded once, for every part

    def price(texts: list[str]) -> list:
        return [(None, g) for g in dist.map_shared(lambda share: ens.predict(share, predictors), texts)]

    guesses = [g for _, g in price_keeping([r["prompt"] for r in items], price, kept, model_key(ns))]
    members = ", ".join(f"{shown(m.spec)} x{w:.2f}" for m, w in zip(ens.members, ens.weights))
    if ens.intercept:
        members += f", intercept {ens.intercept:+.3f}"
    return Scored(label, ["" if g is None else f"{g:.2f}" for g in guesses], guesses,
                  {"ensemble": str(ns.ensemble), "members": members}, ens.llm_only, kept=partial_path(kept))
