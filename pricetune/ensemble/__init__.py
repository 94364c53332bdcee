"""Combining price models: weights fit on the validation split only, saved as a small folder.

    pricetune ensemble --dataset amazon-18k --member runs/amazon-18k-regress --member tfidf \
        --out runs/ensemble
    pricetune evaluate --ensemble runs/ensemble --limit 0          # the test split, each row run once

    # once the weights are chosen, let val's rows teach too: each member refit on train + val
    pricetune train --config amazon-18k-regress --train-on-val --output-dir runs/amazon-18k-regress-refit
    pricetune ensemble --refit runs/ensemble --swap runs/amazon-18k-regress=runs/amazon-18k-regress-refit \
        --out runs/ensemble-refit
    pricetune evaluate --ensemble runs/ensemble-refit --limit 0    # test only: val trained it

    from pricetune.inference import Pricer
    Pricer.from_ensemble("runs/ensemble").price("Title: ...")

A member is a run directory (a generate run prices with `--decode`, a regress run with its head),
`tfidf`, `tfidf-knn`, `mlp`, `median` or `mean`. The combination
(`--combine`) is by default a weighted mean of log(1 + price), weights on the simplex (non-negative,
summing to 1) on a grid of step 1/20, the grid point with the lowest mean absolute error on val
winning (ties go to the earlier grid point); `--combine stack` fits a median regression of log price
on the members' log prices instead (free weights and an intercept). Either is scored on val twice:
in-sample, and cross-validated (5 folds, the combination fit on four), the figure to choose between
them on. `ensemble.json` records the members, their val MAE, the weights (and intercept), both val
MAEs and the dataset; a fitted baseline
member is saved beside it (`tfidf.joblib`, `tfidf-knn.joblib`, `mlp.joblib`) so the ensemble prices without the
training data.

Modes, one file each: `fit` (weights on val), `refit` (the same weights, every member trained on
train + val: the classical ones here, with the settings val chose; the runs by `train --train-on-val`).
`weights` fits the combination; what a member is and how a saved folder prices is `pricetune.inference.members`.
"""

from .cli import add_ensemble_arguments, ensemble_cli
from .fit import fit_ensemble
from ..inference.members import CLASSICAL, FITTED, Ensemble, Member, Predictor, combine
from .refit import refit_ensemble
from .weights import GRID, METHODS, cross_validated_mae, fit_combination, fit_stack, fit_weights, simplex_grid

__all__ = ["CLASSICAL", "FITTED", "GRID", "METHODS", "Ensemble", "Member", "Predictor", "add_ensemble_arguments",
           "combine", "cross_validated_mae", "ensemble_cli", "fit_combination", "fit_ensemble", "fit_stack",
           "fit_weights", "refit_ensemble", "simplex_grid"]
