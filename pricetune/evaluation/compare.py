"""Evaluations side by side: a table, a chart, and each against the first item by item.

    pricetune evaluate --compare runs/mlp-test runs/mine/eval-test --output-dir runs/compare

Writes compare.json and compare.png, and paired.json when every evaluation scored the same items.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from ..data.files import split_jsonl
from ..errors import PricetuneError
from .report import print_table


def display_names(dirs: list[Path]) -> list[str]:
    """Short distinct names for evaluation folders: the folder's name, with as many parent folders as it
    takes to tell them apart (runs/a/test and runs/b/test are a/test and b/test; eval-* folders keep
    their run's name)."""
    parts = [d.resolve().parts for d in dirs]
    for depth in range(1, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names) and not any(n.startswith("eval") for n in names):
            return names
    return [str(d) for d in dirs]


def compare_cli(ns) -> int:
    dirs = [Path(d) for d in ns.compare]
    metric_sets = []
    for d in dirs:
        if not (d / "metrics.json").is_file():
            raise PricetuneError(f"{d} is not an evaluation directory (no metrics.json)")
        metric_sets.append(json.loads((d / "metrics.json").read_text()))
    names = display_names(dirs)
    paired = paired_against_first(dirs, names)
    print_table("comparison", names, metric_sets)
    out = Path(ns.output_dir) if ns.output_dir else Path("runs") / f"compare-{datetime.now():%Y%m%d-%H%M%S}"
    out.mkdir(parents=True, exist_ok=True)
    if paired:
        (out / "paired.json").write_text(json.dumps(paired, indent=2) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.6 * len(dirs) + 2), dpi=110)
    maes = [m["mae"] for m in metric_sets]
    ax.barh(names, maes, xerr=[m.get("mae_ci95", 0) for m in metric_sets], color="#1f77b4", capsize=4)
    ax.set(xlabel="mean absolute error ($), with 95% CI", title="comparison")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(out / "compare.png")
    plt.close(fig)
    (out / "compare.json").write_text(json.dumps(dict(zip(names, metric_sets)), indent=2) + "\n")
    print(f"eval: {out}")
    return 0


def paired_against_first(dirs: list[Path], names: list[str]) -> dict | None:
    """Each evaluation against the first, item by item, when all scored the same items (their
    predictions.jsonl agree on titles and prices); printed and returned. None otherwise."""
    from rich.console import Console
    from rich.table import Table

    from ..metrics import paired_difference

    files = [d / "predictions.jsonl" for d in dirs]
    if not all(f.is_file() for f in files):
        return None
    read = [[json.loads(line) for line in split_jsonl(f.read_text(encoding="utf-8")) if line.strip()] for f in files]
    items = [[(r["title"], r["truth"]) for r in rows] for rows in read]
    if any(i != items[0] for i in items[1:]):
        Console().print("(not paired: the evaluations scored different items)")
        return None
    truths = [t for _, t in items[0]]
    guesses = [[r["price"] for r in rows] for rows in read]
    reference = guesses[0]
    out = {"reference": names[0], "n": len(truths), "against_reference": {}}
    t = Table(title=f"item by item, against {names[0]} ({len(truths)} items)")
    for c in ("", "MAE difference", "± 95%", "closer on", "further on"):
        t.add_column(c, justify="right" if c else "left")
    for name, g in zip(names[1:], guesses[1:]):
        d = paired_difference(truths, g, reference)
        out["against_reference"][name] = d
        t.add_row(name, f"{d['mae_diff']:+,.2f}", f"{d['diff_ci95']:,.2f}", f"{d['closer']:.1%}", f"{d['further']:.1%}")
    Console().print(t)
    return out
