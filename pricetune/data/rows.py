"""The course's rows: the prompt and completion format, prices read strictly, rows validated (a bad one
named by file and line), and the text to price in a row that users send.

    from pricetune.data import read_rows, make_prompt, completion_price
    rows = read_rows("data/mine/train.jsonl")   # [{prompt, completion, price}, ...]
"""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path
from typing import Any

from ..errors import DataError
from .catalog import catalog_columns, catalog_text, column_key
from .files import BadRows, iter_file


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
# A number with a decimal point and its thousands grouped by commas, or not grouped: "12,50" is not
# one (read as 1250 it would be a price 100 times too high)
POINT_DECIMAL = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?")


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
        if not POINT_DECIMAL.fullmatch(m.group(1).lstrip("-")):
            raise ValueError(f"not a price: {str(value)[:40]!r} (commas group thousands, as in 1,299.00; "
                             "the decimal mark is a point)")
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


FIX_HINT = (
    "Each row needs a non-empty text 'prompt' and a 'completion' holding the price (e.g. \"64.00\"). "
    "Fix or remove these rows, or pass --on-bad-rows skip to skip them (they are counted and reported)."
)


def check_row(row: Any, where: str, bad: BadRows) -> dict | None:
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
    out = {"prompt": prompt, "completion": completion, "price": float(price)}
    category = row.get("category")
    if isinstance(category, str) and category.strip():
        out["category"] = category.strip()  # not trained on; evaluation breaks the error down by it
    return out


# Where an item's text is in a row given to predict, serve or the API, first to last: a full prompt, the
# whole text, the catalog's columns (as prepare writes them), a description alone
ITEM_TEXT_FIELDS = ("prompt", "text", "description")
ITEM_TEXT_WANTED = ("a non-empty 'prompt', 'text' or 'description', or catalog columns such as title, category, brand "
                    "(those `pricetune prepare` reads)")


def item_text_field(row: Any) -> str | None:
    """Which field of an input row holds the text to price, as the row names it ("catalog": its catalog
    columns); None when none. Names match whatever their case ("Description" is a description)."""
    if not isinstance(row, dict):
        return None
    named = {column_key(k): k for k, v in row.items() if isinstance(v, str) and v.strip()}
    field = next((named[f] for f in ITEM_TEXT_FIELDS if f in named), None)
    if (field is None or column_key(field) == "description") and {column_key(k) for k in catalog_columns(row)} - {"description"}:
        return "catalog"
    return field


def item_text_of(row: Any) -> str | None:
    """The item's text in an input row: a full prompt or the text as given, else the row's catalog
    columns as `pricetune prepare` writes them ("Title: ...\nDescription: ..."), else a bare description;
    None when it has none."""
    field = item_text_field(row)
    if field == "catalog":
        return catalog_text(row)[1] or None
    return row[field] if field else None


def unpriced_note(row: Any) -> str | None:
    """What pricing leaves out of a row's text, said to whoever sent it: a 'text' column is the whole
    text, so a title beside it is not read. None when nothing is left out."""
    field = item_text_field(row)
    left = catalog_columns(row) if field is not None and column_key(field) == "text" else []
    return (f"each row's '{field}' is priced, its {', '.join(left)} not: the catalog's columns are priced together "
            "when the row has no 'text' or 'prompt'") if left else None


def read_rows(path: str | Path, on_bad_rows: str = "error", bad: BadRows | None = None) -> list[dict]:
    """Read and validate one file. Raises DataError on bad rows unless on_bad_rows == "skip"."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    own = bad if bad is not None else BadRows()
    before = sum(own.counts.values())
    rows, first = [], None
    for where, raw in iter_file(path, own):
        first = raw if first is None else first
        row = check_row(raw, where, own)
        if row is not None:
            rows.append(row)
    new_bad = sum(own.counts.values()) - before
    if not rows and isinstance(first, dict) and "prompt" not in map(column_key, first) and catalog_columns(first):
        raise DataError(f"{path} is a product catalog (columns: {', '.join(map(str, first))[:200]}), not the course's "
                        f"prompt/completion rows: make a dataset of it with `pricetune prepare {path} --out DIR`, "
                        "then pass --dataset DIR")
    if new_bad and on_bad_rows == "error":
        raise DataError(
            f"{path}: {new_bad} invalid row(s) ({own.summary()}):\n  "
            + "\n  ".join(own.examples)
            + f"\n{FIX_HINT}"
        )
    if not rows:
        raise DataError(f"{path}: no usable rows (the file is empty or every row is invalid)")
    return rows


def fingerprint(rows: list[dict]) -> str:
    """A split's identity: its rows' prompts and prices, in order (16 hex digits of SHA-256)."""
    h = hashlib.sha256()
    for r in rows:
        h.update(f"{r['prompt']}\0{float(r['price']):.4f}\n".encode())
    return h.hexdigest()[:16]
