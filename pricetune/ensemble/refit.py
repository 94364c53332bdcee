"""Refitting a fitted ensemble: the weights val chose, every member trained on train + val.

    pricetune train --config amazon-18k-regress --train-on-val --output-dir runs/amazon-18k-regress-refit
    pricetune ensemble --refit runs/ens --swap runs/amazon-18k-regress=runs/amazon-18k-regress-refit --out runs/ens-refit
    pricetune evaluate --ensemble runs/ens-refit --limit 0          # test only: val trained it

Once val has chosen every setting and the weights, its rows can teach too, as `train --train-on-val`
lets them for one run (AutoGluon's `refit_full` does the same for its ensembles). The weights stay as
val chose them: no clean split is left to fit them again on. Each member of weight other than 0 is
trained again on train + val with the settings val chose for it: a classical member here (tfidf:
its alpha; tfidf-knn: its k; mlp: its epochs; median / mean: the constant of both splits),
and a run by swapping in its refit, a run of the same recipe trained with `--train-on-val`, checked
against the original's saved config. Members of weight 0 are left out. `ensemble.json` records the
source folder, what each member was refit from and the source's val MAE; the ensemble refuses to be
scored on val.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import PricetuneError
from ..inference.members import FITTED, Ensemble, Member
from .fit import new_folder, refuse_filled

# Config keys a refit may set differently without changing the recipe: where and how the run is
# recorded, how often it logs and saves, speed-only switches, and the seed (another draw of the
# same recipe). Everything else (objective, model, data, LoRA, optimisation, epochs) must match.
RECIPE_FREE = frozenset({
    "preset", "run_name", "run_suffix", "output_dir", "seed", "train_on_val", "eval_batch_size", "logging_steps",
    "save_steps", "eval_steps", "save_total_limit", "gradient_checkpointing", "fast", "report_to", "push_to_hub",
    "hub_user", "hub_model_id", "hub_private", "hub_strategy",
})


def same_path(a: str, b: str) -> bool:
    """The same string, or the same place on disk (a run recorded as runs/x, another as /abs/runs/x)."""
    return a == b or Path(a).resolve() == Path(b).resolve()


def recipe_differences(original: dict, refit: dict) -> list[str]:
    """The config keys outside RECIPE_FREE on which two runs differ."""
    return sorted(k for k in original.keys() | refit.keys() if k not in RECIPE_FREE
                  and original.get(k) != refit.get(k)
                  and not (k == "dataset" and same_path(str(original.get(k)), str(refit.get(k)))))


def parse_swaps(pairs: list[str]) -> dict[str, str]:
    """`ORIGINAL=REFIT` arguments as a dict."""
    swaps = {}
    for pair in pairs:
        original, sep, refit = pair.partition("=")
        if not sep or not original or not refit:
            raise PricetuneError(f"--swap {pair!r}: write it as ORIGINAL_RUN=REFIT_RUN")
        swaps[original] = refit
    return swaps


def check_refit_run(original: str, refit: str) -> None:
    """`refit` trained on train + val with `original`'s recipe, or a clear error."""
    from ..config import load_run_config
    from ..inference import run_paths

    refit_dir, original_dir = run_paths(refit)[0], run_paths(original)[0]
    refit_cfg = load_run_config(refit_dir)  # a clear error when it is not a run
    if not refit_cfg.train_on_val:
        raise PricetuneError(f"--swap {original}={refit}: {refit_dir} did not train on the val split; train the refit "
                             f"with `pricetune train ... --train-on-val`")
    if not (original_dir / "config.yaml").is_file():
        raise PricetuneError(f"--swap {original}={refit}: {original_dir} (the member val weighted) has no config.yaml "
                             "to check the refit's recipe against")
    diff = recipe_differences(load_run_config(original_dir).model_dump(), refit_cfg.model_dump())
    if diff:
        raise PricetuneError(f"--swap {original}={refit}: the refit's recipe differs from the original's in "
                             f"{', '.join(diff)}; val weighted the original recipe")


def refit_ensemble(source: str | Path, swaps: dict[str, str], out: str | Path, log=print) -> dict:
    """The ensemble at `source`, its weighted members trained on train + val, saved at `out`."""
    from ..baselines import SparseMlp, TfidfKnn, TfidfRidge, constant
    from ..data import load_splits, take_train

    source, out = Path(source), Path(out)
    ens = Ensemble.load(source)
    record = ens.record
    if ens.train_on_val:
        raise PricetuneError(f"{source} is already a refit; refit the ensemble it came from ({record.get('refit_of')})")
    refuse_filled(out)
    kept = [(m, w) for m, w in zip(ens.members, ens.weights) if w != 0]
    runs = [m.spec for m, _ in kept if not m.classical]
    unweighted = [m.spec for m, w in zip(ens.members, ens.weights) if w == 0]
    for original in swaps:
        if not any(same_path(original, r) for r in runs):
            why = "has weight 0 there and is left out" if any(same_path(original, u) for u in unweighted) else \
                f"is not one of its weighted runs ({', '.join(runs) or 'none'})"
            raise PricetuneError(f"--swap {original}=...: {original} {why}")
    refits = {}
    for run in runs:
        match = [r for o, r in swaps.items() if same_path(o, run)]
        if not match:
            raise PricetuneError(f"{run} has a weight other than 0 in {source}; name its refit with "
                                 f"--swap {run}=REFIT_RUN (trained with --train-on-val)")
        check_refit_run(run, match[0])
        refits[run] = match[0]
    for m, _ in kept:
        if m.spec in FITTED and not (source / f"{m.spec}.joblib").is_file():
            raise PricetuneError(f"{source} has no {m.spec}.joblib: the settings val chose for it are unknown")

    splits, _ = load_splits(record["dataset"], val_size=10**9, need=("train", "val"))
    # the baselines learn from the rows they learnt from before (the first N, if the fit said so), plus val
    train, val = take_train(splits["train"], record.get("classical_train_rows")), splits["val"]
    described, constants = [], {}
    with new_folder(out):
        for m, _ in kept:
            member = Member(refits[m.spec], m.decode, m.samples) if m.spec in refits else Member(m.spec)
            if m.spec == "tfidf":
                log(f"refitting tfidf on {len(train)} train + {len(val)} val items")
                chosen = TfidfRidge.load(source / "tfidf.joblib")
                TfidfRidge.fit(train, val, alphas=(chosen.alpha,), refit=True).save(out / "tfidf.joblib")
            elif m.spec == "tfidf-knn":
                log(f"refitting tfidf-knn on {len(train)} train + {len(val)} val items")
                chosen = TfidfKnn.load(source / "tfidf-knn.joblib")
                TfidfKnn.fit(train, val, ks=(chosen.k,), refit=True).save(out / "tfidf-knn.joblib")
            elif m.spec == "mlp":
                log(f"refitting mlp on {len(train)} train + {len(val)} val items")
                chosen = SparseMlp.load(source / "mlp.joblib")
                SparseMlp.fit(train, val, seed=chosen.seed, seeds=len(chosen.states), epochs=chosen.epochs,
                              refit=True, progress=True).save(out / "mlp.joblib")
            elif m.spec in ("median", "mean"):
                constants[m.spec] = constant(train + val, m.spec)
            was = {"refit_of": m.spec} if m.spec in refits else {"refit": "train + val"}
            described.append({**member.describe(out), **was})
        result = {
            "dataset": record["dataset"],
            "fit_on": f"weights from {source} ({record.get('fit_on', 'val split')}); members refit on train + val",
            "method": record.get("method", "weights"),
            "combination": record.get("combination"),
            "refit_of": str(source),
            "train_on_val": True,
            "members": described,
            "weights": [w for _, w in kept],
            "intercept": ens.intercept,
            "source_val_mae": record.get("val_mae"),
            "constants": constants,
        }
        (out / "ensemble.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result
