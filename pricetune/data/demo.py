"""The embedded demo data: plotnine's diamonds (53,940 real retail diamonds with prices) as rows.

    from pricetune.data import demo_rows
    splits = demo_rows()        # test 2,000 / val 1,000 / train the rest, the same on every machine
"""

from __future__ import annotations

import csv
import importlib.util
import random
from pathlib import Path

from ..errors import DataError
from .rows import QUESTION, TRAILER, format_completion


def diamonds_csv() -> Path:
    spec = importlib.util.find_spec("plotnine")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the demo data needs plotnine (the 'demo' extra): pip install 'pricetune[demo]' (make demo installs it)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "diamonds.csv"
    if not path.is_file():
        raise DataError(f"plotnine is installed but {path} is missing; reinstall plotnine")
    return path


def diamond_prompt(d: dict) -> str:
    carat, cut, color, clarity = float(d["carat"]), d["cut"], d["color"], d["clarity"]
    item = (
        f"Title: {carat:.2f} carat {cut} cut round diamond, colour {color}, clarity {clarity}\n"
        f"Category: Jewelry\n"
        f"Description: A loose round brilliant diamond of {carat:.2f} carat with a {cut.lower()} cut, "
        f"colour grade {color} and clarity grade {clarity}.\n"
        f"Details: Depth {float(d['depth']):.1f}%, table {float(d['table']):.0f}%, "
        f"measures {float(d['x']):.2f} x {float(d['y']):.2f} x {float(d['z']):.2f} mm."
    )
    return f"{QUESTION}\n\n{item}{TRAILER}"


def demo_rows(test_size: int = 2000, val_size: int = 1000, seed: int = 1234) -> dict[str, list[dict]]:
    """All diamonds as prompt/completion rows, split by a fixed shuffle (the same on every machine)."""
    with open(diamonds_csv(), newline="", encoding="utf-8") as f:
        rows = [
            {"prompt": diamond_prompt(d), "completion": format_completion(float(d["price"])),
             "price": float(d["price"])}
            for d in csv.DictReader(f)
        ]
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    shuffled = [rows[i] for i in order]
    return {
        "test": shuffled[:test_size],
        "val": shuffled[test_size:test_size + val_size],
        "train": shuffled[test_size + val_size:],
    }
