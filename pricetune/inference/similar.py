"""Look-alike items: the training items most like a description, with their prices, so a user sees
why a price is what it is (the course's final pricer shows its model the same kind of neighbours).

    pricetune predict --run runs/x --similar 3 "Title: USB-C cable, 2 m"
    pricetune serve --run runs/x --similar 5    # the API's "similar" field and the page's section

    pricer = Pricer.from_run("runs/x")
    pricer.similar(["Title: USB-C cable, 2 m"], k=3)   # [[LookAlike(text=..., price=..., similarity=...), ...]]

Similarity is the cosine of the TF-IDF features the baselines and the neighbours index use
(`baselines.neighbours`). The items are the ones the model trained on: a run trained with neighbours'
prices carries them (`neighbours.json`); any other run, or an ensemble, reads them again from the
dataset its config names (the same rows: `train_size`, `train_sample`, `seed`, and val too for a
refit), so that dataset must be at hand. The texts shown are the training data's own: serve this
only where that data may be shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..baselines.neighbours import INDEX_FILE, NeighbourIndex
from ..errors import PricetuneError

MAX_SIMILAR = 20  # per description: a look at the evidence, not a search engine


@dataclass(frozen=True)
class LookAlike:
    text: str  # the item text as the training data held it
    price: float
    similarity: float  # TF-IDF cosine, 0 to 1


def check_similar_count(k: int) -> int:
    if not 0 <= k <= MAX_SIMILAR:
        raise PricetuneError(f"similar must be between 0 and {MAX_SIMILAR} items (got {k})")
    return k


def training_rows(dataset: str, train_size: int | None = None, train_sample: str = "first", seed: int = 42,
                  with_val: bool = False, val_size: int = 0) -> list[dict]:
    """The rows a run trained on, read again from its dataset."""
    from ..data import load_splits

    splits, _ = load_splits(dataset, val_size=val_size, train_size=train_size, on_bad_rows="skip",
                            train_sample=train_sample, seed=seed)
    return splits["train"] + (splits.get("val", [])[:val_size] if with_val else [])


def index_of_run(run_dir: str | Path) -> NeighbourIndex:
    """The items a run trained on: its own neighbours.json, else its dataset's training rows."""
    from ..config import load_run_config

    run_dir = Path(run_dir)
    if (run_dir / INDEX_FILE).is_file():
        return NeighbourIndex.load(run_dir / INDEX_FILE)
    cfg = load_run_config(run_dir)
    try:
        rows = training_rows(cfg.dataset, cfg.train_size, cfg.train_sample, cfg.seed, cfg.train_on_val, cfg.val_size)
    except PricetuneError as e:
        raise PricetuneError(f"look-alike items need the data {run_dir} trained on, and it could not be read: {e}") from None
    return NeighbourIndex.build(rows, k=1)


def index_of_ensemble(record: dict) -> NeighbourIndex:
    """The items an ensemble's classical members fit on: its dataset's train rows (train + val for a refit)."""
    dataset = record.get("dataset")
    if not dataset:
        raise PricetuneError("this ensemble.json names no dataset; look-alike items need the training rows")
    rows = training_rows(dataset, record.get("classical_train_rows"), with_val=record.get("train_on_val", False),
                         val_size=10**9)
    return NeighbourIndex.build(rows, k=1)


def look_alikes(index: NeighbourIndex, descriptions: list[str], k: int) -> list[list[LookAlike]]:
    """For each description (a bare description or a full prompt), its k most similar training items."""
    from ..baselines.common import item_text
    from ..data import make_prompt

    if check_similar_count(k) == 0:
        return [[] for _ in descriptions]
    found = index.nearest([item_text(make_prompt(d)) for d in descriptions], k)
    return [[LookAlike(index.texts[j], index.prices[j], round(max(0.0, min(1.0, s)), 4)) for j, s in row]
            for row in found]
