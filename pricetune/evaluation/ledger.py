"""The test ledger: one line per evaluation of a test split, so that a test split's looks are counted.

    pricetune evaluate runs/x --limit 0 --leaderboard docs/results/leaderboard.json   # -> docs/results/test-ledger.jsonl
    pricetune evaluate runs/x --limit 0                                               # -> the user's ledger

A test split is for the last word on a choice made elsewhere (on val): every look at it spends a
little of its honesty, and a choice changed after a look is a choice made on test. `evaluate` on a
test split says how many times that split (by its fingerprint: the hash of its rows, whatever file
or folder holds them) was scored before, and records this look. Without --leaderboard the ledger is
$PRICETUNE_LEDGER, else runs/test-ledger.jsonl in the working directory (where evaluations land by
default): pricetune writes nowhere outside the directories it is given or started in.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from ..data.rows import fingerprint

LEDGER_NAME = "test-ledger.jsonl"


def ledger_path(leaderboard: str | Path | None = None) -> Path:
    """Beside a leaderboard file when there is one, else the user's ledger."""
    if leaderboard:
        return Path(leaderboard).parent / LEDGER_NAME
    if os.environ.get("PRICETUNE_LEDGER"):
        return Path(os.environ["PRICETUNE_LEDGER"])
    return Path("runs") / LEDGER_NAME


def read(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def looks(path: Path, split_fingerprint: str) -> list[dict]:
    """The ledger's earlier lines for this split."""
    return [e for e in read(path) if e.get("fingerprint") == split_fingerprint]


def record(path: Path, split_fingerprint: str, dataset: str, what: str, n: int, mae: float) -> dict:
    entry = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "fingerprint": split_fingerprint,
             "dataset": dataset, "scored": what, "n": n, "mae": round(mae, 2)}
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
    return entry
