"""Datasets of priced products: loading, validation, the embedded demo data, and tokenization.

    from pricetune.data import load_splits
    splits = load_splits("../shared/data/amazon-items", val_size=255)   # train / val / test
    splits = load_splits("demo", val_size=100)                          # embedded diamonds

Sources: `demo`; a local directory (a `datasets` save, or train/val/test files in jsonl, json,
csv or parquet); a single jsonl/csv/parquet file (split 80/10/10 by a fixed shuffle); a Hub dataset
id. Every row needs a non-empty text `prompt` and a `completion` that parses as a price; bad rows
stop the load with file and line, or are skipped and counted with `on_bad_rows="skip"`.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from .errors import DataError

QUESTION = "What does this cost to the nearest dollar?"
TRAILER = "\n\nPrice is $"
MAX_PRICE = 1_000_000.0  # anything above is a data error (a typo or a concatenated field), not a product
PRICE_TRAILER = "Price is $"
SPLITS = ("train", "val", "test")
# Tokens kept free after the prompt: the longest completion a valid row can have ("1000000.00"), one
# token per character, plus EOS. One rule for training and inference, whatever the row's own price,
# so a prompt is cut at the same place everywhere.
COMPLETION_RESERVE = len(f"{int(MAX_PRICE)}.00") + 1
SPLIT_ALIASES = {"train": ("train",), "val": ("val", "validation", "valid", "dev"), "test": ("test",)}
FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
MAX_PRICE_DIGITS = len(str(int(MAX_PRICE)))  # 7: the longest integer part a valid price has


def make_prompt(description: str) -> str:
    """Wrap a bare item description in the training prompt; a full prompt (one that ends in
    "Price is $", as every dataset row must) is returned unchanged."""
    text = description.strip("\n")
    if text.endswith(PRICE_TRAILER):
        return description
    return f"{QUESTION}\n\n{text.strip()}{TRAILER}"


def format_completion(price: float) -> str:
    """The course's completion: the price rounded to the nearest dollar, as "64.00"."""
    return f"{math.floor(price + 0.5)}.00"


_NUMBER = re.compile(r"^\s*\$?\s*(-?\d[\d,]*(?:\.\d+)?)\s*$")


def completion_price(value: Any) -> float:
    """Parse a dataset completion (strict: the whole field is one number). Raises ValueError."""
    if isinstance(value, bool) or value is None:
        raise ValueError("missing")
    if isinstance(value, (int, float)):
        price = float(value)
    else:
        m = _NUMBER.match(str(value))
        if not m:
            raise ValueError(f"not a price: {str(value)[:40]!r}")
        price = float(m.group(1).replace(",", ""))
    if not math.isfinite(price):
        raise ValueError(f"not a finite price: {value!r}")
    if price < 0:
        raise ValueError(f"negative price: {value!r}")
    if price > MAX_PRICE:
        raise ValueError(f"absurd price (> {MAX_PRICE:,.0f}): {value!r}")
    return price


# ------------------------------------------------------------------------------------------------
# Row validation


@dataclass
class BadRows:
    """Rows rejected while loading, by kind, with the first few locations for the message."""

    counts: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def add(self, kind: str, where: str, detail: str) -> None:
        self.counts[kind] += 1
        if len(self.examples) < 10:
            self.examples.append(f"{where}: {kind}: {detail}")

    def __bool__(self) -> bool:
        return bool(self.counts)

    def summary(self) -> str:
        return ", ".join(f"{n} {kind}" for kind, n in sorted(self.counts.items()))


FIX_HINT = (
    "Each row needs a non-empty text 'prompt' and a 'completion' holding the price (e.g. \"64.00\"). "
    "Fix or remove these rows, or pass --on-bad-rows skip to skip them (they are counted and reported)."
)


def _check_row(row: Any, where: str, bad: BadRows) -> dict | None:
    if not isinstance(row, dict):
        bad.add("not an object", where, f"got {type(row).__name__}")
        return None
    if "prompt" not in row:
        cols = ", ".join(sorted(map(str, row))[:8])
        bad.add("missing prompt", where, f"no 'prompt' column (columns: {cols})")
        return None
    prompt = row["prompt"]
    if not isinstance(prompt, str) or not prompt.strip():
        bad.add("empty prompt", where, "'prompt' must be non-empty text")
        return None
    if not prompt.endswith(PRICE_TRAILER):
        bad.add("prompt template", where, f"the prompt must end with {PRICE_TRAILER!r} (it ends "
                f"{prompt[-20:]!r}); the model is trained and asked with the same prompt")
        return None
    if "completion" not in row or row["completion"] is None:
        cols = ", ".join(sorted(map(str, row))[:8])
        bad.add("missing completion", where, f"no 'completion' value (columns: {cols})")
        return None
    try:
        price = completion_price(row["completion"])
    except ValueError as e:
        bad.add("bad completion", where, str(e))
        return None
    exact = row.get("price")
    if exact is not None:
        try:
            price = completion_price(exact)
        except ValueError as e:
            bad.add("bad price", where, str(e))
            return None
    # Trained on the canonical whole-dollar form whatever the file says ("$1,299.00" -> "1299.00"): a
    # comma or a "$" would teach what the price decoders read as the end of the number
    completion = format_completion(completion_price(row["completion"]))
    return {"prompt": prompt, "completion": completion, "price": float(price)}


# ------------------------------------------------------------------------------------------------
# Readers: each yields (location, row) so errors can name the file and line or row.


def _read_jsonl(path: Path, bad: BadRows) -> Iterable[tuple[str, Any]]:
    yield from iter_jsonl(path, bad)


def _read_json(path: Path, bad: BadRows) -> Iterable[tuple[str, Any]]:
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (invalid byte at offset {e.start}); re-save it as UTF-8") from None
    except json.JSONDecodeError as e:
        # A .json file with one object per line is jsonl in disguise
        if e.msg == "Extra data":
            yield from _read_jsonl(path, bad)
            return
        raise DataError(f"{path}: malformed JSON at line {e.lineno}: {e.msg}") from None
    if isinstance(data, dict):
        data = data.get("data", data.get("rows", [data]))
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a list of rows, got {type(data).__name__}")
    for n, row in enumerate(data, start=1):
        yield f"{path}: row {n}", row


def _read_csv(path: Path, bad: BadRows) -> Iterable[tuple[str, Any]]:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (invalid byte at offset {e.start}); re-save it as UTF-8") from None
    reader = csv.DictReader(text.splitlines(keepends=True))
    try:
        for row in reader:
            # line_num is the physical line just read; the header is line 1
            yield f"{path}:{reader.line_num}", row
    except csv.Error as e:
        raise DataError(f"{path}:{reader.line_num}: malformed CSV: {e}") from None


def _read_parquet(path: Path, bad: BadRows) -> Iterable[tuple[str, Any]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several unrelated types for a corrupt file
        raise DataError(f"{path}: not a readable parquet file ({e})") from None
    for n, row in enumerate(table.to_pylist(), start=1):
        yield f"{path}: row {n}", row


def iter_jsonl(path: Path, bad: BadRows | None = None) -> Iterable[tuple[str, Any]]:
    """(location, object) for each non-blank line. A line that is not UTF-8 or not JSON is counted in
    `bad` and skipped when one is given; without one, the first such line raises DataError."""
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            where = f"{path}:{n}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                if bad is None:
                    raise DataError(f"{where}: not UTF-8 text; re-save the file as UTF-8") from None
                bad.add("not UTF-8", where, f"invalid byte at column {e.start + 1}; re-save the file as UTF-8")
                continue
            if not line.strip():
                continue
            try:
                yield where, json.loads(line)
            except json.JSONDecodeError as e:
                if bad is None:
                    raise DataError(f"{where}: malformed JSON: {e.msg}") from None
                bad.add("malformed JSON", where, e.msg)


READERS = {".jsonl": _read_jsonl, ".json": _read_json, ".csv": _read_csv, ".parquet": _read_parquet}


def read_rows(path: str | Path, on_bad_rows: str = "error", bad: BadRows | None = None) -> list[dict]:
    """Read and validate one file. Raises DataError on bad rows unless on_bad_rows == "skip"."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"{path}: unsupported file type; use one of {', '.join(FILE_SUFFIXES)}")
    own = bad if bad is not None else BadRows()
    before = sum(own.counts.values())
    rows = []
    for where, raw in reader(path, own):
        row = _check_row(raw, where, own)
        if row is not None:
            rows.append(row)
    new_bad = sum(own.counts.values()) - before
    if new_bad and on_bad_rows == "error":
        raise DataError(
            f"{path}: {new_bad} invalid row(s) ({own.summary()}):\n  "
            + "\n  ".join(own.examples)
            + f"\n{FIX_HINT}"
        )
    if not rows:
        raise DataError(f"{path}: no usable rows (the file is empty or every row is invalid)")
    return rows


# ------------------------------------------------------------------------------------------------
# The embedded demo data: plotnine's diamonds (53,940 real retail diamonds with prices)


def diamonds_csv() -> Path:
    spec = importlib.util.find_spec("plotnine")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the demo data needs plotnine: pip install plotnine (make demo installs it)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "diamonds.csv"
    if not path.is_file():
        raise DataError(f"plotnine is installed but {path} is missing; reinstall plotnine")
    return path


def diamond_prompt(d: dict) -> str:
    carat, cut, color, clarity = float(d["carat"]), d["cut"], d["color"], d["clarity"]
    item = (
        f"Title: {carat:.2f} carat {cut} cut round diamond, colour {color}, clarity {clarity}\n"
        f"Category: Jewelry\n"
        f"Description: A loose round brilliant diamond of {carat:.2f} carat with a {cut.lower()} cut, "
        f"colour grade {color} and clarity grade {clarity}.\n"
        f"Details: Depth {float(d['depth']):.1f}%, table {float(d['table']):.0f}%, "
        f"measures {float(d['x']):.2f} x {float(d['y']):.2f} x {float(d['z']):.2f} mm."
    )
    return f"{QUESTION}\n\n{item}{TRAILER}"


def demo_rows(test_size: int = 2000, val_size: int = 1000, seed: int = 1234) -> dict[str, list[dict]]:
    """All diamonds as prompt/completion rows, split by a fixed shuffle (the same on every machine)."""
    with open(diamonds_csv(), newline="", encoding="utf-8") as f:
        rows = [
            {"prompt": diamond_prompt(d), "completion": format_completion(float(d["price"])),
             "price": float(d["price"])}
            for d in csv.DictReader(f)
        ]
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    shuffled = [rows[i] for i in order]
    return {
        "test": shuffled[:test_size],
        "val": shuffled[test_size:test_size + val_size],
        "train": shuffled[test_size + val_size:],
    }


# ------------------------------------------------------------------------------------------------
# Sources


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
    good = [r for n, raw in enumerate(rows, start=1) if (r := _check_row(raw, f"{label} row {n}", bad))]
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
        f"could not load dataset {dataset_id!r} from the Hugging Face Hub. Offline, pass a local source "
        "instead: --dataset demo, a directory with train/val/test jsonl files (e.g. ../shared/data/amazon-items), "
        "or a single .jsonl/.csv/.parquet file"
    )
    if hub_offline():
        raise DataError(hint + " (HF_HUB_OFFLINE is set)")
    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", dataset_id):
        raise DataError(f"dataset {dataset_id!r} is neither an existing local path nor a valid Hub id")
    from datasets import load_dataset

    try:
        dd = load_dataset(dataset_id)
    except Exception as e:  # network, auth and not-found errors come in many types
        raise DataError(f"{hint}.\n  cause: {type(e).__name__}: {str(e)[:300]}") from None
    return _validate_splits(dd, dataset_id, on_bad_rows, bad)


def looks_local(source: str) -> bool:
    """A source meant as a path, not a Hub id (user/name): it starts like a path, names a data file,
    has more than one "/", or its first part is a folder here (data/nope)."""
    path = Path(source)
    return (source.startswith((".", "/", "~")) or path.suffix.lower() in FILE_SUFFIXES or source.count("/") > 1
            or (len(path.parts) > 1 and Path(path.parts[0]).is_dir()))


def load_rows(source: str, on_bad_rows: str = "error") -> tuple[dict[str, list[dict]], BadRows]:
    """All splits a source has, validated, as lists of {prompt, completion, price}."""
    bad = BadRows()
    path = Path(source)
    if source == "demo":
        splits = demo_rows()
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
    elif looks_local(source):
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
) -> tuple[dict[str, list[dict]], BadRows]:
    """Train / val (first val_size rows) / test, as the reference recipe takes them."""
    splits, bad = load_rows(source, on_bad_rows)
    missing = [s for s in need if not splits.get(s)]
    if val_size > 0 and "train" in need and not splits.get("val"):
        missing.append("val")
    if missing:
        raise DataError(
            f"dataset {source}: missing split(s) {', '.join(missing)} (found: {', '.join(splits) or 'none'}); "
            "add the file (e.g. val.jsonl) or set --val-size 0 to train without validation"
        )
    if "val" in splits:
        splits["val"] = splits["val"][:val_size]
    if train_size is not None and "train" in splits:
        splits["train"] = splits["train"][:train_size]
    return splits, bad


# ------------------------------------------------------------------------------------------------
# Tokenization: prompt and completion apart, joined; only the completion (and EOS) carries loss.


def _split_prompt(prompt: str) -> tuple[str, str]:
    i = prompt.rfind(PRICE_TRAILER)
    if i < 0:
        return prompt, ""
    # Keep the blank line before "Price is $" with the trailer so it is never cut
    j = i
    while j > 0 and prompt[j - 1] in "\n ":
        j -= 1
    return prompt[:j], prompt[j:]


def encode_prompts(tokenizer, prompts: list[str], max_length: int, reserve: int = COMPLETION_RESERVE) -> list[list[int]]:
    """Prompt token ids, each cut to leave `reserve` tokens for the price: the item text loses its
    end, the question line and the closing "Price is $" always stay. Training and inference share
    this; the tokenizer runs once per list (batched)."""
    parts = [_split_prompt(p) for p in prompts]
    bodies = tokenizer([body for body, _ in parts], add_special_tokens=True)["input_ids"]
    tails = tokenizer([tail for _, tail in parts], add_special_tokens=False)["input_ids"]
    out = []
    for (_, tail), body_ids, tail_ids in zip(parts, bodies, tails):
        budget = max_length - reserve - len(tail_ids)
        if budget < 1:
            raise DataError(
                f"max_length {max_length} cannot hold the closing {tail!r} and the price; raise --max-length"
            )
        out.append(body_ids[:budget] + tail_ids)
    return out


def encode_prompt(tokenizer, prompt: str, max_length: int, reserve: int = COMPLETION_RESERVE) -> list[int]:
    """One prompt's ids (`encode_prompts`)."""
    return encode_prompts(tokenizer, [prompt], max_length, reserve)[0]


def encode_examples(tokenizer, prompts: list[str], completions: list[str], max_length: int) -> dict[str, list]:
    """input_ids and labels for training rows (labels are -100 on the prompt)."""
    eos = [tokenizer.eos_token_id]
    completion_ids = [ids + eos for ids in tokenizer(completions, add_special_tokens=False)["input_ids"]]
    prompt_ids = encode_prompts(tokenizer, prompts, max_length)
    return {
        "input_ids": [p + c for p, c in zip(prompt_ids, completion_ids)],
        "labels": [[-100] * len(p) + c for p, c in zip(prompt_ids, completion_ids)],
    }


def encode_example(tokenizer, prompt: str, completion: str, max_length: int) -> dict[str, list[int]]:
    """input_ids and labels for one training row (`encode_examples`)."""
    out = encode_examples(tokenizer, [prompt], [completion], max_length)
    return {key: value[0] for key, value in out.items()}


def map_batched(rows: list[dict], columns: list[str], fn, desc: str):
    """A `datasets.Dataset` of `fn` over `rows`' columns, 1,000 rows per tokenizer call (with a
    progress bar on large sets: the full preset has 800k rows)."""
    from datasets import Dataset

    ds = Dataset.from_dict({c: [r[c] for r in rows] for c in columns})
    # new_fingerprint: the function holds a tokenizer, which datasets cannot hash (it would warn)
    return ds.map(fn, batched=True, batch_size=1000, remove_columns=columns, desc=desc,
                  new_fingerprint=f"{desc}-{len(rows)}")


def tokenize_rows(tokenizer, rows: list[dict], max_length: int):
    """A `datasets.Dataset` with input_ids and labels, ready for the trainer (no further preparation)."""
    return map_batched(rows, ["prompt", "completion"],
                       lambda b: encode_examples(tokenizer, b["prompt"], b["completion"], max_length), "tokenizing")


def is_right_padded(mask) -> bool:
    """True when every row of an attention mask (a [batch, length] tensor) is ones followed only by
    zeros: the layout the training collators make, where causal attention needs no mask."""
    return bool((mask[:, 1:] <= mask[:, :-1]).all())


def in_length_order(encoded: list[list[int]], batch_size: int, run_batch: Callable[[list[list[int]]], list],
                    desc: str, progress: bool = False) -> list:
    """`run_batch` over batches of prompts of similar length (longest first: the memory peak comes at
    once, not after minutes), the results back in input order; a progress bar when asked."""
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    results: list = [None] * len(encoded)
    bar = None
    if progress:
        import sys

        from tqdm.auto import tqdm

        bar = tqdm(total=len(order), desc=desc, unit="item", file=sys.stderr)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        for i, result in zip(idx, run_batch([encoded[i] for i in idx])):
            results[i] = result
        if bar:
            bar.update(len(idx))
    if bar:
        bar.close()
    return results

