"""Prices kept as they come, so that a failure or Ctrl-C after hours of pricing loses one part at most,
and the same command continues where it stopped: `predict --file ... --out`, `evaluate` and
`calibrate` of a run or ensemble.

    pricetune predict --run runs/mine --file catalog.csv --out priced.csv   # Ctrl-C after a while
    pricetune predict --run runs/mine --file catalog.csv --out priced.csv   # prices only the rest

The prices go to `priced.csv.partial` beside the output (JSON Lines: the model's key, then one line
per priced text, by its hash), and the file goes once the output is written. A text is taken from
there only when the same model, decoding and batch size priced it: another run, or the same run
trained further, prices everything again.
"""

from __future__ import annotations

import hashlib
import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from ..intervals import CALIBRATION_FILE

PART = 128  # items priced between two writes: about 16 s of a regress run on 2 CPU cores

PriceFn = Callable[[list[str]], list[tuple[str | None, float | None]]]


def folder_stamp(path: str | None) -> list:
    """A local folder by its place and the time its files were last written (nothing for a Hub id), but
    for the files no price depends on: kept prices (a calibration keeps its own there) and ranges."""
    folder = Path(path).resolve() if path else None
    if folder is None or not folder.is_dir():
        return []
    files = [f for f in folder.iterdir() if f.is_file() and not f.name.endswith(".partial") and f.name != CALIBRATION_FILE]
    return [str(folder), max((f.stat().st_mtime_ns for f in files), default=0)]


def model_key(ns) -> str:
    """What `predict`'s prices depend on: the model (a run, adapter, ensemble or exported folder by its
    files), how it is loaded and how its answers are read."""
    names = ("run", "adapter", "base_model", "no_adapter", "quantization", "precision", "no_merge", "decode",
             "samples", "batch_size", "ensemble")
    what = [getattr(ns, name, None) for name in names]
    for name in ("run", "adapter", "ensemble", "base_model"):
        what += folder_stamp(getattr(ns, name, None))
    if getattr(ns, "ensemble", None):  # and its member runs: one trained further prices anew
        from .members import Ensemble

        what += [folder_stamp(m.spec) for m in Ensemble.load(ns.ensemble).members if not m.classical]
    return hashlib.sha256(json.dumps(what).encode()).hexdigest()[:16]


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def partial_path(out: Path) -> Path:
    """Where the prices for OUT are kept until OUT is written (beside it: `--output-dir .` too)."""
    out = out.resolve() if out.name in ("", "..") else out
    return out.with_name(out.name + ".partial")


def read_kept(path: Path, key: str) -> dict[str, list]:
    """The prices an earlier try of the same model kept: {text key: [answer, price]}. A line cut short by a
    kill is passed over."""
    if not path.is_file():
        return {}
    lines = path.read_text(encoding="utf-8").splitlines()
    try:
        if json.loads(lines[0]).get("model") != key:
            return {}
    except (IndexError, ValueError, AttributeError):
        return {}
    kept = {}
    for line in lines[1:]:
        try:
            row = json.loads(line)
            kept[row["text"]] = [row["answer"], row["price"]]
        except (ValueError, KeyError, TypeError):
            continue
    return kept


@contextmanager
def kept_file(path: Path, key: str, kept: dict):
    """OUT.partial to add prices to (None under a launcher's other ranks: rank 0 writes). It starts anew
    unless it holds prices of this model, which stay."""
    from .. import distributed as dist

    if not dist.is_main():
        yield None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a" if kept else "w", encoding="utf-8") as f:
        if not kept:
            f.write(json.dumps({"model": key}) + "\n")
        else:
            with path.open("rb") as tail:  # its last byte only: read_kept has read the whole file once
                tail.seek(-1, 2)
                if tail.read(1) != b"\n":
                    f.write("\n")  # after a line a kill cut short
        yield f


def price_keeping(texts: list[str], price: PriceFn, out: Path, key: str, log=None) -> list:
    """(answer, price) for each text, each text priced once, in parts, every part added to OUT.partial as
    it is priced; what an earlier try of the same model kept there is taken, not priced again."""
    from tqdm.auto import tqdm

    from .. import distributed as dist

    main = dist.is_main()
    log = log or (lambda line: print(line, file=sys.stderr) if main else None)
    path = partial_path(out)
    kept = dist.agree(read_kept(path, key) if main else None)  # rank 0's reading, before it writes
    todo = list(dict.fromkeys(t for t in texts if text_key(t) not in kept))
    if kept:
        log(f"continuing from {path}: {len(set(texts)) - len(todo)} item(s) priced by an earlier try, {len(todo)} to go")
    size = PART * dist.world_size()
    with kept_file(path, key, kept) as f, \
            tqdm(total=len(todo), desc="pricing", unit="item", file=sys.stderr, disable=len(todo) < 2 or not main) as bar:
        try:
            for start in range(0, len(todo), size):
                part = todo[start:start + size]
                for text, (answer, value) in zip(part, price(part)):
                    kept[text_key(text)] = [answer, value]
                    if f is not None:
                        f.write(json.dumps({"text": text_key(text), "answer": answer, "price": value}) + "\n")
                if f is not None:
                    f.flush()
                bar.update(len(part))
        except BaseException:
            log(f"kept the prices of {len(kept)} item(s) in {path}: the same command continues from them")
            raise
    return [tuple(kept[text_key(t)]) for t in texts]
