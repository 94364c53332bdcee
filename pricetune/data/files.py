"""Data files read and written: JSON Lines (gzipped too), JSON, CSV and TSV, parquet and .xlsx workbooks.
Each reader yields (location, row), so an error names the file and line or row; the writers give priced
rows back in the format a file's name asks for.

    from pricetune.data.files import BadRows, iter_file, write_table_file
    for where, row in iter_file(Path("catalog.csv"), BadRows()): ...
    write_table_file(Path("priced.xlsx"), [{"title": "A kettle", "price_predicted": 31.5}])
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterable

from ..errors import DataError

FILE_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".csv", ".tsv", ".parquet", ".xlsx")
EXCEL_EXTRA = "pip install 'pricetune[excel]'"


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


def _read_jsonl(path: Path, bad: BadRows) -> Iterable[tuple[str, Any]]:
    yield from iter_jsonl(path, bad)


def _decode(path: Path, data: bytes) -> str:
    """UTF-8 (a byte-order mark dropped: it is not part of the first field), UTF-16 behind its mark, else
    Windows-1252: what Excel's plain "CSV" writes on Windows in the Americas and western Europe (a guess,
    said in a note; guessing from the bytes alone misreads such small files more often than not)."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        offset = e.start
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text (invalid byte at offset {offset}); re-save it as UTF-8") from None
    print(f"note: {path} is not UTF-8 (a byte at offset {offset}): read as Windows-1252, Excel's 'CSV' on Windows; "
          "if accented letters read wrong, re-save it as 'CSV UTF-8'", file=sys.stderr)
    return text


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


def openpyxl_for(name: Any):
    """openpyxl, which reads and writes .xlsx files; a DataError naming its extra when it is missing."""
    try:
        import openpyxl
    except ImportError:
        raise DataError(f"{name}: an .xlsx file needs openpyxl: {EXCEL_EXTRA} (or use a .csv file)") from None
    return openpyxl


def iter_workbook(source: Path | BinaryIO, name: Any) -> Iterable[tuple[str, dict]]:
    """The rows of each sheet with the first sheet's header (a catalog split by sheet), the first row of
    each its header; blank rows and columns without a header skipped, a sheet with another header said.
    `source`: a path or the file's bytes (an upload); `name`: the file, as messages and locations say it."""
    openpyxl = openpyxl_for(name)
    try:
        # read_only streams the rows; data_only gives a formula's last computed value, not its text
        book = openpyxl.load_workbook(source, read_only=True, data_only=True)
    except Exception as e:  # a zip that is no workbook, a missing part: several unrelated types
        raise DataError(f"{name}: not a readable .xlsx workbook ({type(e).__name__}: {e})") from None
    try:
        first = None
        for sheet in book.worksheets:
            cells = sheet.iter_rows(values_only=True)
            header = [None if h is None else str(h).strip() or None for h in next(cells, ())]
            while header and header[-1] is None:  # a cell written right of the table widens every row
                header.pop()
            first = header if first is None else first
            if header != first:
                print(f"note: {name}: sheet {sheet.title!r} not read: its header is not the first sheet's", file=sys.stderr)
                continue
            at = f"{name}:" if len(book.worksheets) == 1 else f"{name}[{sheet.title}]:"
            for n, values in enumerate(cells, start=2):
                if any(v not in (None, "") for v in values):
                    yield f"{at}{n}", {h: v for h, v in zip(header, values) if h}
    finally:
        book.close()


def _read_xlsx(path: Path, bad: BadRows) -> Iterable[tuple[str, Any]]:
    yield from iter_workbook(path, path)


def write_xlsx(target: Path | BinaryIO, rows: list[dict], columns: Iterable[str] = ()) -> None:
    """Rows as a one-sheet workbook, the header as `format_table` makes a CSV's; `target`: a path or a
    binary stream."""
    book = openpyxl_for(target).Workbook(write_only=True)
    sheet = book.create_sheet()
    header = list(dict.fromkeys([*columns, *(k for row in rows for k in row)]))
    sheet.append(header)
    for row in rows:
        sheet.append([json.dumps(v) if isinstance(v, (list, dict)) else v for v in map(row.get, header)])
    book.save(target)


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
