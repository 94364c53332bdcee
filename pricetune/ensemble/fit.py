"""Fitting an ensemble: each member prices the val split, the combination is fit there (`weights`: the
simplex grid point with the lowest val MAE; `stack`: a median regression), and the folder records what
was combined, with the combination's cross-validated val MAE to compare ways of combining on.

    pricetune ensemble --dataset amazon-18k --member runs/amazon-18k-regress --member tfidf \
        --out runs/ensemble
    pricetune ensemble --dataset amazon-18k --member runs/amazon-18k-regress --member tfidf \
        --combine stack --out runs/ensemble-stack
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from ..errors import PricetuneError
from ..inference.members import CLASSICAL, FITTED, Member, Predictor
from ..options import refuse_filled_folder
from .weights import METHODS, cross_validated_mae, fit_combination, mae_of


PRICED = ".priced"  # each member's val prices as it is priced: what a failed or interrupted fit keeps


def refuse_filled(out: Path) -> None:
    """`out` must be new or empty, or hold what a failed fit kept (its `.priced` folder): the same
    command continues from that."""
    if not (out / PRICED).is_dir():
        refuse_filled_folder(out)


@contextmanager
def new_folder(out: Path, log=print):
    """Make `out` for an ensemble. If filling it fails (or is interrupted), remove it again, unless
    members were priced: their val prices stay for the next try. Once filled, the kept prices go."""
    out.mkdir(parents=True, exist_ok=True)
    try:
        yield out
    except BaseException:
        kept = sorted((out / PRICED).glob("*.json"))
        if kept:
            log(f"kept the val prices of {len(kept)} member(s) in {out / PRICED}: the same command continues "
                "from them, pricing only the members not priced yet or changed since")
        else:
            shutil.rmtree(out, ignore_errors=True)
        raise
    shutil.rmtree(out / PRICED, ignore_errors=True)


def check_members(members: list[Member], dataset: str, log=print) -> None:
    """Every run member's config read and its val split untouched by training, before any member is
    priced: a mistyped run stops here, not after TF-IDF was fitted and val priced. A run trained on
    other data is noted: its weight would be fit on items it may have learnt, or unlike its own."""
    runs = [m.spec for m in members if not m.classical]
    if runs:
        from ..config import load_run_config, refuse_val_of_refit
        from ..inference import run_paths

        for spec in runs:
            if not Path(spec).exists():
                close = difflib.get_close_matches(spec, CLASSICAL, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise PricetuneError(f"--member {spec}: no such run folder here, and not a classical member "
                                     f"({', '.join(CLASSICAL)}){hint}")
            run_dir = run_paths(spec)[0]
            trained_on = load_run_config(run_dir).dataset
            refuse_val_of_refit(run_dir, "fitting ensemble weights")
            if not same_dataset(trained_on, dataset):
                log(f"note: {spec} trained on {trained_on}, not {dataset}: if the two share items, this val "
                    "split holds some it learnt, and its val figures read low")


def same_dataset(a: str, b: str) -> bool:
    """Two dataset sources that name the same data: the same words, or paths to the same place."""
    return a == b or (Path(a).exists() and Path(a).resolve() == Path(b).resolve())


def price_val(dataset: str, members: list[Member], out: Path, log=print, train_size: int | None = None) -> dict:
    """Each member's prices for the val split (once; kept in `out`/.priced as they come, and taken
    from there when an earlier try priced the same member on the same rows), the fitted baselines
    saved in `out` as SPEC.joblib (fit on the first `train_size` train rows, as a run trained on that
    many). Returns {"truths", "prices" (one list per member), "maes", "constants", "items",
    "fingerprint" (the val split's), "prompts_in_train" (val items that are train rows too)}."""
    from ..data import load_splits, take_train, train_copies
    from ..data.rows import fingerprint

    splits, _ = load_splits(dataset, val_size=10**9, need=("train", "val"))
    splits["train"] = take_train(splits["train"], train_size)
    val = splits["val"]
    copies = train_copies(splits["train"], val, "val", log)  # members that remember train rows would win on those
    prompts, truths = [r["prompt"] for r in val], [r["price"] for r in val]
    for spec in set(FITTED) - {m.spec for m in members}:  # left by a try with more members
        (out / f"{spec}.joblib").unlink(missing_ok=True)
    prices, maes, constants = [], [], {}
    for m in members:
        saved = out / PRICED / f"{priced_key(m, fingerprint(val), train_size)}.json"
        kept = json.loads(saved.read_text()) if saved.is_file() else None
        if kept is not None and (m.spec not in FITTED or fitted_stamp(out, m.spec) == kept["fitted"]):
            log(f"{m.spec}: val prices kept from an earlier try")
        else:
            log(f"pricing {len(val)} val items with {m.spec}")
            kept = price_member(m, splits, prompts, out)
            saved.parent.mkdir(exist_ok=True)
            saved.with_suffix(".partial").write_text(json.dumps(kept), encoding="utf-8")
            os.replace(saved.with_suffix(".partial"), saved)  # a kept file is complete
        if m.spec in ("median", "mean"):
            constants[m.spec] = kept["value"]
        prices.append(kept["prices"])
        maes.append(mae_of(truths, kept["prices"]))
    return {"truths": truths, "prices": prices, "maes": maes, "constants": constants, "items": len(val),
            "fingerprint": fingerprint(val), "prompts_in_train": copies}


def price_member(m: Member, splits: dict, prompts: list[str], out: Path) -> dict:
    """One member's val prices, its fitted baseline saved in `out`: {"prices", "value" (a constant's),
    "fitted" (the saved baseline's stamp)}."""
    predictor = Predictor(m, splits=splits)
    prices = predictor.predict(prompts, progress=not m.classical)  # a bar where a model reads each item
    if m.spec in FITTED:
        predictor.fitted.save(out / f"{m.spec}.joblib")
    return {"prices": prices, "value": getattr(predictor, "value", None), "fitted": fitted_stamp(out, m.spec)}


def priced_key(m: Member, val_fingerprint: str, train_size: int | None) -> str:
    """What a member's val prices depend on: the member (a run by its place and the time its files
    were last written), the val rows, the train rows the baselines learn from."""
    from ..inference.kept import folder_stamp

    what = [m.spec, m.decode, m.samples, m.batch_size, val_fingerprint, train_size]
    if not m.classical:
        what += folder_stamp(m.spec)
    return hashlib.sha256(json.dumps(what).encode()).hexdigest()[:16]


def fitted_stamp(out: Path, spec: str) -> int | None:
    """When the saved baseline was written: kept prices go with the file that made them."""
    path = out / f"{spec}.joblib"
    return path.stat().st_mtime_ns if spec in FITTED and path.is_file() else None


def combination_record(dataset: str, members: list[Member], out: Path, val: dict, combination: str,
                       cv_repeats: int) -> dict:
    """Fit `combination` of the members' val prices; the ensemble.json record (not yet written)."""
    try:
        weights, intercept, val_mae = fit_combination(val["truths"], val["prices"], combination)
    except ValueError as e:
        raise PricetuneError(f"--combine {combination}: {e}") from None
    record = {
        "dataset": dataset,
        "fit_on": f"val split, {val['items']} items",
        "method": combination,
        "combination": METHODS[combination],
        "members": [m.describe(out) for m in members],
        "weights": weights,
        "intercept": intercept,
        "member_val_mae": val["maes"],
        "val_mae": val_mae,
        "constants": {k: v for k, v in val["constants"].items() if k in {m.spec for m in members}},
    }
    if cv_repeats > 0:
        try:  # four fifths of a small val split may be too few items for a stack
            record["val_mae_cv"] = cross_validated_mae(val["truths"], val["prices"], combination, repeats=cv_repeats)
        except ValueError as e:
            raise PricetuneError(f"--combine {combination}, cross-validating on val: {e} (--cv-repeats 0 "
                                 "skips it)") from None
        record["cv"] = (f"5 folds of val, {cv_repeats} random cuts (seed 0): each fold priced by the combination "
                        "fit on the other four")
    return record


def fit_ensemble(dataset: str, members: list[Member], out: str | Path, log=print, combination: str = "weights",
                 cv_repeats: int = 10, train_size: int | None = None) -> dict:
    """Price the val split with each member, fit the combination there, and save the ensemble folder.
    `cv_repeats`: cuts of val into 5 folds for the cross-validated val MAE (0: none); `train_size`: the
    classical members learn from the first N train rows only."""
    out = Path(out)
    refuse_filled(out)
    if combination not in METHODS:
        raise PricetuneError(f"unknown combination {combination!r}; choose one of {', '.join(METHODS)}")
    constant = [m.spec for m in members if m.spec in ("median", "mean")]
    if combination == "stack" and constant:
        raise PricetuneError(f"--combine stack fits its own intercept, which a constant member ({', '.join(constant)}) "
                             "would only repeat; leave it out, or use --combine weights")
    if len(members) < 2:
        raise PricetuneError("an ensemble needs at least two --member")
    check_members(members, dataset, log)
    with new_folder(out, log):
        val = price_val(dataset, members, out, log, train_size)
        if cv_repeats > 0:
            log(f"cross-validating the combination on val ({cv_repeats} cuts into 5 folds)")
        record = combination_record(dataset, members, out, val, combination, cv_repeats)
        if train_size:
            record["classical_train_rows"] = train_size
        (out / "ensemble.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record
