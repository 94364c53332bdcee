"""Files of descriptions for `POST /price/file`: CSV or JSONL in, the same rows with a price out
(`price`, or `price_predicted` beside a file's own `price` column, which is kept).

A row that cannot be priced (no description, more CSV fields than the header) keeps its place and gets
its reason in an `error` column; a file that cannot be read at all is refused whole (ValueError, a 400).
"""

from __future__ import annotations

import csv
import io
import json

from ..data.catalog import CATALOG_COLUMNS, column_key
from ..data.rows import (ITEM_TEXT_FIELDS, ITEM_TEXT_WANTED, csv_delimiter, item_text_field, item_text_of, split_jsonl,
                         unpriced_note)

MAX_FILE_ROWS = 5000
EXTRA = "\x00extra"  # DictReader's key for fields past the header's


def read_table(fmt: str, content: str) -> tuple[list[dict], list[str], dict[int, str]]:
    """Rows of an upload, the CSV's columns in order, and each bad row's reason by index."""
    content = content.removeprefix("\ufeff")  # Excel's byte-order mark would rename the first column
    rows, columns, problems = (_read_csv if fmt == "csv" else _read_jsonl)(content)
    if not rows:
        raise ValueError("the file holds no rows")
    if len(rows) > MAX_FILE_ROWS:
        raise ValueError(f"at most {MAX_FILE_ROWS} rows per file (got {len(rows)})")
    return rows, columns, problems


def _read_csv(content: str):
    reader = csv.DictReader(io.StringIO(content, newline=""), restkey=EXTRA,
                            delimiter=csv_delimiter(content.partition("\n")[0], ".csv"))
    rows, problems = [], {}
    try:
        for row in reader:
            if EXTRA in row:
                extra = row.pop(EXTRA)
                problems[len(rows)] = f"line {reader.line_num}: {len(extra)} more field(s) than the header"
            rows.append(row)
    except csv.Error as e:  # e.g. a field over the csv module's size limit: nothing after it can be trusted
        raise ValueError(f"line {reader.line_num}: not readable as CSV ({e})") from None
    columns = list(reader.fieldnames or [])
    if not any(column_key(c) in ITEM_TEXT_FIELDS + CATALOG_COLUMNS for c in columns):
        raise ValueError(f"the CSV needs {ITEM_TEXT_WANTED} (found: {', '.join(columns) or 'none'})")
    return rows, columns, problems


def _read_jsonl(content: str):
    rows = []
    for n, line in enumerate(split_jsonl(content), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"line {n}: not JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise ValueError(f"line {n}: each line must be a JSON object")
        rows.append(row)
    return rows, [], {}


def row_text(row: dict) -> str:
    return item_text_of(row) or ""


def file_note(rows: list[dict]) -> str | None:
    """What pricing leaves out of the file's text columns (its first row with a text to price says)."""
    first = next((r for r in rows if item_text_field(r)), None)
    return unpriced_note(first) if first is not None else None


def write_table(fmt: str, rows: list[dict], columns: list[str], outcomes) -> str:
    # a file that brings prices of its own (the true ones, say) keeps them: ours go beside them
    name = "price_predicted" if any("price" in row for row in rows) else "price"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns + [c for c in (name, "error") if c not in columns],
                                extrasaction="ignore")
        writer.writeheader()
        for row, (price, error) in zip(rows, outcomes):
            writer.writerow({**row, name: "" if price is None else f"{price:.2f}", "error": error or ""})
        return out.getvalue()
    return "".join(json.dumps({**row, name: price, **({"error": error} if error else {})}) + "\n"
                   for row, (price, error) in zip(rows, outcomes))
