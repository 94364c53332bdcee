"""The learning curve on amazon-18k's val split, from the result files beside this script.

    python docs/results/amazon-18k/plot_learning_curve.py     # -> learning-curve.png, learning-curve.json
"""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).parent


def mae(path: Path) -> float | None:
    return json.loads(path.read_text())["mae"] if path.is_file() else None


def pipeline_cv(path: Path) -> float | None:
    """The pipeline pick's cross-validated val MAE from a `pricetune select` record."""
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    return record["candidates"][record["picks"]["pipeline"]]["val_mae_cv"]


def main() -> None:
    sizes = [1761, 4000, 13494]
    curve = {"train_rows": sizes,
             "tfidf": [mae(HERE / f"tfidf-{n}-val-metrics.json") for n in sizes],
             "fine-tune": [mae(HERE / f"regress-{n}-val-metrics.json") for n in sizes],
             "pipeline (select's pick, cross-validated)": [
                 pipeline_cv(HERE / ("select.json" if n == sizes[-1] else f"select-{n}.json")) for n in sizes],
             "constant median": mae(HERE / "median-val-metrics.json")}
    (HERE / "learning-curve.json").write_text(json.dumps(curve, indent=2) + "\n")
    fig, ax = plt.subplots(figsize=(6, 4))
    labels = {"tfidf": "TF-IDF + ridge", "fine-tune": "fine-tuned SmolLM2-135M (regress, 1 epoch)",
              "pipeline (select's pick, cross-validated)": "pipeline chosen by select (cross-validated)"}
    for (name, label), marker in zip(labels.items(), "os^"):
        points = [(n, m) for n, m in zip(sizes, curve[name]) if m is not None]
        if points:
            ax.plot(*zip(*points), marker=marker, label=label)
    if curve["constant median"]:
        ax.axhline(curve["constant median"], color="grey", ls="--", label="constant: train median")
    ax.set_xscale("log")
    ax.set_xticks(sizes, [f"{n:,}" for n in sizes])
    ax.minorticks_off()
    ax.set_xlabel("train rows (the first N)")
    ax.set_ylabel("val MAE ($, 1,000 items)")
    ax.set_title("amazon-18k: more rows, val MAE")
    ax.legend()
    fig.tight_layout()
    fig.savefig(HERE / "learning-curve.png", dpi=120)


if __name__ == "__main__":
    main()
