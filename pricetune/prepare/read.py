"""The sources `pricetune prepare` reads, streamed: files (CSV or TSV, JSONL, JSON, parquet by record batch,
an .xlsx's sheets), a folder of them, or a Hub dataset (streaming=True); each row comes with where it
was read."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from ..data import FILE_SUFFIXES
from ..data.files import file_kind
from ..errors import DataError


def _files(source: Path) -> list[Path]:
    if source.is_file():
        return [source]
    files = sorted(p for p in source.rglob("*") if file_kind(p) in FILE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"{source}: no {', '.join(FILE_SUFFIXES)} files in this folder")
    return files


def _read_file(path: Path) -> Iterator[tuple[str, Any]]:
    """The rows of one file, as datasets are read; a line that is not JSON or not UTF-8 comes as None
    (an unreadable row, counted by curation)."""
    from ..data.files import BadRows, iter_file

    bad = BadRows()
    seen = 0
    for where, row in iter_file(path, bad):
        for _ in range(sum(bad.counts.values()) - seen):
            yield f"{path}: an unreadable line before {where.rsplit(':', 1)[-1]}", None
        seen = sum(bad.counts.values())
        yield where, row
    for _ in range(sum(bad.counts.values()) - seen):
        yield f"{path}: an unreadable line at the end", None


def _read_hub(dataset_id: str, config: str | None = None, split: str = "train") -> Iterator[tuple[str, Any]]:
    from ..data import hub_offline

    if hub_offline():
        raise DataError(f"{dataset_id!r} looks like a Hub dataset id, and HF_HUB_OFFLINE is set; pass a local "
                        "CSV, JSONL, JSON or parquet file or folder instead")
    from datasets import load_dataset

    try:
        ds = load_dataset(dataset_id, config, split=split, streaming=True)
    except Exception as e:  # network, auth, not found: many types
        hint = ("" if config else "; a dataset with several configurations (one per category, say) needs "
                "--hub-config NAME, and one without a 'train' split --hub-split NAME")
        raise DataError(f"could not open Hub dataset {dataset_id!r}: {type(e).__name__}: {str(e)[:200]}{hint}") from None
    return ((f"{dataset_id} row {n}", row) for n, row in enumerate(ds, start=1))


def read_source(source: str, hub_config: str | None = None, hub_split: str = "train") -> Iterator[tuple[str, Any]]:
    """The source's rows; a missing path or a wrong option is refused here, before any row is read."""
    from ..data import looks_local

    path = Path(source)
    if path.exists() and hub_config:
        raise DataError(f"--hub-config is for a Hub dataset; {source} is a local path")
    if path.exists():
        return (row for f in _files(path) for row in _read_file(f))
    if looks_local(source) or "/" not in source:
        raise DataError(f"source not found: {source} (no such file or folder)")
    return _read_hub(source, hub_config, hub_split)
