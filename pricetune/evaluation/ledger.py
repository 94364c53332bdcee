"""The test ledger: one line per evaluation of a test split, so that a test split's looks are counted.

    pricetune evaluate runs/x --limit 0 --leaderboard docs/results/leaderboard.json   # -> docs/results/test-ledger.jsonl
    pricetune evaluate runs/x --limit 0                                               # -> the user's ledger

A test split is for the last word on a choice made elsewhere (on val): every look at it spends a
little of its honesty, and a choice changed after a look is a choice made on test. `evaluate` on a
test split says how many times that split (by its fingerprint: the hash of its rows, whatever file
or folder holds them, in whatever order) was scored before, and records this look. Without
--leaderboard the ledger is $PRICETUNE_LEDGER, else runs/test-ledger.jsonl in the working directory
(where evaluations land by default): pricetune writes nowhere outside the directories it is given or
started in.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from ..data.rows import fingerprint
from ..errors import PricetuneError

LEDGER_NAME = "test-ledger.jsonl"


def ledger_path(leaderboard: str | Path | None = None) -> Path:
    """Beside a leaderboard file when there is one, else the user's ledger."""
    if leaderboard:
        return Path(leaderboard).parent / LEDGER_NAME
    if os.environ.get("PRICETUNE_LEDGER"):
        return Path(os.environ["PRICETUNE_LEDGER"])
    return Path("runs") / LEDGER_NAME


def read(path: Path) -> list[dict]:
    """The ledger's lines; a line that is not JSON stops here, naming it (a look must not go uncounted)."""
    if not path.is_file():
        return []
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise PricetuneError(f"{path}:{n}: the test ledger has a line that is not JSON ({e.msg}); repair it "
                                 "by hand (each line records one look at a test split) and run again") from None
    return out


def marks(rows: list[dict]) -> tuple[str, str]:
    """A split's two fingerprints: of its rows in the file's order (every ledger line has it) and in a
    fixed order (`rows_fingerprint`: newer lines have it too), so a reshuffled file is the same split."""
    return fingerprint(rows), fingerprint(sorted(rows, key=lambda r: (r["prompt"], float(r["price"]))))


def looks(path: Path, split: tuple[str, str]) -> list[dict]:
    """The ledger's earlier lines for this split (its `marks`)."""
    in_order, any_order = split
    return [e for e in read(path) if e.get("fingerprint") == in_order or e.get("rows_fingerprint") == any_order]


def record(path: Path, split: tuple[str, str], dataset: str, what: str, n: int, mae: float) -> dict:
    """One line for this look, numbered: the split's first look is 1."""
    entry = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "fingerprint": split[0],
             "rows_fingerprint": split[1], "look": len(looks(path, split)) + 1, "dataset": dataset, "scored": what,
             "n": n, "mae": round(mae, 2)}
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
    return entry
