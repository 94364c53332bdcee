"""The sources `pricetune prepare` reads, streamed: files (CSV, JSONL, JSON, parquet by record batch), a
folder of them, or a Hub dataset (streaming=True); each row comes with where it was read."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterator

from ..data import FILE_SUFFIXES
from ..errors import DataError


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
    from ..data import hub_offline

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
    from ..data import looks_local

    path = Path(source)
    if path.exists():
        for f in _files(path):
            yield from _read_file(f)
    elif looks_local(source) or "/" not in source:
        raise DataError(f"source not found: {source} (no such file or folder)")
    else:
        yield from _read_hub(source)
