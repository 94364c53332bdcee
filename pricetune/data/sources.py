"""Where rows come from: `demo`, `amazon-18k` (shipped with the package), a local directory (a `datasets` save or split files), one file (split
80/10/10 by a fixed shuffle), or a Hub dataset id; every split validated before any model loads.

    from pricetune.data import load_splits
    splits, bad = load_splits("amazon-18k", val_size=255)
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any, Iterable

from ..errors import DataError
from .demo import demo_rows
from .files import FILE_SUFFIXES, BadRows, file_kind
from .rows import FIX_HINT, SPLIT_ALIASES, check_row, read_rows

# Datasets that ship inside the package, by name: real items, no download (each folder has a README)
SHIPPED = {"amazon-18k": Path(__file__).parent / "amazon-18k"}


def _split_files(directory: Path) -> dict[str, Path]:
    found = {}
    for split, names in SPLIT_ALIASES.items():
        for name in names:
            hits = [directory / f"{name}{s}" for s in FILE_SUFFIXES if (directory / f"{name}{s}").is_file()]
            if hits:
                found[split] = hits[0]
                break
    return found


def _from_datasets_save(directory: Path, on_bad_rows: str, bad: BadRows) -> dict[str, list[dict]]:
    from datasets import load_from_disk

    return _validate_splits(load_from_disk(str(directory)), str(directory), on_bad_rows, bad)


def _validate_splits(dd, label: str, on_bad_rows: str, bad: BadRows) -> dict[str, list[dict]]:
    """Validate each split of a DatasetDict, taking val from validation/valid/dev when so named."""
    out = {}
    for split, names in SPLIT_ALIASES.items():
        name = next((n for n in names if n in dd), None)
        if name is not None:
            out[split] = _validate(dd[name], f"{label}[{name}]", on_bad_rows, bad)
    return out


def _validate(rows: Iterable[Any], label: str, on_bad_rows: str, bad: BadRows) -> list[dict]:
    before = sum(bad.counts.values())
    good = [r for n, raw in enumerate(rows, start=1) if (r := check_row(raw, f"{label} row {n}", bad))]
    if sum(bad.counts.values()) > before and on_bad_rows == "error":
        raise DataError(f"{label}: invalid rows ({bad.summary()}):\n  " + "\n  ".join(bad.examples) + f"\n{FIX_HINT}")
    if not good:
        raise DataError(f"{label}: no usable rows")
    return good


def hub_offline() -> bool:
    """The one offline check: HF_HUB_OFFLINE (or HF_DATASETS_OFFLINE) set to a true value, read now
    (huggingface_hub reads its own copy once, at import)."""
    return any(os.environ.get(v, "").strip().lower() in {"1", "true", "yes", "on"}
               for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _from_hub(dataset_id: str, on_bad_rows: str, bad: BadRows) -> dict[str, list[dict]]:
    hint = (
        f"dataset {dataset_id!r} is no file or folder on this machine, and the Hugging Face Hub did not give it. "
        "Offline, pass a local source instead: --dataset demo or amazon-18k (both shipped), a directory with "
        "train/val/test jsonl files, or a single .jsonl/.csv/.parquet file"
    )
    if hub_offline():
        raise DataError(hint + " (HF_HUB_OFFLINE is set)")
    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", dataset_id):
        raise DataError(f"dataset {dataset_id!r} is neither an existing local path nor a valid Hub id")
    from datasets import load_dataset

    try:
        dd = load_dataset(dataset_id)
    except Exception as e:  # network, auth and not-found errors come in many types
        raise DataError(f"{hint} (with HF_HUB_OFFLINE=1 set, pricetune says so at once instead of after the Hub's "
                        f"retries).\n  cause: {type(e).__name__}: {str(e)[:300]}") from None
    return _validate_splits(dd, dataset_id, on_bad_rows, bad)


def looks_local(source: str) -> bool:
    """A source meant as a path, not a Hub id (user/name): it starts like a path, names a data file,
    has more than one "/", or its first part is a folder here (data/nope)."""
    path = Path(source)
    return (source.startswith((".", "/", "~")) or file_kind(path) in FILE_SUFFIXES or source.count("/") > 1
            or (len(path.parts) > 1 and Path(path.parts[0]).is_dir()))


def missing_here(source: str) -> bool:
    """A source meant as a local path that is not on this machine (what `load_rows` refuses)."""
    return source != "demo" and source not in SHIPPED and looks_local(source) and not Path(source).exists()


def load_rows(source: str, on_bad_rows: str = "error") -> tuple[dict[str, list[dict]], BadRows]:
    """All splits a source has, validated, as lists of {prompt, completion, price}."""
    bad = BadRows()
    path = Path(source)
    if source == "demo":
        splits = demo_rows()
    elif source in SHIPPED and not path.exists():  # a folder of that name here is the user's own
        splits = {s: read_rows(p, on_bad_rows, bad) for s, p in _split_files(SHIPPED[source]).items()}
    elif path.is_dir():
        if (path / "dataset_dict.json").is_file():
            splits = _from_datasets_save(path, on_bad_rows, bad)
        else:
            files = _split_files(path)
            if not files:
                raise DataError(
                    f"{path}: no split files found; expected train/val/test files ending in "
                    f"{', '.join(FILE_SUFFIXES)} (val may be named validation), or a datasets save"
                )
            splits = {s: read_rows(p, on_bad_rows, bad) for s, p in files.items()}
    elif path.is_file():
        rows = read_rows(path, on_bad_rows, bad)
        order = list(range(len(rows)))
        random.Random(1234).shuffle(order)
        rows = [rows[i] for i in order]
        n_test = n_val = max(1, len(rows) // 10)
        splits = {"test": rows[:n_test], "val": rows[n_test:n_test + n_val], "train": rows[n_test + n_val:]}
    elif missing_here(source):
        raise DataError(f"dataset not found: {source} (no such file or directory)")
    else:
        splits = _from_hub(source, on_bad_rows, bad)
    return splits, bad


def load_splits(
    source: str,
    val_size: int,
    train_size: int | None = None,
    on_bad_rows: str = "error",
    need: tuple[str, ...] = ("train",),
    train_sample: str = "first",
    seed: int = 42,
) -> tuple[dict[str, list[dict]], BadRows]:
    """Train / val (first val_size rows) / test, as the reference recipe takes them.

    train_size keeps the first N train rows, or with train_sample="random" N rows drawn with `seed`
    (kept in file order)."""
    splits, bad = load_rows(source, on_bad_rows)
    missing = [s for s in need if not splits.get(s)]
    training = need == ("train",)  # training asks for val through val_size, and can go without it
    if training and val_size > 0 and not splits.get("val"):
        missing.append("val")
    if missing:
        without = " or set --val-size 0 to train without validation" if training and "val" in missing else ""
        raise DataError(f"dataset {source}: missing split(s) {', '.join(missing)} (found: "
                        f"{', '.join(splits) or 'none'}); add the file (e.g. {missing[-1]}.jsonl){without}")
    if "val" in splits:
        splits["val"] = splits["val"][:val_size]
    if train_size is not None and "train" in splits:
        splits["train"] = take_train(splits["train"], train_size, train_sample, seed)
    return splits, bad


def take_train(rows: list[dict], n: int | None, sample: str = "first", seed: int = 42) -> list[dict]:
    """N of the train rows: the first N, or N drawn at random with `seed`, in file order.

    The draw is a prefix of one seeded permutation, so the rows for a smaller N are among those for a
    larger one: the points of a learning curve differ by the added rows only. Files are often sorted
    (by source, by date), which makes the first N a poor sample of the whole."""
    if sample not in ("first", "random"):
        raise ValueError(f"train sample must be first or random (got {sample!r})")
    if n is None or n >= len(rows):
        return list(rows)
    if sample == "first":
        return rows[:n]
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    return [rows[i] for i in sorted(order[:n])]


def train_copies(learned: list[dict], items: list[dict], split: str, log=None) -> int:
    """How many of `items` (rows of `split`) have a prompt that is also, word for word, one of the train
    rows the model `learned` from; said through `log` when any do: it may price those better than new items."""
    train = {r["prompt"] for r in learned}
    shared = sum(r["prompt"] in train for r in items)
    if shared and log is not None:
        log(f"note: {shared} of the {len(items)} {split} items have a prompt found word for word among the "
            f"{len(learned):,} train rows the model learned from: it may price them better than it would new items")
    return shared
