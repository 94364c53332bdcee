"""`pricetune select`: every candidate the members offer, fit and scored on val; the picks by a rule fixed here.

    pricetune select --dataset amazon-18k --member runs/amazon-18k-regress --member mlp --member tfidf \
        --member tfidf-knn --member median --out runs/select-18k
    pricetune evaluate --ensemble runs/select-18k/pipeline --limit 0    # then test, once, for each pick
    pricetune evaluate --ensemble runs/select-18k/classical --limit 0

Candidates: each member alone, and every set of two or more members (of up to MAX_SUBSETS_OF members
listed; beyond that, all of them, all the fine-tuned ones and all the classical ones) combined by `weights` and, where no
constant is among them, by `stack`. Each member prices val once; no candidate is left out: one that
cannot be fit (a stack on too few items) is listed with the reason.

The rule, fixed before any test figure exists: the lowest cross-validated val MAE (5 folds, `cv_repeats`
random cuts, seed 0; a member alone fits nothing on val, so its val MAE is that figure); ties go to
the candidate with fewer members, then to the one listed first. Three picks: `pipeline` among all
candidates, `llm_only` among those made of fine-tuned runs alone (no baseline, no neighbour look-up),
`classical` among those with no fine-tuned run (the best a user gets without a language model: the
yardstick). Each pick is written as an ensemble folder to score on test, calibrated for price ranges
from the same val prices (`calibration.json`, as `pricetune calibrate` would write it); select.json has
every candidate's figures, each member's val prices (for any later paired comparison), and
`llm_adds`: the pipeline against the classical pick on val, item by item, in sample and
cross-validated (each item priced by combinations fit without it, the same cuts for both), with
paired 95% intervals: what the fine-tuned model takes off the best pipeline without it;
and `each_run_adds`: for each fine-tuned run, the best candidate with it against the best without it.

The picks' val figures are the lowest of many candidates', and the classical members' own settings
(ridge alpha, k, epochs) were chosen on the same val: they read low. They rank candidates; an estimate
of the error on new items is each pick's test figure, scored once.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import statistics
import sys
from pathlib import Path

from .. import intervals
from ..errors import PricetuneError
from ..inference.members import CLASSICAL, FITTED, Member, combine
from .fit import check_members, new_folder, price_val, refuse_filled
from .weights import METHODS, cross_validated_mae, fit_combination, out_of_fold

PICKS = {  # name: which candidates it is chosen among
    "pipeline": lambda c: True,
    "llm_only": lambda c: c["llm_only"],
    "classical": lambda c: c["classical"],
}

MAX_SUBSETS_OF = 7  # members; 2^7 - 8 = 120 sets, each fit 5 x cv_repeats times per method (three runs + four
# classical members, amazon-18k: every set, so each run is weighed with and without it in every company)
RULE = ("lowest cross-validated val MAE (5 folds, {repeats} cuts, seed 0; a member alone: its val MAE); ties: "
        "fewer members, then the earlier candidate")


def candidate_sets(members: list[Member]) -> list[tuple[int, ...]]:
    """The member sets offered, as index tuples, in a fixed order: singles, then larger sets."""
    n = len(members)
    singles = [(i,) for i in range(n)]
    if n <= MAX_SUBSETS_OF:
        return singles + [s for k in range(2, n + 1) for s in itertools.combinations(range(n), k)]
    llm = tuple(i for i, m in enumerate(members) if m.llm_only)
    classical = tuple(i for i, m in enumerate(members) if m.classical)
    return singles + [tuple(range(n))] + [s for s in (llm, classical) if 2 <= len(s) < n]


def score_candidates(members: list[Member], val: dict, cv_repeats: int, progress: bool = False) -> list[dict]:
    """Every candidate's fit and figures on val; `progress`: a bar on stderr (seven members: 127 sets)."""
    from tqdm.auto import tqdm

    out = []
    for subset in tqdm(candidate_sets(members), desc="candidates", unit="set", file=sys.stderr, disable=not progress):
        prices = [val["prices"][i] for i in subset]
        names = [members[i].spec for i in subset]
        llm_only = all(members[i].llm_only for i in subset)
        kinds = dict(llm_only=llm_only, classical=all(members[i].classical for i in subset))
        if len(subset) == 1:
            mae = val["maes"][subset[0]]
            out.append(dict(members=list(subset), names=names, method="alone", weights=[1.0], intercept=0.0,
                            val_mae=mae, val_mae_cv=mae, **kinds))
            continue
        for method in METHODS:
            row = dict(members=list(subset), names=names, method=method, **kinds)
            if method == "stack" and any(members[i].spec in ("median", "mean") for i in subset):
                continue  # a stack's intercept is the constant: not offered, as `ensemble` refuses it
            try:
                weights, intercept, mae = fit_combination(val["truths"], prices, method)
                cv = cross_validated_mae(val["truths"], prices, method, repeats=cv_repeats)
                row.update(weights=weights, intercept=intercept, val_mae=mae, val_mae_cv=cv)
            except ValueError as e:
                row.update(skipped=str(e))
            out.append(row)
    return out


def pick(candidates: list[dict], among=PICKS["pipeline"]) -> dict | None:
    """The rule, among the candidates `among` accepts: lowest cross-validated val MAE, then fewer
    members, then the earlier candidate."""
    pool = [c for c in candidates if "skipped" not in c and among(c)]
    if not pool:
        return None
    return min(pool, key=lambda c: (round(c["val_mae_cv"], 6), len(c["members"]), candidates.index(c)))


def write_pick(folder: Path, source: Path, dataset: str, members: list[Member], val: dict, chosen: dict,
               kind: str, train_size: int | None = None) -> None:
    """The pick as an ensemble folder (`evaluate --ensemble` scores it): its members, weights, and the
    fitted baselines it needs."""
    folder.mkdir()
    chosen_members = [members[i] for i in chosen["members"]]
    for m in chosen_members:
        if m.spec in FITTED:
            link_or_copy(source / f"{m.spec}.joblib", folder / f"{m.spec}.joblib")
    record = {
        "dataset": dataset, "fit_on": f"val split, {val['items']} items", "selected_as": kind,
        "method": chosen["method"] if chosen["method"] != "alone" else "weights",
        "combination": METHODS.get(chosen["method"], "one member alone"),
        "members": [m.describe(folder) for m in chosen_members], "weights": chosen["weights"],
        "intercept": chosen["intercept"], "member_val_mae": [val["maes"][i] for i in chosen["members"]],
        "val_mae": chosen["val_mae"], "val_mae_cv": chosen["val_mae_cv"],
        "constants": {k: v for k, v in val["constants"].items() if k in {m.spec for m in chosen_members}},
    }
    if train_size:  # its classical members learnt from the first N train rows: a refit or a look-up must too
        record["classical_train_rows"] = train_size
    (folder / "ensemble.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    calibrate_pick(folder, dataset, val, chosen)


def calibrate_pick(folder: Path, dataset: str, val: dict, chosen: dict) -> None:
    """The pick's price ranges from the val prices already in hand: what `pricetune calibrate --ensemble`
    would compute by pricing val again (the same in-sample caveat: the combination was fit on these items)."""
    guesses = combine(chosen["weights"], [val["prices"][i] for i in chosen["members"]], chosen["intercept"])
    try:
        calibration = intervals.fit(val["truths"], guesses)
    except ValueError:  # fewer than 10 priced val items: no ranges, as calibrate would refuse
        return
    intervals.save(folder, {**calibration, "dataset": dataset, "val_fingerprint": val["fingerprint"]})


def select(dataset: str, members: list[Member], out: str | Path, log=print, cv_repeats: int = 10,
           train_size: int | None = None) -> dict:
    """Price val with each member once, score every candidate, write the picks and select.json."""
    out = Path(out)
    refuse_filled(out)
    if not members:
        raise PricetuneError("select needs at least one --member")
    if len({m.spec for m in members}) != len(members):
        raise PricetuneError("a --member is listed twice")
    if cv_repeats < 1:
        raise PricetuneError(f"--cv-repeats {cv_repeats}: the rule needs cross-validated figures; give 1 or more")
    check_members(members, dataset, log)
    with new_folder(out, log):
        val = price_val(dataset, members, out, log, train_size)
        log(f"fitting and cross-validating the candidates on val ({cv_repeats} cuts into 5 folds)")
        candidates = score_candidates(members, val, cv_repeats, progress=True)
        picks = {}
        for kind, among in PICKS.items():
            chosen = pick(candidates, among)
            if chosen is not None:
                write_pick(out / kind, out, dataset, members, val, chosen, kind, train_size)
                picks[kind] = candidates.index(chosen)
        record = {"dataset": dataset, "rule": RULE.format(repeats=cv_repeats), "val_items": val["items"],
                  "val_prompts_in_train": val["prompts_in_train"],
                  "classical_train_rows": train_size or "all",
                  "members": [{**m.describe(out), "val_mae": mae, "val_prices": prices}
                              for m, mae, prices in zip(members, val["maes"], val["prices"])],
                  "candidates": candidates, "picks": picks,
                  "llm_adds": llm_adds(candidates, picks, val, cv_repeats),
                  "each_run_adds": each_run_adds(candidates, picks, members, val, cv_repeats)}
        (out / "select.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def label(candidate: dict) -> str:
    names = [Path(n).name if n not in CLASSICAL else n for n in candidate["names"]]
    return " + ".join(names) + ("" if candidate["method"] == "alone" else f" ({candidate['method']})")


def link_or_copy(src: Path, dst: Path) -> None:
    """A fitted baseline into a pick's folder: a hard link where the file system allows (an mlp's file
    is hundreds of MB, and the picks share it), else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def pick_guesses(chosen: dict, val: dict, cv_repeats: int) -> tuple[list, list[list]]:
    """A candidate's val guesses: fit on all of val, and out of fold for each cut (a member alone fits
    nothing, so its guesses are the same in both)."""
    prices = [val["prices"][i] for i in chosen["members"]]
    in_sample = combine(chosen["weights"], prices, chosen["intercept"])
    if chosen["method"] == "alone":
        return in_sample, [in_sample] * cv_repeats
    return in_sample, out_of_fold(val["truths"], prices, chosen["method"], repeats=cv_repeats)


def llm_adds(candidates: list[dict], picks: dict, val: dict, cv_repeats: int) -> dict | None:
    """The pipeline pick against the classical pick on val, item by item: negative, the fine-tuned
    model takes that much off the best pipeline without it. None when either pick is missing."""
    if "pipeline" not in picks or "classical" not in picks:
        return None
    pipeline, classical = candidates[picks["pipeline"]], candidates[picks["classical"]]
    return {"pipeline": label(pipeline), "classical": label(classical), **paired(pipeline, classical, val, cv_repeats)}


def each_run_adds(candidates: list[dict], picks: dict, members: list[Member], val: dict, cv_repeats: int) -> dict:
    """For each fine-tuned run: the best candidate with it against the best without it, both by the
    rule, item by item (what that run, and only it, takes off; the one with it is the pipeline when
    the pipeline holds it). Keyed by the run's name."""
    if "pipeline" not in picks:
        return {}
    out = {}
    for i, member in enumerate(members):
        if not member.llm_only:
            continue
        best_with = pick(candidates, lambda c, i=i: i in c["members"])
        without = pick(candidates, lambda c, i=i: i not in c["members"])
        if best_with is not None and without is not None:
            out[Path(member.spec).name] = {"with": label(best_with), "without": label(without),
                                           "with_is_pipeline": best_with is candidates[picks["pipeline"]],
                                           **paired(best_with, without, val, cv_repeats)}
    return out


def paired(first: dict, second: dict, val: dict, cv_repeats: int) -> dict:
    """Two candidates' val errors, item by item (first minus second), in sample and cross-validated:
    each item's error averaged over the cuts, with guesses from combinations fit without it."""
    from ..metrics import paired_difference

    truths = val["truths"]
    (f_in, f_cv), (s_in, s_cv) = pick_guesses(first, val, cv_repeats), pick_guesses(second, val, cv_repeats)
    f_err = [statistics.fmean(abs((g[i] or 0.0) - t) for g in f_cv) for i, t in enumerate(truths)]
    s_err = [statistics.fmean(abs((g[i] or 0.0) - t) for g in s_cv) for i, t in enumerate(truths)]
    enough = len(truths) > 1
    return {"same_pick": first is second,
            "in_sample": paired_difference(truths, f_in, s_in) if enough else None,
            "cross_validated": paired_difference([0.0] * len(truths), f_err, s_err) if enough else None}
