"""What an evaluation writes and prints: metrics per item, where the error is (by true price and
category), the scatter and running-error charts, and one self-contained HTML page.

    from pricetune.evaluation import score, write_outputs
    metrics, rows = score(titles, truths, texts, guesses)
    write_outputs(Path("runs/eval-x"), "my model", metrics, rows, settings={})
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from ..metrics import colour, compute_metrics, running_mean_ci

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


def _interval_section(report: dict | None) -> str:
    """The price ranges' coverage, overall and per band of guessed price (calibrated runs only)."""
    if not report or not report["items"]:  # no item priced: no range to show
        return ""
    edges = [0.0, *report["band_edges"]]
    rows = "".join(f"<tr><td>guessed from ${lo:,.0f}</td><td>{b['items']}</td><td>{b['covered']:.1%}</td>"
                   f"<td>{width_text(b)}</td></tr>" for lo, b in zip(edges, report["bands"]) if b["items"])
    return (f"<h2>Price ranges ({report['coverage_asked']:.0%}, calibrated on val)</h2><table id='interval'>"
            f"<tr><th>band</th><th>items</th><th>held the true price</th><th>mean width</th></tr>"
            f"<tr><td>all</td><td>{report['items']}</td><td>{report['covered']:.1%}</td>"
            f"<td>{width_text(report)}</td></tr>{rows}</table>")


def width_text(part: dict) -> str:
    """A coverage report part's mean width, and how many ranges were unbounded (too few val errors)."""
    width = f"${part['mean_width']:,.2f}" if part["mean_width"] is not None else "-"
    return width + (f" ({part['unbounded']} unbounded)" if part.get("unbounded") else "")


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
{_interval_section(metrics.get("interval"))}
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
    # fold, not cut: on an 80-column log, cut names ("demo/eval-p…") no longer say which model is which
    t.add_column("metric", overflow="fold")
    for c in columns:
        t.add_column(c, justify="right", overflow="fold")
    for k, name, _ in METRIC_LABELS:
        t.add_row(name, *[fmt_metric(k, m.get(k)) for m in metric_sets])
    Console().print(t)
