"""The course's rows: the prompt and completion format, prices read strictly, rows validated, and the
file readers (jsonl, json, csv, tsv, parquet, xlsx) that report a bad row by file and line.

    from pricetune.data import read_rows, make_prompt, completion_price
    rows = read_rows("data/mine/train.jsonl")   # [{prompt, completion, price}, ...]
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import math
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..errors import DataError
from .catalog import catalog_columns, catalog_text, column_key


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
FILE_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".csv", ".tsv", ".parquet", ".xlsx")
EXCEL_EXTRA = "pip install 'pricetune[excel]'"
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


# ------------------------------------------------------------------------------------------------
# Readers: each yields (location, row) so errors can name the file and line or row.


def _read_jsonl(path: Path, bad: BadRows) -> Iterable[tuple[str, Any]]:
    yield from iter_jsonl(path, bad)


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")  # a byte-order mark (Excel, Notepad) is not part of the first field
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (invalid byte at offset {e.start}); re-save it as UTF-8") from None


def _read_json(path: Path, bad: BadRows) -> Iterable[tuple[str, Any]]:
    try:
        data = json.loads(_decode(path, path.read_bytes()))
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


def csv_delimiter(header: str, kind: str) -> str:
    """A tab for .tsv; for .csv a comma, unless the header line holds none and does hold semicolons or
    tabs (a spreadsheet whose decimal mark is a comma exports its columns split by ";")."""
    if kind == ".tsv":
        return "\t"
    return "," if "," in header else max(",;\t", key=header.count)


def _read_csv(path: Path, bad: BadRows) -> Iterable[tuple[str, Any]]:
    text = _decode(path, path.read_bytes())
    delimiter = csv_delimiter(text.partition("\n")[0], file_kind(path))
    # newline="" hands line breaks to the csv module, which alone knows which are inside quoted fields
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        for row in reader:
            # line_num is the physical line just read; the header is line 1
            yield f"{path}:{reader.line_num}", row
    except csv.Error as e:
        raise DataError(f"{path}:{reader.line_num}: malformed CSV: {e}") from None


def _read_parquet(path: Path, bad: BadRows) -> Iterable[tuple[str, Any]]:
    import pyarrow.parquet as pq

    try:
        batches = pq.ParquetFile(path).iter_batches(batch_size=4096)  # streamed: a catalog can be large
        n = 0
        for batch in batches:
            for row in batch.to_pylist():
                n += 1
                yield f"{path}: row {n}", row
    except Exception as e:  # pyarrow raises several unrelated types for a corrupt file
        raise DataError(f"{path}: not a readable parquet file ({e})") from None


def split_jsonl(text: str) -> list[str]:
    """JSON Lines split on "\n" only: str.splitlines() would also split a string at U+2028 or U+0085,
    which JSON allows unescaped."""
    return text.split("\n")


def iter_jsonl(path: Path, bad: BadRows | None = None) -> Iterable[tuple[str, Any]]:
    """(location, object) for each non-blank line. A line that is not UTF-8 or not JSON is counted in
    `bad` and skipped when one is given; without one, the first such line raises DataError."""
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as f:  # binary lines end at b"\n" only
        for n, raw in enumerate(f, start=1):
            where = f"{path}:{n}"
            try:
                line = raw.decode("utf-8-sig" if n == 1 else "utf-8")
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


def openpyxl_for(path: Path):
    """openpyxl, which reads and writes .xlsx files; a DataError naming its extra when it is missing."""
    try:
        import openpyxl
    except ImportError:
        raise DataError(f"{path}: an .xlsx file needs openpyxl: {EXCEL_EXTRA} (or use a .csv file)") from None
    return openpyxl


def _open_workbook(path: Path):
    openpyxl = openpyxl_for(path)
    try:
        # read_only streams the rows; data_only gives a formula's last computed value, not its text
        return openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as e:  # a zip that is no workbook, a missing part: several unrelated types
        raise DataError(f"{path}: not a readable .xlsx workbook ({type(e).__name__}: {e})") from None


def _read_xlsx(path: Path, bad: BadRows) -> Iterable[tuple[str, Any]]:
    """The rows of each sheet with the first sheet's header (a catalog split by sheet), the first row of
    each its header; blank rows and columns without a header skipped, a sheet with another header said."""
    book = _open_workbook(path)
    try:
        first = None
        for sheet in book.worksheets:
            cells = sheet.iter_rows(values_only=True)
            header = [None if h is None else str(h).strip() or None for h in next(cells, ())]
            while header and header[-1] is None:  # a cell written right of the table widens every row
                header.pop()
            first = header if first is None else first
            if header != first:
                print(f"note: {path}: sheet {sheet.title!r} not read: its header is not the first sheet's", file=sys.stderr)
                continue
            at = f"{path}:" if len(book.worksheets) == 1 else f"{path}[{sheet.title}]:"
            for n, values in enumerate(cells, start=2):
                if any(v not in (None, "") for v in values):
                    yield f"{at}{n}", {h: v for h, v in zip(header, values) if h}
    finally:
        book.close()


def write_xlsx(path: Path, rows: list[dict]) -> None:
    """Rows as a one-sheet workbook, the header as `format_table` makes a CSV's."""
    book = openpyxl_for(path).Workbook(write_only=True)
    sheet = book.create_sheet()
    header = list(dict.fromkeys(k for row in rows for k in row))
    sheet.append(header)
    for row in rows:
        sheet.append([json.dumps(v) if isinstance(v, (list, dict)) else v for v in map(row.get, header)])
    book.save(path)


READERS = {".jsonl": _read_jsonl, ".jsonl.gz": _read_jsonl, ".json": _read_json, ".csv": _read_csv,
           ".tsv": _read_csv, ".parquet": _read_parquet, ".xlsx": _read_xlsx}


def file_kind(path: Path) -> str:
    """The data file suffix that says how to read it: ".jsonl.gz" for compressed JSON Lines, else the last."""
    return ".jsonl.gz" if path.name.lower().endswith(".jsonl.gz") else path.suffix.lower()


def iter_file(path: Path, bad: BadRows) -> Iterable[tuple[str, Any]]:
    """(location, raw row) of one data file, by its suffix: the one reader for datasets and `prepare`."""
    reader = READERS.get(file_kind(path))
    if reader is None:
        raise DataError(f"{path}: unsupported file type; use one of {', '.join(FILE_SUFFIXES)}")
    try:
        yield from reader(path, bad)
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror or e})") from None


TABLE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".xlsx": "xlsx"}  # by a name's suffix; else jsonl


def format_table(fmt: str, rows: list[dict], columns: Iterable[str] = (), delimiter: str = ",") -> str:
    """Rows as the text of a csv, tsv, json (a list) or jsonl file. A CSV's header: `columns`, then every
    other key in the order the rows first have it; a list or dict in a CSV cell is written as JSON."""
    if fmt == "json":
        return json.dumps(rows, indent=1, default=str) + "\n"
    if fmt == "jsonl":
        return "".join(json.dumps(row, default=str) + "\n" for row in rows)
    header = list(dict.fromkeys([*columns, *(k for row in rows for k in row)]))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header, delimiter="\t" if fmt == "tsv" else delimiter)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else "" if v is None else v
                         for k, v in row.items()})
    return out.getvalue()


def write_table_file(path: Path, rows: list[dict]) -> str:
    """Rows written to `path` in the format its name says (TABLE_FORMATS, else JSON Lines); returns that format."""
    fmt = TABLE_FORMATS.get(path.suffix.lower(), "jsonl")
    if fmt == "xlsx":
        write_xlsx(path, rows)
    else:
        path.write_text(format_table(fmt, rows), encoding="utf-8")
    return fmt


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
