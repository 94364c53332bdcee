"""`pricetune evaluate`: the command line, the output folder, the leaderboard row."""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime
from functools import partial
from pathlib import Path

from .. import distributed as dist
from .. import intervals
from ..errors import PricetuneError
from ..options import refuse_filled_folder
from . import ledger
from .compare import compare_cli
from .report import item_category, item_title, print_table, score, width_text, write_outputs
from .sources import Scored, from_baseline, from_ensemble, from_model, read_predictions, split_items


def add_evaluate_arguments(p) -> None:
    from ..options import COUNT, SIZE, add_model_arguments

    p.description = ("Price the items of a split and score the prices: metrics, charts, and a self-contained "
                     "HTML report. Failed parses count as $0 in every metric and are also counted on their own. "
                     "Sources: a run (or a Hub adapter), --baseline, --ensemble, or --predictions.")
    p.add_argument("target", nargs="?", help="A run directory (or its checkpoint-N folder), or a Hub adapter id (user/name).")
    p.add_argument("--dataset", help="Dataset source as `train --dataset` takes it (default: the run's).")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="Split to score (default test).")
    p.add_argument("--limit", type=SIZE, default=200, help="Score the first N items (default 200, the course's; 0 = all: every result table in the docs "
                   "scores all of a split's items).")
    p.add_argument("--output-dir", help="Evaluation directory, new or empty (default: a new eval-* folder in the run "
                   "directory). A run's or ensemble's prices are kept beside it as they come: stopped, the same "
                   "command prices only the rest.")
    p.add_argument("--predictions", metavar="JSONL", help="Score predictions made elsewhere (fields: prediction, price). "
                   "With --dataset (and --split), they are checked against that split's prices, in order, and a "
                   "test split's look is counted in the ledger; --leaderboard needs --dataset.")
    p.add_argument("--baseline", choices=["mean", "median", "tfidf", "tfidf-knn", "mlp"],
                   help="Score a classical baseline: the train split's mean or median; TF-IDF + ridge on log price "
                   "(fit on train, regularisation chosen on val); tfidf-knn: the same TF-IDF "
                   "features, an item priced from its k most similar train items (cosine, k chosen on val); mlp: the same "
                   "TF-IDF features into small neural nets with a sparse first layer, seeds averaged, epochs chosen "
                   "on val (the strongest model without a language model; minutes on a CPU).")
    p.add_argument("--train-size", type=COUNT, metavar="N",
                   help="Baselines: fit on N train rows only (to match a run trained on N rows).")
    p.add_argument("--train-sample", default="first", choices=["first", "random"],
                   help="Baselines with --train-size: the first N train rows, or N drawn with --seed (as `train "
                   "--train-sample` draws them).")
    p.add_argument("--seed", type=int, default=42, help="Seed of --train-sample random (default 42, train's default).")
    p.add_argument("--train-on-val", action="store_true",
                   help="Baselines: the refit to put beside a run trained with --train-on-val (settings such as "
                   "alpha still chosen on val, then the fit uses train + val); scored on test only.")
    p.add_argument("--ensemble", metavar="DIR", help="Score an ensemble made by `pricetune ensemble`.")
    p.add_argument("--compare", nargs="+", metavar="EVAL_DIR",
                   help="Put several evaluation directories side by side; when they scored the same items, also "
                   "each against the first item by item (the MAE difference with its paired 95%% interval: "
                   "paired.json).")
    p.add_argument("--leaderboard", metavar="JSON",
                   help="Also record this result as a row of a leaderboard file (replacing the row of the same --name, "
                   "split and dataset).")
    p.add_argument("--name", help="The row's name in --leaderboard (default: the label).")
    p.add_argument("--on-bad-rows", default="error", choices=["error", "skip"], help="As for train.")
    p.add_argument("--interval", type=float, default=0.8, metavar="COVERAGE",
                   help="For a run or ensemble with a calibration.json (`pricetune calibrate`): also score its price "
                   "ranges at this coverage: how often they held the true price, and how wide they were, overall "
                   "and per price band (default 0.8).")
    add_model_arguments(p)


def safe_name(text: str, limit: int = 40) -> str:
    """A folder-name piece with no shell metacharacters: letters, digits, '.', '_' and '-'."""
    return (re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "eval")[:limit]


def _default_out(ns, label: str, decode: str | None, stamp: bool = True) -> Path:
    """`--output-dir`, else a new eval-SPLIT[-DECODE]-TIME folder (the decoding of a generate run; a regress
    run decodes nothing) in the run directory, or in runs/ named by `label`. Without the time
    (`stamp=False`): where the prices are kept while they come, for the same command to find them."""
    if ns.output_dir:
        return Path(ns.output_dir)
    name = "-".join(filter(None, ["eval", ns.split, decode, datetime.now().strftime("%Y%m%d-%H%M%S") if stamp else ""]))
    if ns.target and Path(ns.target).is_dir():
        return Path(ns.target) / name
    return Path("runs") / f"{name}-{safe_name(label)}"


def check_arguments(ns) -> None:
    if not 0 < ns.interval < 1:  # checked before anything is priced
        raise PricetuneError(f"--interval is the share of prices a range should hold, between 0 and 1 "
                             f"(e.g. 0.8, not 80; got {ns.interval:g})")
    if (ns.train_size or ns.train_sample != "first") and not ns.baseline:
        raise PricetuneError("--train-size and --train-sample choose a --baseline's train rows; a run's are in its config")
    if sum(bool(x) for x in (ns.predictions, ns.baseline, ns.ensemble)) > 1:
        raise PricetuneError("choose one source: --predictions, --baseline or --ensemble")
    if ns.train_on_val and not ns.baseline:
        raise PricetuneError("--train-on-val refits a --baseline; a run is refit by `pricetune train --train-on-val`")
    if ns.output_dir:
        refuse_filled_folder(ns.output_dir, "--output-dir")
    if ns.leaderboard:
        read_leaderboard(Path(ns.leaderboard))  # a file that is no leaderboard stops here, not after the pricing


def source_dataset(ns):
    """(run directory or None, loaded ensemble or None, the dataset to score on), refusing what would
    judge a model on its own training rows."""
    from ..config import EXPORT_INFO, is_export, load_run_config, refuse_val_of_refit

    run_dir = ns.target if ns.target and Path(ns.target).is_dir() else None
    if ns.target and not run_dir and not ns.adapter:
        ns.adapter = ns.target
    if run_dir:  # imported only for a model: a baseline's evaluation loads no model library
        from ..inference import run_paths
    if run_dir and ns.split == "val":
        refuse_val_of_refit(run_paths(run_dir)[0], "evaluating it")
    ensemble = None
    if ns.ensemble:
        from ..ensemble import Ensemble

        ensemble = Ensemble.load(ns.ensemble)
        if ensemble.train_on_val and ns.split == "val":
            raise PricetuneError(f"{ns.ensemble} is a refit: its members trained on the val split, so scoring it "
                                 "on val would judge it on its own training rows; score it on test")
    dataset = ns.dataset or (load_run_config(run_paths(run_dir)[0]).dataset if run_dir else None)
    if dataset is None and ensemble is not None:
        dataset = ensemble.record["dataset"]
    if dataset is None and ns.no_adapter and is_export(ns.base_model or ""):  # an exported run's data
        dataset = json.loads((Path(ns.base_model) / EXPORT_INFO).read_text(encoding="utf-8")).get("dataset")
    if dataset is None and ns.target and not run_dir:
        # a mistyped run directory reads as a Hub adapter id; say both
        raise PricetuneError(f"{ns.target} is not a run directory here; if it is an adapter on the Hub, pass "
                             "--dataset too (a run directory knows its own)")
    if dataset is None:
        raise PricetuneError("which items? pass --dataset (or evaluate a run directory, which knows its own)")
    return run_dir, ensemble, dataset


def count_earlier_looks(ns, splits: dict) -> tuple[Path, tuple[str, str]] | None:
    """Before a test split is scored: how often it was scored before. Returns (ledger, the split's
    marks) to record this look in, for a test split."""
    if ns.split == "train":
        print("warning: scoring the train split: every model here learnt from these items (a --neighbours run "
              "even finds each item itself in its look-up), so the figures say nothing about new items",
              file=sys.stderr)
    if ns.split != "test":
        return None
    path, mark = ledger.ledger_path(ns.leaderboard), ledger.marks(splits["test"])
    before = ledger.looks(path, mark)
    print(f"test split {mark[0]}: scored {len(before)} time(s) before (ledger: {path})", file=sys.stderr)
    return path, mark


def evaluate_cli(ns) -> int:
    """Score one source on a split. Under torchrun / accelerate launch the model's work is split
    across the processes and rank 0 writes the results (the same files as one process)."""
    if dist.launched() and (ns.compare or ns.predictions or ns.baseline) and not dist.is_main():
        return 0  # nothing to share out: rank 0 does it alone
    if ns.compare:
        return compare_cli(ns)
    check_arguments(ns)
    from ..data import train_copies

    ledger_entry = None
    if ns.predictions:
        titles, truths, texts, guesses = read_predictions(Path(ns.predictions))
        n = ns.limit or len(truths)
        titles, truths, texts, guesses = titles[:n], truths[:n], texts[:n], guesses[:n]
        scored = Scored(Path(ns.predictions).stem, texts, guesses, {"source": ns.predictions}, False)
        categories, calibration = None, None
        settings = {"limit": ns.limit}
        if ns.dataset:  # predictions for a split: checked against it, and a test split's look is counted
            splits = predictions_split(ns, truths)
            settings.update(dataset=ns.dataset, split=ns.split)
            ledger_entry = count_earlier_looks(ns, splits) if dist.is_main() else None
        elif ns.leaderboard:
            raise PricetuneError("--leaderboard records which split was scored: with --predictions, name it with "
                                 "--dataset (and --split, default test)")
    else:
        run_dir, ensemble, dataset = source_dataset(ns)
        splits, items = split_items(ns, dataset)
        learned = learned_rows(ns, run_dir, ensemble, splits)
        shared = None if ns.split == "train" else train_copies(learned, items, ns.split, _note if dist.is_main() else None)
        if dist.is_main():
            ledger_entry = count_earlier_looks(ns, splits)
        titles, truths = [item_title(r["prompt"]) for r in items], [r["price"] for r in items]
        # the row's own category field where it has one, else the prompt's "Category:" line
        categories = [r.get("category") or item_category(r["prompt"]) for r in items]
        calibration = source_calibration(ns, splits)  # a calibration that does not fit stops before pricing
        keep_at = partial(_default_out, ns, stamp=False)  # where a model's prices are kept as they come
        if ns.baseline:
            scored = from_baseline(ns, splits, items)
        elif ensemble is not None:
            scored = from_ensemble(ns, ensemble, items, keep_at)
        else:
            scored = from_model(ns, run_dir, items, keep_at)
        settings = {"dataset": dataset, "split": ns.split, "limit": ns.limit,
                    "prompts_in_train": shared}
    settings.update(scored.settings)
    if not dist.is_main():
        return 0
    metrics, rows = score(titles, truths, scored.texts, scored.guesses, categories)
    if calibration is not None:
        metrics["interval"] = intervals.coverage_report(truths, scored.guesses, calibration, ns.interval)
    out = _default_out(ns, scored.label, scored.settings.get("decode"))
    write_outputs(out, scored.label, metrics, rows, settings)
    if scored.kept is not None:
        scored.kept.unlink(missing_ok=True)  # written: the kept prices have served
    if ledger_entry is not None:
        ledger.record(*ledger_entry, dataset=settings["dataset"], what=ns.name or scored.label, n=metrics["n"],
                      mae=metrics["mae"])
    if ns.leaderboard:
        record_leaderboard(Path(ns.leaderboard), ns.name or scored.label, settings.get("split", "-"), metrics,
                           scored.llm_only, settings.get("dataset"))
    print_table(scored.label, ["value"], [{k: v for k, v in metrics.items() if k != "interval"}])
    if calibration is not None and not metrics["interval"]["items"]:
        print("no item was priced, so no price range to score")
    elif calibration is not None:
        r = metrics["interval"]
        by_band = ", ".join(f"{b['covered']:.0%}" for b in r["bands"] if b["items"])
        print(f"{ns.interval:.0%} price ranges: held the true price for {r['covered']:.1%} of {r['items']} items "
              f"(by band: {by_band}), mean width {width_text(r)}")
    print(f"eval: {out}")
    return 0


def _note(message: str) -> None:
    print(message, file=sys.stderr)


def learned_rows(ns, run_dir, ensemble, splits: dict) -> list[dict]:
    """The rows the scored model learned from: a run's (its train_size; val too for a refit), a baseline's
    (--train-size, --train-on-val), an ensemble's classical members' (select's --train-size); else the
    whole train split."""
    from ..config import load_run_config
    from ..data import take_train

    train = splits.get("train", [])
    if run_dir is not None:
        from ..inference import run_paths

        cfg = load_run_config(run_paths(run_dir)[0])
        refit = splits.get("val", []) if cfg.train_on_val else []
        return take_train(train, cfg.train_size, cfg.train_sample, cfg.seed) + refit
    if ns.baseline:
        refit = splits.get("val", []) if ns.train_on_val else []
        return take_train(train, ns.train_size, ns.train_sample, ns.seed) + refit
    if ensemble is not None:
        return take_train(train, ensemble.record.get("classical_train_rows"))
    return train


def predictions_split(ns, truths: list[float]) -> dict:
    """The dataset's splits, after checking that the predictions' prices are the named split's, in order."""
    from ..data import load_rows

    splits, _ = load_rows(ns.dataset, ns.on_bad_rows)
    rows = splits.get(ns.split) or []
    if len(truths) > len(rows) or any(abs(t - r["price"]) > 0.005 * max(1.0, r["price"])
                                       for t, r in zip(truths, rows)):
        raise PricetuneError(f"{ns.predictions}: its prices are not those of {ns.dataset}'s {ns.split} split, in "
                             "order; score predictions against the split they were made for")
    return splits


def source_calibration(ns, splits: dict | None) -> dict | None:
    """The calibration saved with the run, checkpoint or ensemble scored, if any and if made on this
    dataset's val split (else its ranges are not scored, and the command that makes the right one is said)."""
    from ..data.rows import fingerprint

    calibration, folder = None, None
    if ns.ensemble:
        folder = ns.ensemble
        calibration = intervals.load(folder)
    elif ns.target and Path(ns.target).is_dir() and not ns.baseline:
        from ..inference import run_paths

        folder = run_paths(ns.target)[1]
        calibration = intervals.load(folder, ns.decode)
    val = (splits or {}).get("val")
    if calibration is not None and not intervals.applies_to(calibration, fingerprint(val) if val else None):
        print(f"note: {folder}'s calibration was made on another val split ({calibration.get('dataset')}), so its "
              f"price ranges are not scored here; `{intervals.calibrate_command(folder, bool(ns.ensemble), None, ns.dataset)}` "
              "makes one for this data", file=sys.stderr)
        return None
    return calibration


def read_leaderboard(path: Path) -> list[dict]:
    """A leaderboard's rows ([] for a file not made yet); anything else at that path is refused."""
    if not path.exists():
        return []
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # a folder, unreadable, not UTF-8, not JSON
        raise PricetuneError(f"--leaderboard {path} is not a leaderboard file ({type(e).__name__}: {e}); name a "
                             "new file, or the JSON list of rows an earlier --leaderboard wrote") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise PricetuneError(f"--leaderboard {path} is JSON but not a leaderboard (a list of rows); name a new file")
    return rows


def record_leaderboard(path: Path, name: str, split: str, metrics: dict, llm_only: bool,
                       dataset: str | None = None) -> None:
    """Add (or replace, by name) one row: what was scored, on which data, the command that scored it, the figures."""
    import shlex

    rows = read_leaderboard(path)
    command = "pricetune " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    interval = metrics.get("interval")
    row = {"name": name, "dataset": Path(dataset).name if dataset else None, "command": command, "split": split, "n": metrics["n"], "mae": round(metrics["mae"], 2),
           "median_ae": round(metrics["median_ae"], 2), "rmsle": round(metrics["rmsle"], 4), "llm_only": llm_only}
    if interval and interval["items"]:
        row.update(interval_coverage_asked=interval["coverage_asked"], interval_covered=round(interval["covered"], 4),
                   interval_mean_width=round(interval["mean_width"], 2))
    # a name's row on another split or dataset is another result: only the same name, split and data is replaced
    same = (name, split, row["dataset"])
    rows = [r for r in rows if (r.get("name"), r.get("split"), r.get("dataset")) != same] + [row]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
