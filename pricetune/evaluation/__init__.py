"""Evaluation: price a test split and report how good the prices are, as numbers, charts and a page.

    pricetune evaluate runs/price-...-demo                          # the run's test split, 200 items
    pricetune evaluate runs/price-... --dataset amazon-18k --limit 0
    pricetune evaluate --base-model smollm2-135m --no-adapter --dataset amazon-18k
    pricetune evaluate --predictions preds.jsonl                    # anyone's predictions, same rules
    pricetune evaluate --baseline median --dataset amazon-18k
    pricetune evaluate --compare runs/a/eval-x runs/b/eval-y --output-dir runs/compare

Writes metrics.json, predictions.jsonl, scatter.png, error_trend.png and report.html (one
self-contained page) to the evaluation directory; the last line printed is `eval: <dir>`. A model's
prices are kept as they come (beside that directory, `.partial`): stopped, the same command continues.

One file a part: `report` (metrics per item, where the error is, charts, the page), `sources`
(predictions, baselines, runs, ensembles), `compare` (side by side, item by item), `cli`.
"""

from .cli import add_evaluate_arguments, evaluate_cli, record_leaderboard, safe_name
from .compare import display_names, paired_against_first
from .report import breakdown, item_category, item_title, plain_text, score, write_outputs

__all__ = ["add_evaluate_arguments", "breakdown", "display_names", "evaluate_cli", "item_category", "item_title",
           "paired_against_first", "plain_text", "record_leaderboard", "safe_name", "score", "write_outputs"]
