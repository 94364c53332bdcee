"""`pricetune prepare`: a raw product catalog in, a training set in the course's format out.

    pricetune prepare catalog.csv --out data/mine                    # columns found by name
    pricetune prepare export.csv --out data/mine --price-column cost --text-columns name,colour,notes
    pricetune prepare McAuley-Lab/Amazon-Reviews-2023 --out data/appliances   # a Hub dataset (online)
    pricetune train --dataset data/mine                              # reads the folder as it is

SOURCE: a CSV, JSONL, JSON or parquet file, a folder of them, or a Hub dataset id. Rows are read in
a stream (parquet by record batch, Hub datasets with streaming=True), so memory holds the kept items
only. Each row becomes one item text: a `Title:` line, then `Category:`, `Brand:`, `Description:`,
`Features:` and `Details:` lines from the columns of those names (or `main_category`, `store`), or
one `Name: value` line per `--text-columns` column (the title, for de-duplication, is the one named
title, name or product_name, if chosen); lists are joined, dicts rendered `key: value`.

The course's curation, each step a setting (`pricetune prepare --help`), applied in this order and
counted in the data card's funnel:
  1. a usable price: present, numeric, within --min-price .. --max-price ($0.50 - $999.49);
  2. text: detail keys that are noise dropped (part and model numbers, best-sellers rank, batteries,
     dates first available), whitespace squashed, part-number-like tokens (7+ characters mixing
     capital letters and digits) scrubbed, at least --min-chars characters left;
  3. duplicates: the first item of each title, then of each text (its title taken out), is kept;
  4. the text cut to --max-tokens tokens of the base model's tokenizer (the course kept ~110);
  5. optional --balance: at most --balance-cap items per price band (20 bands, even in log price),
     drawn by seed, so cheap items don't swamp the set;
  6. a split by seed: --test and --val items, the rest train.
Output: train/val/test.jsonl ({"prompt", "completion": "64.00", "price": 64.3}), prepare.json (the
funnel and the settings), README.md (the data card), price_hist.png and token_hist.png.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import random
import re
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from .data import FILE_SUFFIXES, QUESTION, TRAILER, format_completion
from .errors import DataError, PricetuneError

NOISY_DETAIL_KEYS = ("part number", "model number", "item model", "best sellers rank", "batteries",
                     "date first available", "asin", "upc", "manufacturer reference")
PART_NUMBER = re.compile(r"\b(?=[A-Z0-9-]*[A-Z])(?=[A-Z0-9-]*\d)[A-Z0-9][A-Z0-9-]{6,}\b")
WHITESPACE = re.compile(r"\s+")
FIELDS = {  # item line -> the column names it is read from, in order of preference
    "Title": ("title", "name", "product_name"),
    "Category": ("category", "main_category"),
    "Brand": ("brand", "store", "manufacturer"),
    "Description": ("description",),
    "Features": ("features",),
    "Details": ("details",),
}
PRICE_NAMES = ("price", "list_price", "cost")
BANDS = 20


@dataclass
class PrepareSettings:
    source: str
    out: str
    price_column: str | None = None
    text_columns: list[str] | None = None
    seed: int = 42
    val: int = 500
    test: int = 500
    min_price: float = 0.5
    max_price: float = 999.49
    min_chars: int = 300
    max_tokens: int = 110
    balance: bool = False
    balance_cap: int = 1000
    base_model: str = "smollm2-135m"
    limit: int | None = None


@dataclass
class Funnel:
    read: int = 0
    dropped: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)  # reason -> first location

    def drop(self, reason: str, where: str) -> None:
        self.dropped[reason] += 1
        self.examples.setdefault(reason, where)


# ------------------------------------------------------------------------------------------------
# Pure text rules (tested one by one)


def squash(text: str) -> str:
    return WHITESPACE.sub(" ", text).strip()


def scrub_part_numbers(text: str) -> str:
    """Remove tokens that look like part numbers (7+ characters of capitals and digits, both present)."""
    return squash(PART_NUMBER.sub("", text))


def render_value(value: Any) -> str:
    """Lists joined, dicts as 'key: value' (noisy keys dropped), strings squashed."""
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped[:1] in "[{" and stripped[-1:] in "]}":  # a list or dict stored as JSON text
            try:
                return render_value(json.loads(stripped))
            except json.JSONDecodeError:
                pass
        return squash(value)
    if isinstance(value, dict):
        parts = [f"{squash(str(k))}: {render_value(v)}" for k, v in value.items()
                 if not any(noise in str(k).lower() for noise in NOISY_DETAIL_KEYS) and render_value(v)]
        return "; ".join(parts)
    if isinstance(value, (list, tuple)):
        return " ".join(p for p in (render_value(v) for v in value) if p)
    return squash(str(value))


def parse_price(value: Any) -> float | None:
    """A catalog price: a number, or text like "$1,299.99"; None when there is none."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    m = re.fullmatch(r"\s*\$?\s*(\d[\d,]*(?:\.\d+)?)\s*", str(value))
    return float(m.group(1).replace(",", "")) if m else None


def item_text(row: dict, text_columns: list[str] | None) -> tuple[str, str]:
    """(title, the item's text lines) of a raw row."""
    lowered = {str(k).lower(): v for k, v in row.items()}
    if text_columns:
        values = [(c, render_value(lowered.get(c.lower()))) for c in text_columns]
        # the title (for de-duplication) is a column named like one, if any was chosen
        title = next((v for c, v in values if c.lower() in FIELDS["Title"]), "")
        lines = [(c.replace("_", " ").capitalize(), v) for c, v in values if v]
        return title, "\n".join(f"{name}: {value}" for name, value in lines)
    lines = []
    for name, columns in FIELDS.items():
        value = next((render_value(lowered[c]) for c in columns if c in lowered and render_value(lowered[c])), "")
        if value:
            lines.append((name, value))
    title = next((v for n, v in lines if n == "Title"), "")
    return title, "\n".join(f"{name}: {value}" for name, value in lines)


def make_item_prompt(text: str) -> str:
    return f"{QUESTION}\n\n{text}{TRAILER}"


# ------------------------------------------------------------------------------------------------
# Reading, streamed


def _files(source: Path) -> list[Path]:
    if source.is_file():
        return [source]
    files = sorted(p for p in source.rglob("*") if p.suffix.lower() in FILE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"{source}: no {', '.join(FILE_SUFFIXES)} files in this folder")
    return files


def _read_file(path: Path) -> Iterator[tuple[str, Any]]:
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            with open(path, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                for row in reader:
                    yield f"{path}:{reader.line_num}", row
        elif suffix in (".jsonl", ".json"):
            with open(path, "rb") as f:
                first = f.read(1)
                f.seek(0)
                if suffix == ".json" and first == b"[":
                    for n, row in enumerate(json.load(f), start=1):
                        yield f"{path}: row {n}", row
                    return
                for n, raw in enumerate(f, start=1):
                    if raw.strip():
                        try:
                            yield f"{path}:{n}", json.loads(raw)
                        except (json.JSONDecodeError, UnicodeDecodeError):
                            yield f"{path}:{n}", None  # counted as an unreadable row
        elif suffix == ".parquet":
            import pyarrow.parquet as pq

            n = 0
            for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
                for row in batch.to_pylist():
                    n += 1
                    yield f"{path}: row {n}", row
        else:
            raise DataError(f"{path}: unsupported file type; use one of {', '.join(FILE_SUFFIXES)}")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (invalid byte at offset {e.start}); re-save it as UTF-8") from None
    except (OSError, csv.Error, json.JSONDecodeError) as e:
        raise DataError(f"{path}: cannot be read ({type(e).__name__}: {str(e)[:200]})") from None
    except Exception as e:  # pyarrow raises many types for a corrupt file
        if isinstance(e, DataError):
            raise
        raise DataError(f"{path}: cannot be read ({type(e).__name__}: {str(e)[:200]})") from None


def _read_hub(dataset_id: str) -> Iterator[tuple[str, Any]]:
    from .data import hub_offline

    if hub_offline():
        raise DataError(f"{dataset_id!r} looks like a Hub dataset id, and HF_HUB_OFFLINE is set; pass a local "
                        "CSV, JSONL, JSON or parquet file or folder instead")
    from datasets import load_dataset

    try:
        ds = load_dataset(dataset_id, split="train", streaming=True)
    except Exception as e:  # network, auth, not found: many types
        raise DataError(f"could not open Hub dataset {dataset_id!r}: {type(e).__name__}: {str(e)[:200]}") from None
    for n, row in enumerate(ds, start=1):
        yield f"{dataset_id} row {n}", row


def read_source(source: str) -> Iterator[tuple[str, Any]]:
    from .data import looks_local

    path = Path(source)
    if path.exists():
        for f in _files(path):
            yield from _read_file(f)
    elif looks_local(source) or "/" not in source:
        raise DataError(f"source not found: {source} (no such file or folder)")
    else:
        yield from _read_hub(source)


# ------------------------------------------------------------------------------------------------
# The pipeline


def curate(rows: Iterable[tuple[str, Any]], s: PrepareSettings, funnel: Funnel) -> list[dict]:
    """Rules 1-3: price, text, duplicates. Returns {"title", "text", "price"} items."""
    seen_titles: set[bytes] = set()
    seen_texts: set[bytes] = set()
    items = []
    price_names = (s.price_column.lower(),) if s.price_column else PRICE_NAMES
    for where, row in rows:
        funnel.read += 1
        if not isinstance(row, dict):
            funnel.drop("unreadable row", where)
            continue
        lowered = {str(k).lower(): v for k, v in row.items()}
        name = next((p for p in price_names if p in lowered), None)
        if name is None:
            if s.price_column:
                raise DataError(f"{where}: no column {s.price_column!r} (columns: {', '.join(map(str, row))[:300]})")
            funnel.drop("no price column", where)
            continue
        raw = lowered[name]
        if raw is None or (isinstance(raw, str) and not raw.strip()) or (isinstance(raw, float) and math.isnan(raw)):
            funnel.drop("missing price", where)
            continue
        price = parse_price(raw)
        if price is None:
            funnel.drop("non-numeric price", where)
            continue
        if not s.min_price <= price <= s.max_price:
            funnel.drop("price out of range", where)
            continue
        title, text = item_text(row, s.text_columns)
        text = "\n".join(scrub_part_numbers(line) for line in text.splitlines())
        if not text.strip():
            funnel.drop("empty text", where)
            continue
        if len(text) < s.min_chars:
            funnel.drop("text too short", where)
            continue
        text = text[: s.max_tokens * 7]  # a character ceiling before tokenizing, as the course does
        t_key = hashlib.blake2b(squash(title).lower().encode(), digest_size=16).digest()
        # the same text under another title is the same product listed twice
        x_key = hashlib.blake2b(text.replace(title, "", 1).lower().encode(), digest_size=16).digest()
        if title and t_key in seen_titles:
            funnel.drop("duplicate title", where)
            continue
        if x_key in seen_texts:
            funnel.drop("duplicate text", where)
            continue
        seen_titles.add(t_key)
        seen_texts.add(x_key)
        items.append({"title": title, "text": text, "price": price})
        if s.limit and len(items) >= s.limit:
            break
    return items


def cut_to_tokens(items: list[dict], tokenizer, max_tokens: int, batch: int = 1000, progress: bool = True) -> list[int]:
    """Rule 4, in place: each text cut to `max_tokens` tokens (at a token boundary). Returns the
    token counts after the cut."""
    from tqdm.auto import tqdm

    counts = []
    bar = tqdm(total=len(items), desc="tokenizing", unit="item", file=sys.stderr, disable=not progress)
    for start in range(0, len(items), batch):
        chunk = items[start:start + batch]
        encoded = tokenizer([it["text"] for it in chunk], add_special_tokens=False)["input_ids"]
        for it, ids in zip(chunk, encoded):
            if len(ids) > max_tokens:
                it["text"] = tokenizer.decode(ids[:max_tokens], skip_special_tokens=True).strip()
            counts.append(min(len(ids), max_tokens))
        bar.update(len(chunk))
    bar.close()
    return counts


def balance(items: list[dict], cap: int, seed: int, lo: float, hi: float) -> list[dict]:
    """Rule 5: at most `cap` items in each of BANDS price bands, even in log price, drawn by seed."""
    rng = random.Random(seed)
    span = math.log(hi) - math.log(lo)
    bands: dict[int, list[dict]] = {}
    for it in items:
        b = min(BANDS - 1, int((math.log(it["price"]) - math.log(lo)) / span * BANDS))
        bands.setdefault(b, []).append(it)
    kept = []
    for b in sorted(bands):
        group = bands[b]
        kept += group if len(group) <= cap else rng.sample(group, cap)
    return kept


def split(items: list[dict], val: int, test: int, seed: int) -> dict[str, list[dict]]:
    """Rule 6: a shuffle by seed; test first, then val, the rest train."""
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    shuffled = [items[i] for i in order]
    if len(shuffled) < val + test + 1:
        raise DataError(f"only {len(shuffled)} items survived curation; too few for --test {test} and --val {val} "
                        "plus a train split (lower them, or loosen --min-chars / the price range)")
    return {"test": shuffled[:test], "val": shuffled[test:test + val], "train": shuffled[test + val:]}


def to_row(item: dict) -> dict:
    return {"prompt": make_item_prompt(item["text"]), "completion": format_completion(item["price"]),
            "price": item["price"]}


def prepare(s: PrepareSettings, log=print) -> dict:
    """Run the pipeline; write the folder. Returns the record saved as prepare.json."""
    from .modeling import load_tokenizer

    out = Path(s.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PricetuneError(f"{out} already exists and is not empty; choose another --out")
    if s.min_price <= 0 or s.max_price <= s.min_price:
        raise PricetuneError("--min-price must be > 0 and below --max-price")
    funnel = Funnel()
    from tqdm.auto import tqdm

    rows = tqdm(read_source(s.source), desc="reading", unit="row", file=sys.stderr, mininterval=1.0)
    items = curate(rows, s, funnel)
    rows.close()
    if not items:
        raise DataError(f"no item survived curation ({funnel.read} rows read; dropped: "
                        f"{', '.join(f'{n} {r}' for r, n in funnel.dropped.most_common())})")
    tokenizer = load_tokenizer(s.base_model)
    tokens = cut_to_tokens(items, tokenizer, s.max_tokens)
    for it, n in zip(items, tokens):
        it["tokens"] = n
    after_dedupe = len(items)
    if s.balance:
        items = balance(items, s.balance_cap, s.seed, s.min_price, s.max_price)
    splits = split(items, s.val, s.test, s.seed)
    out.mkdir(parents=True, exist_ok=True)
    try:
        for name, part in splits.items():
            with open(out / f"{name}.jsonl", "w", encoding="utf-8") as f:
                for it in part:
                    f.write(json.dumps(to_row(it), ensure_ascii=False) + "\n")
        record = {
            "settings": asdict(s),
            "funnel": {"read": funnel.read, "dropped": dict(funnel.dropped.most_common()),
                       "kept_after_curation": after_dedupe,
                       "dropped_by_balance": after_dedupe - len(items), "kept": len(items),
                       "splits": {k: len(v) for k, v in splits.items()}},
            "first_drop_of_each_reason": funnel.examples,
        }
        (out / "prepare.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        write_card(out, record, items, splits)
    except BaseException:
        import shutil

        shutil.rmtree(out, ignore_errors=True)
        raise
    return record


def write_card(out: Path, record: dict, items: list[dict], splits: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    prices = [it["price"] for it in items]
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=100)
    ax.hist(prices, bins=50, color="#1f77b4")
    ax.set(xlabel="price ($)", ylabel="items", title=f"prices of the {len(items):,} items kept")
    fig.tight_layout()
    fig.savefig(out / "price_hist.png")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=100)
    ax.hist([it["tokens"] for it in items], bins=40, color="#2e9e44")
    ax.set(xlabel="tokens in the item text (after the cut)", ylabel="items", title="item length")
    fig.tight_layout()
    fig.savefig(out / "token_hist.png")
    plt.close(fig)

    f = record["funnel"]
    s = record["settings"]
    funnel_rows = [f"| rows read | {f['read']:,} |"]
    funnel_rows += [f"| dropped: {reason} | {n:,} |" for reason, n in f["dropped"].items()]
    funnel_rows += [f"| kept after curation | {f['kept_after_curation']:,} |"]
    if s["balance"]:
        funnel_rows += [f"| dropped by --balance | {f['dropped_by_balance']:,} |"]
    funnel_rows += [f"| kept: train / val / test | {f['splits']['train']:,} / {f['splits']['val']:,} / "
                    f"{f['splits']['test']:,} |"]
    samples = "\n\n".join("```text\n" + to_row(it)["prompt"] + to_row(it)["completion"] + "\n```"
                          for it in splits["train"][:3])
    settings = "\n".join(f"| {k} | {v} |" for k, v in s.items())
    card = f"""# Data card: {Path(s['source']).name}

Made by `pricetune prepare` from `{s['source']}`; train with `pricetune train --dataset {out}`.
Each row: `{{"prompt": ..., "completion": "64.00", "price": 64.3}}` (completion: the whole-dollar price).

## Funnel

| step | rows |
|---|---|
{chr(10).join(funnel_rows)}

## Prices and lengths

![prices](price_hist.png)

![tokens](token_hist.png)

Median price ${sorted(prices)[len(prices) // 2]:,.2f}; range ${min(prices):,.2f} - ${max(prices):,.2f}.

## Samples (train)

{samples}

## Settings

| setting | value |
|---|---|
{settings}
"""
    (out / "README.md").write_text(card, encoding="utf-8")


def add_prepare_arguments(p) -> None:
    p.description = (
        "Turn a raw product catalog (CSV, JSONL, JSON, parquet, a folder of them, or a Hub dataset) into "
        "train/val/test files in the course's prompt/completion format, with the course's curation and a data card.")
    d = PrepareSettings("", "")
    p.add_argument("source", help="A file, a folder of files, or a Hub dataset id.")
    p.add_argument("--out", required=True, help="New folder for train/val/test.jsonl and the data card.")
    p.add_argument("--price-column", help=f"The price column (default: the first of {', '.join(PRICE_NAMES)}).")
    p.add_argument("--text-columns", type=lambda v: [c.strip() for c in v.split(",") if c.strip()],
                   help="Columns that make the item text, each a 'Name: value' line (default: title, category, "
                   "brand, description, features, details, found by name).")
    p.add_argument("--seed", type=int, default=d.seed, help=f"Seed for the split and --balance (default {d.seed}).")
    p.add_argument("--val", type=int, default=d.val, help=f"Items in the val split (default {d.val}).")
    p.add_argument("--test", type=int, default=d.test, help=f"Items in the test split (default {d.test}).")
    p.add_argument("--min-price", type=float, default=d.min_price, help=f"Lowest price kept (default {d.min_price}).")
    p.add_argument("--max-price", type=float, default=d.max_price, help=f"Highest price kept (default {d.max_price}).")
    p.add_argument("--min-chars", type=int, default=d.min_chars,
                   help=f"Shortest item text kept, in characters (default {d.min_chars}, the course's).")
    p.add_argument("--max-tokens", type=int, default=d.max_tokens,
                   help=f"Item text cut to this many tokens of --base-model's tokenizer (default {d.max_tokens}).")
    p.add_argument("--balance", action="store_true", help="Cap the items per price band (cheap items don't swamp the set).")
    p.add_argument("--balance-cap", type=int, default=d.balance_cap,
                   help=f"With --balance: items per band at most (default {d.balance_cap}; {BANDS} bands).")
    p.add_argument("--base-model", default=d.base_model, help=f"Tokenizer for the cut (default {d.base_model}).")
    p.add_argument("--limit", type=int, help="Stop after N kept items (a quick look at a huge catalog).")


def prepare_cli(ns) -> int:
    s = PrepareSettings(source=ns.source, out=ns.out, price_column=ns.price_column, text_columns=ns.text_columns,
                        seed=ns.seed, val=ns.val, test=ns.test, min_price=ns.min_price, max_price=ns.max_price,
                        min_chars=ns.min_chars, max_tokens=ns.max_tokens, balance=ns.balance,
                        balance_cap=ns.balance_cap, base_model=ns.base_model, limit=ns.limit)
    record = prepare(s)
    f = record["funnel"]
    print(f"read {f['read']:,} rows, kept {f['kept']:,}: train {f['splits']['train']:,}, val {f['splits']['val']:,}, "
          f"test {f['splits']['test']:,}")
    for reason, n in f["dropped"].items():
        print(f"  dropped {n:,}: {reason}")
    print(f"data: {ns.out}  (card: {ns.out}/README.md; train with: pricetune train --dataset {ns.out})")
    return 0
