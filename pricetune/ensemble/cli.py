"""`pricetune ensemble`: fit weights on val, or refit a fitted ensemble's members on train + val."""

from __future__ import annotations

from ..errors import PricetuneError
from .fit import fit_ensemble
from ..inference.members import Member
from ..options import COUNT, SIZE, add_decode_arguments
from .refit import parse_swaps, refit_ensemble


MEMBERS = "RUN|tfidf|tfidf-knn|mlp|median|mean"


def add_member_arguments(p, what: str) -> None:
    """The options `ensemble` and `select` share: the dataset, the members and how they price."""
    p.add_argument("--dataset", help=f"Dataset with train and val splits (as `train --dataset`){what}.")
    p.add_argument("--member", action="append", metavar=MEMBERS,
                   help="A member: a run directory (or one of its checkpoint-N folders), or a classical model: tfidf, "
                   "tfidf-knn, mlp, median or mean (see `pricetune evaluate --help`, --baseline). Repeat.")
    p.add_argument("--cv-repeats", type=SIZE, default=10,
                   help="Random cuts of val into 5 folds for the cross-validated val MAE (default 10: each cut's "
                   "figure moves by about a dollar on a few hundred items, the mean of ten far less).")
    p.add_argument("--train-size", type=COUNT, metavar="N",
                   help="Classical members learn from the first N train rows only (to match runs trained on N rows).")
    add_decode_arguments(p)


def add_ensemble_arguments(p) -> None:
    p.description = ("Combine several price models (runs and classical baselines) with weights fit on the "
                     "validation split only; evaluate the result with `pricetune evaluate --ensemble DIR`. With "
                     "--refit, keep a fitted ensemble's weights and train its members again on train + val.")
    add_member_arguments(p, "; not with --refit, which uses the source ensemble's")
    p.add_argument("--combine", default="weights", choices=["weights", "stack"],
                   help="How the members' prices are combined, fit on val: 'weights' (default), a weighted mean of "
                   "log(1 + price) with non-negative weights summing to 1 (a 1/20 grid); 'stack', a median regression "
                   "of log(1 + price) on the members' log prices, free weights and an intercept, which can spread the "
                   "guesses wider than any mean. Compare the two on the cross-validated val MAE printed, not the "
                   "in-sample one (--cv-repeats 0 skips it).")
    p.add_argument("--out", required=True, help="New folder for ensemble.json (and the fitted baselines' SPEC.joblib; "
                   "after a failed or interrupted try: the same folder, whose members' val prices it kept).")
    p.add_argument("--refit", metavar="ENS_DIR",
                   help="Refit this fitted ensemble: the same weights (and intercept), its classical members fit "
                   "again on train + val with the settings val chose, its weighted runs swapped for their refits (--swap). Members of "
                   "weight 0 are left out; the result is scored on test only.")
    p.add_argument("--swap", action="append", default=[], metavar="RUN=REFIT_RUN",
                   help="With --refit: the run trained with --train-on-val (same recipe) that replaces a weighted run "
                   "of the source ensemble. Repeat, once for each weighted run.")


def ensemble_cli(ns) -> int:
    if ns.refit:
        if ns.member or ns.dataset:
            raise PricetuneError("--refit keeps the source ensemble's members and dataset; drop --member and --dataset")
        record = refit_ensemble(ns.refit, parse_swaps(ns.swap), ns.out)
        for m, w in zip(record["members"], record["weights"]):
            was = f"   (refit of {m['refit_of']})" if "refit_of" in m else "   (refit on train + val)"
            print(f"  {m['spec']:<40} weight {w:.2f}{was}")
        if record["intercept"]:
            print(f"  intercept {record['intercept']:+.3f} (log(1 + price))")
        print(f"  weights fit on val by {ns.refit} (val MAE ${record['source_val_mae']:,.2f}, before the refit)")
        print(f"ensemble: {ns.out} (score it on test: pricetune evaluate --ensemble {ns.out} --limit 0)")
        return 0
    if ns.swap:
        raise PricetuneError("--swap names a refit run for --refit; without --refit there is nothing to swap")
    if not ns.dataset or not ns.member:
        raise PricetuneError("an ensemble needs --dataset and at least two --member (or --refit ENS_DIR)")
    members = [Member(s, ns.decode, ns.samples, ns.batch_size) for s in ns.member]
    record = fit_ensemble(ns.dataset, members, ns.out, combination=ns.combine, cv_repeats=ns.cv_repeats,
                          train_size=ns.train_size)
    for m, w, mae in zip(record["members"], record["weights"], record["member_val_mae"]):
        print(f"  {m['spec']:<40} weight {w:.2f}   val MAE ${mae:,.2f}")
    if record["intercept"]:
        print(f"  intercept {record['intercept']:+.3f} (log(1 + price))")
    cv = f", cross-validated ${record['val_mae_cv']:,.2f}" if "val_mae_cv" in record else ""
    print(f"  ensemble val MAE ${record['val_mae']:,.2f} (fit there{cv})")
    print(f"ensemble: {ns.out}")
    return 0


def add_select_arguments(p) -> None:
    from .select import MAX_SUBSETS_OF

    p.description = (
        "Choose on val, by a rule fixed in the code: every member alone and every set of two or more members "
        f"(of up to {MAX_SUBSETS_OF} listed) combined by weights and by stack, each scored by its cross-validated "
        "val MAE; the lowest wins (ties: fewer members, then the earlier). Writes three picks as ensemble folders, "
        "OUT/pipeline (any candidate), OUT/llm_only (fine-tuned runs alone) and OUT/classical (no fine-tuned run: "
        "the yardstick), each calibrated for price ranges from the same val prices, every candidate's figures in "
        "OUT/select.json, and what the fine-tuned model adds: the pipeline against the classical pick on val, item "
        "by item. Test is not read: score each pick on it once with `pricetune evaluate --ensemble`.")
    add_member_arguments(p, "")
    p.add_argument("--out", required=True, help="New folder for select.json and the picks (after a failed or "
                   "interrupted try: the same folder, whose members' val prices it kept).")


def takes_off(cv: dict) -> str:
    """"takes $1.20 ± 0.90 off" or "adds $8.18 ± 42.58 to": what a member does to the error it joins."""
    verb = "takes ${:,.2f} ± {:,.2f} off" if cv["mae_diff"] <= 0 else "adds ${:,.2f} ± {:,.2f} to"
    return verb.format(abs(cv["mae_diff"]), cv["diff_ci95"])


def select_cli(ns) -> int:
    from .select import label, select

    if not ns.dataset or not ns.member:
        raise PricetuneError("select needs --dataset and at least one --member")
    members = [Member(s, ns.decode, ns.samples, ns.batch_size) for s in ns.member]
    record = select(ns.dataset, members, ns.out, cv_repeats=ns.cv_repeats, train_size=ns.train_size)
    cands = record["candidates"]
    width = max(len(label(c)) for c in cands)
    print(f"{'candidate':<{width}}  val MAE  cross-validated")
    for c in sorted(cands, key=lambda c: c.get("val_mae_cv", float("inf"))):
        figures = f"${c['val_mae']:>7,.2f}  ${c['val_mae_cv']:>7,.2f}" if "skipped" not in c else f"skipped: {c['skipped']}"
        print(f"{label(c):<{width}}  {figures}")
    print(f"rule: {record['rule']}")
    for kind, i in record["picks"].items():
        print(f"pick {kind}: {label(cands[i])} -> {ns.out}/{kind}  "
              f"(score on test once: pricetune evaluate --ensemble {ns.out}/{kind} --limit 0)")
    adds = record["llm_adds"]
    if adds and not adds["same_pick"]:
        cv = adds["cross_validated"]
        print(f"the fine-tuned model {takes_off(cv)} the best pipeline without it on val (cross-validated, item by item)")
    elif adds:
        print("the pipeline has no fine-tuned model: val prefers the classical pick")
    for run, each in record["each_run_adds"].items():
        cv = each["cross_validated"]
        print(f"  {run} {takes_off(cv)} the best candidate without it: {each['with']} against {each['without']}")
    return 0
