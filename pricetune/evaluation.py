"""Evaluation: price a test split and report how good the prices are, as numbers, charts and a page.

    pricetune evaluate runs/price-...-demo                          # the run's test split, 200 items
    pricetune evaluate runs/price-... --dataset ../shared/data/amazon-items --limit 576
    pricetune evaluate --base-model smollm2-135m --no-adapter --dataset ../shared/data/amazon-items
    pricetune evaluate --predictions preds.jsonl                    # anyone's predictions, same rules
    pricetune evaluate --baseline median --dataset ../shared/data/amazon-items
    pricetune evaluate --compare runs/a/eval-x runs/b/eval-y --output-dir runs/compare

Writes metrics.json, predictions.jsonl, scatter.png, error_trend.png and report.html (one
self-contained page) to the evaluation directory; the last line printed is `eval: <dir>`.
"""

from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from . import distributed as dist
from .errors import PricetuneError
from .metrics import colour, compute_metrics, parse_price, running_mean_ci

COLOURS = {"green": "#2e9e44", "orange": "#f08c00", "red": "#d62728"}
METRIC_LABELS = [
    ("n", "items", "{:.0f}"), ("failed", "failed parses", "{:.0f}"), ("mae", "mean absolute error", "${:,.2f}"),
    ("mae_ci95", "± 95% CI of the mean", "${:,.2f}"), ("median_ae", "median absolute error", "${:,.2f}"),
    ("rmse", "RMSE", "${:,.2f}"), ("mse", "MSE", "{:,.1f}"), ("rmsle", "RMSLE", "{:.3f}"), ("r2", "R²", "{:.3f}"),
    ("mape", "mean absolute % error", "{:.1f}%"), ("hit_green", "green (< $40 or < 20%)", "{:.1%}"),
    ("hit_orange", "orange (< $80 or < 40%)", "{:.1%}"), ("hit_red", "red", "{:.1%}"),
]


def fmt_metric(key: str, value) -> str:
    spec = next((f for k, _, f in METRIC_LABELS if k == key), "{}")
    return "n/a" if value is None else spec.format(value)


def item_title(prompt: str) -> str:
    """The item's title line ("Title: ..."), else the first line after the question."""
    for line in prompt.splitlines():
        if line.startswith("Title:"):
            return line.removeprefix("Title:").strip()
    lines = [l for l in prompt.splitlines() if l.strip()]
    return (lines[1] if len(lines) > 1 else lines[0] if lines else "")[:120]


# ------------------------------------------------------------------------------------------------
# Outputs


def item_category(prompt: str) -> str:
    """The item's "Category:" line, if it has one."""
    for line in prompt.splitlines():
        if line.startswith("Category:"):
            return line.removeprefix("Category:").strip() or "unknown"
    return "unknown"


def score(titles: list[str], truths: list[float], texts: list[str], guesses: list[float | None],
          categories: list[str] | None = None) -> tuple[dict, list[dict]]:
    metrics = compute_metrics(truths, guesses)
    rows = []
    categories = categories or ["unknown"] * len(truths)
    for title, truth, text, guess, category in zip(titles, truths, texts, guesses, categories):
        g = 0.0 if guess is None else guess
        # a failed parse is red whatever the truth: $0 being "close" to a cheap item is no success
        rows.append({"title": title, "category": category, "truth": truth, "text": text, "price": guess,
                     "error": abs(g - truth), "colour": "red" if guess is None else colour(truth, g)})
    return metrics, rows


PRICE_BANDS = [(0, 25), (25, 50), (50, 100), (100, 250), (250, 500), (500, float("inf"))]


def breakdown(rows: list[dict]) -> dict:
    """Where the error is: MAE and share of the total absolute error by true-price band and by
    category (categories with fewer than 5 items are pooled as "other")."""
    total = sum(r["error"] for r in rows) or 1.0

    def group(key) -> list[dict]:
        groups: dict[str, list[dict]] = {}
        for r in rows:
            groups.setdefault(key(r), []).append(r)
        out = [{"group": g, "n": len(rs), "mae": sum(r["error"] for r in rs) / len(rs),
                "share_of_error": sum(r["error"] for r in rs) / total,
                "mean_truth": sum(r["truth"] for r in rs) / len(rs),
                "mean_guess": sum((r["price"] or 0.0) for r in rs) / len(rs)} for g, rs in groups.items()]
        return sorted(out, key=lambda d: -d["share_of_error"])

    def band(r) -> str:
        lo, hi = next((lo, hi) for lo, hi in PRICE_BANDS if lo <= r["truth"] < hi)
        return f"${lo}+" if hi == float("inf") else f"${lo}-{hi}"

    counts: dict[str, int] = {}
    for r in rows:
        counts[r["category"]] = counts.get(r["category"], 0) + 1
    by_band = sorted(group(band), key=lambda d: float(d["group"].strip("$+").split("-")[0]))
    return {"by_price_band": by_band,
            "by_category": group(lambda r: r["category"] if counts[r["category"]] >= 5 else "other")}


def plain_text(text: str) -> str:
    """Escape matplotlib's math-text markers: a title with two "$" would otherwise lose them."""
    return text.replace("$", r"\$")


def plot_scatter(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    priced = [r for r in rows if r["price"] is not None]
    failed = [r for r in rows if r["price"] is None]
    top = max([r["truth"] for r in rows] + [r["price"] for r in priced] + [1.0]) * 1.05
    fig, ax = plt.subplots(figsize=(6.5, 6.5), dpi=110)
    ax.plot([0, top], [0, top], color="#888", lw=1, label="y = x")
    ax.scatter([r["truth"] for r in priced], [r["price"] for r in priced], s=10,
               c=[COLOURS[r["colour"]] for r in priced], alpha=0.8)
    if failed:  # apart from real guesses: no price at all, drawn on the x axis
        ax.scatter([r["truth"] for r in failed], [0.0] * len(failed), s=28, marker="x", color=COLOURS["red"],
                   label=f"no price ({len(failed)})", clip_on=False)
    ax.set(xlim=(0, top), ylim=(0, top), xlabel="true price ($)", ylabel="predicted price ($)",
           title=plain_text(title))
    ax.set_aspect("equal")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_trend(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    means, halves = running_mean_ci([r["error"] for r in rows])
    x = list(range(1, len(means) + 1))
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    ax.fill_between(x, [max(0.0, m - h) for m, h in zip(means, halves)], [m + h for m, h in zip(means, halves)],
                    color="#1f77b4", alpha=0.2, label="95% confidence interval")
    ax.plot(x, means, color="#1f77b4", label="running mean absolute error")
    ax.set(xlabel="items evaluated", ylabel="mean absolute error ($)", title=plain_text(title))
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _money(x: float | None) -> str:
    return "—" if x is None else f"${x:,.2f}"


def _breakdown_table(parts: list[dict], table_id: str) -> str:
    head = "<tr><th>group</th><th>items</th><th>MAE</th><th>share of error</th><th>mean truth</th><th>mean guess</th></tr>"
    body = "\n".join(
        f"<tr><td>{html.escape(p['group'])}</td><td>{p['n']}</td><td>${p['mae']:,.2f}</td>"
        f"<td>{p['share_of_error']:.0%}</td><td>${p['mean_truth']:,.2f}</td><td>${p['mean_guess']:,.2f}</td></tr>"
        for p in parts)
    return f'<table id="{table_id}">{head}{body}</table>'


def write_report(out: Path, label: str, metrics: dict, rows: list[dict], settings: dict,
                 parts: dict | None = None) -> None:
    table = "\n".join(f"<tr><td>{html.escape(name)}</td><td id='m-{k}'>{html.escape(fmt_metric(k, metrics.get(k)))}</td></tr>"
                      for k, name, _ in METRIC_LABELS)
    worst = sorted(rows, key=lambda r: -r["error"])[:20]
    worst_rows = "\n".join(
        f"<tr class='{r['colour']}'><td>{html.escape(r['title'][:90])}</td><td>${r['truth']:,.2f}</td>"
        f"<td>{_money(r['price'])}</td>"
        f"<td>${r['error']:,.2f}</td><td><code>{html.escape(repr(r['text'])[:40])}</code></td></tr>"
        for r in worst)
    settings_rows = "\n".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>"
                              for k, v in settings.items())
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pricetune evaluation: {html.escape(label)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }} td, th {{ border: 1px solid #ddd; padding: 4px 10px; text-align: left; }}
tr.green td:first-child {{ border-left: 6px solid {COLOURS['green']}; }}
tr.orange td:first-child {{ border-left: 6px solid {COLOURS['orange']}; }}
tr.red td:first-child {{ border-left: 6px solid {COLOURS['red']}; }}
img {{ max-width: 100%; }} .charts {{ display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }}
</style></head><body>
<h1>{html.escape(label)}</h1>
<p>Mean absolute error <b>{fmt_metric('mae', metrics['mae'])}</b> ± {fmt_metric('mae_ci95', metrics['mae_ci95'])}
over {metrics['n']} items ({metrics['failed']} without a price, counted as $0).</p>
<h2>Metrics</h2><table id="metrics">{table}</table>
<h2>Charts</h2><div class="charts">{_img(out / 'scatter.png', 'truth vs prediction')}{_img(out / 'error_trend.png', 'running error')}</div>
{"" if parts is None else "<h2>Where the error is</h2><h3>By true price</h3>" + _breakdown_table(parts["by_price_band"], "bands") + "<h3>By category</h3>" + _breakdown_table(parts["by_category"], "categories")}
<h2>The 20 worst items</h2>
<table id="worst"><tr><th>item</th><th>truth</th><th>prediction</th><th>error</th><th>model text</th></tr>{worst_rows}</table>
<h2>Settings</h2><table id="settings">{settings_rows}</table>
</body></html>
"""
    (out / "report.html").write_text(page, encoding="utf-8")


def write_outputs(out: Path, label: str, metrics: dict, rows: list[dict], settings: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    with open(out / "predictions.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    short = f"{label}: MAE {fmt_metric('mae', metrics['mae'])}"
    plot_scatter(rows, out / "scatter.png", short)
    plot_trend(rows, out / "error_trend.png", short)
    (out / "settings.json").write_text(json.dumps(settings, indent=2, default=str) + "\n", encoding="utf-8")
    parts = breakdown(rows)
    (out / "breakdown.json").write_text(json.dumps(parts, indent=2) + "\n", encoding="utf-8")
    write_report(out, label, metrics, rows, settings, parts)


def print_table(title: str, columns: list[str], metric_sets: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    t.add_column("metric")
    for c in columns:
        t.add_column(c, justify="right")
    for k, name, _ in METRIC_LABELS:
        t.add_row(name, *[fmt_metric(k, m.get(k)) for m in metric_sets])
    Console().print(t)


# ------------------------------------------------------------------------------------------------
# Sources of predictions


def read_predictions(path: Path) -> tuple[list[str], list[float], list[str], list[float | None]]:
    """A jsonl of predictions made elsewhere: `prediction` (text or number) and `price` (or `completion`)."""
    from .data import completion_price, iter_jsonl

    titles, truths, texts, guesses = [], [], [], []
    for n, (where, row) in enumerate(iter_jsonl(path), start=1):
        if not isinstance(row, dict) or "prediction" not in row:
            raise PricetuneError(f"{where}: each line needs a 'prediction' (text or number)")
        truth = row.get("price", row.get("completion"))
        try:
            truths.append(completion_price(truth))
        except ValueError as e:
            raise PricetuneError(f"{where}: the truth ('price', else 'completion') is unusable: {e}") from None
        text = row["prediction"]
        texts.append(text if isinstance(text, str) else json.dumps(text))
        guesses.append(parse_price(text))
        titles.append(str(row.get("title") or item_title(row.get("prompt", "")) or f"item {n}"))
    if not truths:
        raise PricetuneError(f"{path}: no predictions")
    return titles, truths, texts, guesses


def add_evaluate_arguments(p) -> None:
    from .options import add_model_arguments

    p.description = ("Price the items of a split and score the prices: metrics, charts, and a self-contained "
                     "HTML report. Failed parses count as $0 in every metric and are also counted on their own. "
                     "Sources: a run (or a Hub adapter), --baseline, --ensemble, or --predictions.")
    p.add_argument("target", nargs="?", help="A run directory (or its checkpoint-N folder), or a Hub adapter id (user/name).")
    p.add_argument("--dataset", help="Dataset source as `train --dataset` takes it (default: the run's).")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="Split to score (default test).")
    p.add_argument("--limit", type=int, default=200, help="Score the first N items (default 200, the course's; 0 = all).")
    p.add_argument("--output-dir", help="Evaluation directory, new or empty (default: a new eval-* folder in the run directory).")
    p.add_argument("--predictions", metavar="JSONL", help="Score predictions made elsewhere (fields: prediction, price).")
    p.add_argument("--baseline", choices=["mean", "median", "tfidf", "tfidf-embed"],
                   help="Score a classical baseline: the train split's mean or median; TF-IDF + ridge on log price "
                   "(fit on train, regularisation chosen on val); tfidf-embed: the same TF-IDF features beside the "
                   "frozen --base-model's (default smollm2-135m) mean hidden state after one layer, one ridge (layer, "
                   "weight and alpha chosen on val; one forward pass of the base per item).")
    p.add_argument("--train-size", type=int, metavar="N",
                   help="Baselines: fit on the first N train rows only (to match a run trained on N rows).")
    p.add_argument("--train-on-val", action="store_true",
                   help="Baselines tfidf, median, mean: the refit to put beside a run trained with --train-on-val "
                   "(alpha still chosen on val, then the fit uses train + val); scored on test only.")
    p.add_argument("--ensemble", metavar="DIR", help="Score an ensemble made by `pricetune ensemble`.")
    p.add_argument("--compare", nargs="+", metavar="EVAL_DIR",
                   help="Put several evaluation directories side by side; when they scored the same items, also "
                   "each against the first item by item (the MAE difference with its paired 95%% interval: "
                   "paired.json).")
    p.add_argument("--leaderboard", metavar="JSON",
                   help="Also record this result as a row of a leaderboard file (replacing a row of the same --name).")
    p.add_argument("--name", help="The row's name in --leaderboard (default: the label).")
    p.add_argument("--on-bad-rows", default="error", choices=["error", "skip"], help="As for train.")
    add_model_arguments(p)


def safe_name(text: str, limit: int = 40) -> str:
    """A folder-name piece with no shell metacharacters: letters, digits, '.', '_' and '-'."""
    return (re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "eval")[:limit]


def _default_out(ns, label: str) -> Path:
    if ns.output_dir:
        return Path(ns.output_dir)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    how = ns.decode if not (ns.baseline or ns.ensemble or ns.predictions) else "x"
    name = f"eval-{ns.split}-{how}-{stamp}" if how != "x" else f"eval-{ns.split}-{stamp}"
    if ns.target and Path(ns.target).is_dir():
        return Path(ns.target) / name
    return Path("runs") / f"{name}-{safe_name(label)}"


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

    from .metrics import paired_difference

    files = [d / "predictions.jsonl" for d in dirs]
    if not all(f.is_file() for f in files):
        return None
    read = [[json.loads(line) for line in f.read_text(encoding="utf-8").splitlines() if line.strip()] for f in files]
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


@dataclass
class Scored:
    """What one evaluation source produced for the items."""

    label: str
    texts: list[str]
    guesses: list[float | None]
    settings: dict
    llm_only: bool


def _items(ns, dataset: str):
    from .data import load_rows

    splits, _ = load_rows(dataset, ns.on_bad_rows)  # validated before any model is loaded
    if not splits.get(ns.split):
        raise PricetuneError(f"dataset {dataset} has no {ns.split} split (found: {', '.join(splits)})")
    return splits, splits[ns.split][: ns.limit or None]


def from_baseline(ns, splits: dict, items: list[dict]) -> Scored:
    from .baselines import TfidfEmbedRidge, TfidfRidge, constant

    splits = {**splits, "train": splits.get("train", [])[: ns.train_size or None]}
    if ns.train_on_val:
        if ns.split == "val":
            raise PricetuneError("--train-on-val fits the baseline on the val rows; score it on test")
        if ns.baseline == "tfidf-embed":
            raise PricetuneError("--train-on-val is for --baseline tfidf, median or mean")
        if not splits.get("val"):
            raise PricetuneError("--train-on-val needs a val split to train on; the dataset has none")
    if ns.baseline == "tfidf-embed":
        base = ns.base_model or "smollm2-135m"
        model = TfidfEmbedRidge.fit(splits["train"], splits.get("val", []), base_model=base, precision=ns.precision,
                                    batch_size=ns.batch_size)
        guesses = model.predict([r["prompt"] for r in items], progress=True)
        return Scored("TF-IDF + base embeddings + ridge", [f"{g:.2f}" for g in guesses], guesses,
                      {"baseline": "tfidf-embed", "base_model": base, "layer": model.layer, "weight": model.weight,
                       "alpha": model.alpha, "val_mae": round(model.val_mae, 2),
                       "val_mae_by_setting": {k: round(v, 2) for k, v in model.val_mae_by_setting.items()}},
                      False)
    if ns.baseline == "tfidf":
        model = TfidfRidge.fit(splits["train"], splits.get("val", []), refit=ns.train_on_val)
        guesses = model.predict([r["prompt"] for r in items])
        texts = [f"{g:.2f}" for g in guesses]
        scores = ", ".join(f"{a:g}: ${m:,.2f}" for a, m in model.val_mae_by_alpha.items())
        return Scored("TF-IDF + ridge" + (" (refit on train + val)" if ns.train_on_val else ""), texts, guesses,
                      {"baseline": "tfidf", "alpha": model.alpha, "val_mae_by_alpha": scores,
                       "train_on_val": ns.train_on_val}, False)
    rows, which = (splits.get("train", []) + splits["val"], "train + val") if ns.train_on_val else \
        (splits.get("train", []), "train")
    value = constant(rows, ns.baseline)
    return Scored(f"constant {ns.baseline} {value:,.2f}", [f"{value:.2f}"] * len(items), [value] * len(items),
                  {"baseline": f"{ns.baseline} of {len(rows)} {which} prices = {value:.2f}"}, False)


def from_model(ns, run_dir: str | None, items: list[dict]) -> Scored:
    from .inference import load_from_args

    ns.run = run_dir
    lm = load_from_args(ns)
    # Under a launcher each process prices its share of the items; every item's draws are seeded
    # by the item itself, so the split changes no price
    out = dist.map_shared(lambda share: lm.price(share, ns.decode, ns.batch_size, ns.samples, progress=dist.is_main()),
                          [r["prompt"] for r in items])
    settings = dict(model=lm.label, objective=lm.objective, max_length=lm.max_length, batch_size=ns.batch_size)
    label = lm.label
    if lm.objective == "generate":
        settings["decode"] = ns.decode
        label += "" if ns.decode == "greedy" else f" ({ns.decode})"
        if ns.decode == "median":
            settings["samples"] = ns.samples
    return Scored(label, [t for t, _ in out], [p for _, p in out], settings, llm_only=not ns.no_adapter)


def from_ensemble(ns, items: list[dict]) -> Scored:
    from .ensemble import Ensemble

    ens = Ensemble.load(ns.ensemble)
    guesses = dist.map_shared(lambda share: ens.predict(share, progress=dist.is_main()), [r["prompt"] for r in items])
    members = ", ".join(f"{m.spec} x{w:.2f}" for m, w in zip(ens.members, ens.weights))
    return Scored(f"ensemble {Path(ns.ensemble).name}", ["" if g is None else f"{g:.2f}" for g in guesses], guesses,
                  {"ensemble": str(ns.ensemble), "members": members}, ens.llm_only)


def evaluate_cli(ns) -> int:
    """Score one source on a split. Under torchrun / accelerate launch the model's work is split
    across the processes and rank 0 writes the results (the same files as one process)."""
    if dist.launched() and (ns.compare or ns.predictions or ns.baseline) and not dist.is_main():
        return 0  # nothing to share out: rank 0 does it alone
    if ns.compare:
        return compare_cli(ns)
    if ns.limit < 0:
        raise PricetuneError("--limit must be >= 0")
    if ns.samples < 1:
        raise PricetuneError("--samples must be >= 1")
    if sum(bool(x) for x in (ns.predictions, ns.baseline, ns.ensemble)) > 1:
        raise PricetuneError("choose one source: --predictions, --baseline or --ensemble")
    if ns.train_on_val and not ns.baseline:
        raise PricetuneError("--train-on-val refits a --baseline; a run is refit by `pricetune train --train-on-val`")
    if ns.output_dir and Path(ns.output_dir).exists() and (
            not Path(ns.output_dir).is_dir() or any(Path(ns.output_dir).iterdir())):
        raise PricetuneError(f"{ns.output_dir} already exists and is not empty; choose another --output-dir")
    if ns.predictions:
        titles, truths, texts, guesses = read_predictions(Path(ns.predictions))
        n = ns.limit or len(truths)
        titles, truths, texts, guesses = titles[:n], truths[:n], texts[:n], guesses[:n]
        scored = Scored(Path(ns.predictions).stem, texts, guesses, {"source": ns.predictions}, False)
        categories = None
        settings = {"limit": ns.limit}
    else:
        from .config import load_run_config, refuse_val_of_refit
        from .inference import run_paths

        run_dir = ns.target if ns.target and Path(ns.target).is_dir() else None
        if ns.target and not run_dir and not ns.adapter:
            ns.adapter = ns.target
        if run_dir and ns.split == "val":
            refuse_val_of_refit(run_paths(run_dir)[0], "evaluating it")
        dataset = ns.dataset or (load_run_config(run_paths(run_dir)[0]).dataset if run_dir else None)
        if dataset is None and ns.ensemble:
            dataset = json.loads((Path(ns.ensemble) / "ensemble.json").read_text())["dataset"]
        if dataset is None:
            raise PricetuneError("which items? pass --dataset (or evaluate a run directory, which knows its own)")
        splits, items = _items(ns, dataset)
        titles, truths = [item_title(r["prompt"]) for r in items], [r["price"] for r in items]
        categories = [item_category(r["prompt"]) for r in items]
        if ns.baseline:
            scored = from_baseline(ns, splits, items)
        elif ns.ensemble:
            scored = from_ensemble(ns, items)
        else:
            scored = from_model(ns, run_dir, items)
        settings = {"dataset": dataset, "split": ns.split, "limit": ns.limit}
    settings.update(scored.settings)
    if not dist.is_main():
        return 0
    metrics, rows = score(titles, truths, scored.texts, scored.guesses, categories)
    out = _default_out(ns, scored.label)
    write_outputs(out, scored.label, metrics, rows, settings)
    if ns.leaderboard:
        record_leaderboard(Path(ns.leaderboard), ns.name or scored.label, settings.get("split", "-"), metrics,
                           scored.llm_only)
    print_table(scored.label, ["value"], [metrics])
    print(f"eval: {out}")
    return 0


def record_leaderboard(path: Path, name: str, split: str, metrics: dict, llm_only: bool) -> None:
    """Add (or replace, by name) one row: what was scored, the command that scored it, the figures."""
    import shlex
    import sys

    rows = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    command = "pricetune " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    row = {"name": name, "command": command, "split": split, "n": metrics["n"], "mae": round(metrics["mae"], 2),
           "median_ae": round(metrics["median_ae"], 2), "rmsle": round(metrics["rmsle"], 4), "llm_only": llm_only}
    rows = [r for r in rows if r.get("name") != name] + [row]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
