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
import statistics
from datetime import datetime
from pathlib import Path

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


def score(titles: list[str], truths: list[float], texts: list[str], guesses: list[float | None]) -> tuple[dict, list[dict]]:
    metrics = compute_metrics(truths, guesses)
    rows = []
    for title, truth, text, guess in zip(titles, truths, texts, guesses):
        g = 0.0 if guess is None else guess
        rows.append({"title": title, "truth": truth, "text": text, "price": guess,
                     "error": abs(g - truth), "colour": colour(truth, g)})
    return metrics, rows


def plot_scatter(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    truths = [r["truth"] for r in rows]
    guesses = [r["price"] or 0.0 for r in rows]
    top = max(max(truths), max(guesses), 1.0) * 1.05
    fig, ax = plt.subplots(figsize=(6.5, 6.5), dpi=110)
    ax.plot([0, top], [0, top], color="#888", lw=1, label="y = x")
    ax.scatter(truths, guesses, s=10, c=[COLOURS[r["colour"]] for r in rows], alpha=0.8)
    ax.set(xlim=(0, top), ylim=(0, top), xlabel="true price ($)", ylabel="predicted price ($)", title=title)
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
    ax.set(xlabel="items evaluated", ylabel="mean absolute error ($)", title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _money(x: float | None) -> str:
    return "—" if x is None else f"${x:,.2f}"


def write_report(out: Path, label: str, metrics: dict, rows: list[dict], settings: dict) -> None:
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
    write_report(out, label, metrics, rows, settings)


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
    from .inference import add_model_arguments

    p.description = ("Price the items of a split and score the prices: metrics, charts, and a self-contained "
                     "HTML report. Failed parses count as $0 in every metric and are also counted on their own.")
    p.add_argument("target", nargs="?", help="A run directory, or a Hub adapter id (user/name).")
    p.add_argument("--dataset", help="Dataset source as `train --dataset` takes it (default: the run's).")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="Split to score (default test).")
    p.add_argument("--limit", type=int, default=200, help="Score the first N items (default 200, the course's; 0 = all).")
    p.add_argument("--output-dir", help="Evaluation directory (default: a new eval-* folder in the run directory).")
    p.add_argument("--predictions", metavar="JSONL", help="Score predictions made elsewhere (fields: prediction, price).")
    p.add_argument("--baseline", choices=["mean", "median"], help="Score a constant: the train split's mean or median.")
    p.add_argument("--compare", nargs="+", metavar="EVAL_DIR", help="Put several evaluation directories side by side.")
    p.add_argument("--on-bad-rows", default="error", choices=["error", "skip"], help="As for train.")
    add_model_arguments(p)


def _default_out(ns, label: str) -> Path:
    if ns.output_dir:
        return Path(ns.output_dir)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    name = f"eval-{ns.split}-{getattr(ns, 'decode', 'greedy')}-{stamp}"
    if ns.target and Path(ns.target).is_dir():
        return Path(ns.target) / name
    return Path("runs") / f"{name}-{label}"


def compare_cli(ns) -> int:
    dirs = [Path(d) for d in ns.compare]
    metric_sets = []
    for d in dirs:
        if not (d / "metrics.json").is_file():
            raise PricetuneError(f"{d} is not an evaluation directory (no metrics.json)")
        metric_sets.append(json.loads((d / "metrics.json").read_text()))
    names = [d.parent.name + "/" + d.name if d.name.startswith("eval") else d.name for d in dirs]
    print_table("comparison", names, metric_sets)
    out = Path(ns.output_dir) if ns.output_dir else Path("runs") / f"compare-{datetime.now():%Y%m%d-%H%M%S}"
    out.mkdir(parents=True, exist_ok=True)
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


def evaluate_cli(ns) -> int:
    if ns.compare:
        return compare_cli(ns)
    if ns.limit < 0:
        raise PricetuneError("--limit must be >= 0")
    if ns.samples < 1:
        raise PricetuneError("--samples must be >= 1")
    settings = {"split": ns.split, "limit": ns.limit, "decode": ns.decode}
    if ns.predictions:
        titles, truths, texts, guesses = read_predictions(Path(ns.predictions))
        label, settings["source"] = Path(ns.predictions).stem, ns.predictions
    else:
        from .config import load_run_config
        from .data import load_rows

        run_dir = ns.target if ns.target and Path(ns.target).is_dir() else None
        if ns.target and not run_dir and not ns.adapter:
            ns.adapter = ns.target
        dataset = ns.dataset or (load_run_config(run_dir).dataset if run_dir else None)
        if dataset is None:
            raise PricetuneError("which items? pass --dataset (or evaluate a run directory, which knows its own)")
        splits, _ = load_rows(dataset, ns.on_bad_rows)  # validated before any model is loaded
        if not splits.get(ns.split):
            raise PricetuneError(f"dataset {dataset} has no {ns.split} split (found: {', '.join(splits)})")
        items = splits[ns.split][: ns.limit or None]
        titles = [item_title(r["prompt"]) for r in items]
        truths = [r["price"] for r in items]
        settings["dataset"] = dataset
        if ns.baseline:
            prices = [r["price"] for r in splits.get("train", [])]
            if not prices:
                raise PricetuneError(f"--baseline needs a train split in {dataset}")
            value = statistics.mean(prices) if ns.baseline == "mean" else statistics.median(prices)
            texts, guesses = [f"{value:.2f}"] * len(items), [value] * len(items)
            label = f"constant {ns.baseline} (${value:,.2f})"
            settings["baseline"] = f"{ns.baseline} of {len(prices)} train prices = {value:.2f}"
        else:
            from .inference import generate_prices, load_from_args

            ns.run = run_dir
            lm = load_from_args(ns)
            label = lm.label + ("" if ns.decode == "greedy" else f" ({ns.decode})")
            out = generate_prices(lm.model, lm.tokenizer, [r["prompt"] for r in items], lm.max_length,
                                  ns.batch_size, ns.decode, samples=ns.samples, progress=True)
            texts, guesses = [t for t, _ in out], [p for _, p in out]
            settings.update(model=lm.label, max_length=lm.max_length, batch_size=ns.batch_size)
            if ns.decode == "median":
                settings["samples"] = ns.samples
    metrics, rows = score(titles, truths, texts, guesses)
    out = _default_out(ns, label.replace("/", "_").replace(" ", "_")[:40])
    write_outputs(out, label, metrics, rows, settings)
    print_table(label, ["value"], [metrics])
    print(f"eval: {out}")
    return 0
