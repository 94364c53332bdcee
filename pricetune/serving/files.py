"""Files of descriptions for `POST /price/file`: CSV, TSV, JSON Lines, a JSON list or an .xlsx workbook
(its bytes in base64) in, the same rows with a price out, in the same format (`price`, or
`price_predicted` beside a file's own `price` column, which is kept; a CSV keeps its separator).

A row that cannot be priced (no description, more CSV fields than the header) keeps its place and gets
its reason in an `error` column; a file that cannot be read at all is refused whole (ValueError, a 400).
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
from dataclasses import dataclass, field

from ..data.catalog import CATALOG_COLUMNS, column_key
from ..data.files import csv_delimiter, format_table, iter_workbook, split_jsonl, write_xlsx
from ..data.rows import ITEM_TEXT_FIELDS, ITEM_TEXT_WANTED, item_text_field, item_text_of, unpriced_note
from ..errors import DataError

FORMATS = ("csv", "tsv", "jsonl", "json", "xlsx")
MAX_FILE_ROWS = 5000
EXTRA = "\x00extra"  # DictReader's key for fields past the header's


@dataclass
class Table:
    rows: list[dict]
    columns: list[str] = field(default_factory=list)  # a CSV's header, in order
    problems: dict[int, str] = field(default_factory=dict)  # each bad row's reason, by its index
    delimiter: str = ","  # a CSV's, written back as it came


def read_table(fmt: str, content: str) -> Table:
    """The rows of an upload in one of FORMATS."""
    content = content.removeprefix("\ufeff")  # Excel's byte-order mark would rename the first column
    readers = {"csv": _read_csv, "tsv": _read_csv, "jsonl": _read_jsonl, "json": _read_json, "xlsx": _read_xlsx}
    table = readers[fmt](content, fmt)
    if not table.rows:
        raise ValueError("the file holds no rows")
    if len(table.rows) > MAX_FILE_ROWS:
        raise ValueError(f"at most {MAX_FILE_ROWS} rows per file (got {len(table.rows)})")
    return table


def _read_csv(content: str, fmt: str) -> Table:
    delimiter = csv_delimiter(content.partition("\n")[0], f".{fmt}")
    reader = csv.DictReader(io.StringIO(content, newline=""), restkey=EXTRA, delimiter=delimiter)
    rows, problems = [], {}
    try:
        for row in reader:
            if EXTRA in row:
                extra = row.pop(EXTRA)
                problems[len(rows)] = f"line {reader.line_num}: {len(extra)} more field(s) than the header"
            rows.append(row)
    except csv.Error as e:  # e.g. a field over the csv module's size limit: nothing after it can be trusted
        raise ValueError(f"line {reader.line_num}: not readable as CSV ({e})") from None
    return Table(rows, _text_columns(list(reader.fieldnames or []), "CSV"), problems, delimiter)


def _read_jsonl(content: str, fmt: str) -> Table:
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
    return Table(rows)


def _read_json(content: str, fmt: str) -> Table:
    try:
        rows = json.loads(content)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":  # a .json file with an object a line is JSON Lines by another name
            return _read_jsonl(content, "jsonl")
        raise ValueError(f"line {e.lineno}: not JSON ({e.msg})") from None
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise ValueError("a JSON file must hold a list of objects, one an item (JSON Lines, an object a line: "
                         "format jsonl)")
    return Table(rows)


def _read_xlsx(content: str, fmt: str) -> Table:
    try:
        rows = [row for _, row in iter_workbook(io.BytesIO(base64.b64decode(content, validate=True)), "the workbook")]
    except binascii.Error:
        raise ValueError("an xlsx file's content is its bytes in base64") from None
    except DataError as e:
        raise ValueError(str(e)) from None
    return Table(rows, _text_columns(list(rows[0]) if rows else [], "workbook"))


def _text_columns(columns: list[str], kind: str) -> list[str]:
    """A table's columns, refused when none holds a text to price."""
    if not any(column_key(c) in ITEM_TEXT_FIELDS + CATALOG_COLUMNS for c in columns):
        raise ValueError(f"the {kind} needs {ITEM_TEXT_WANTED} (found: {', '.join(map(str, columns)) or 'none'})")
    return columns


def row_text(row: dict) -> str:
    return item_text_of(row) or ""


def file_note(rows: list[dict]) -> str | None:
    """What pricing leaves out of the file's text columns (its first row with a text to price says)."""
    first = next((r for r in rows if item_text_field(r)), None)
    return unpriced_note(first) if first is not None else None


def write_table(fmt: str, table: Table, outcomes) -> str:
    """The table's rows with their prices (and errors), in the format and with the separator they came in."""
    rows = table.rows
    # a file that brings prices of its own (the true ones, say) keeps them: ours go beside them
    name = "price_predicted" if any(column_key(k) == "price" for row in rows for k in row) else "price"
    if fmt == "xlsx":
        out = io.BytesIO()
        write_xlsx(out, [{**row, name: price, "error": error} for row, (price, error) in zip(rows, outcomes)], table.columns)
        return base64.b64encode(out.getvalue()).decode()
    if fmt in ("csv", "tsv"):
        priced = [{**row, name: "" if price is None else f"{price:.2f}", "error": error or ""}
                  for row, (price, error) in zip(rows, outcomes)]
    else:
        priced = [{**row, name: price, **({"error": error} if error else {})} for row, (price, error) in zip(rows, outcomes)]
    return format_table(fmt, priced, table.columns, table.delimiter)
