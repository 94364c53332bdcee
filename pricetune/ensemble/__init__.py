"""Combining price models: weights fit on the validation split only, saved as a small folder.

    pricetune ensemble --dataset ../shared/data/amazon-items --member runs/amazon-regress --member tfidf \
        --out runs/ensemble
    pricetune evaluate --ensemble runs/ensemble --limit 0          # the test split, each row run once

    # once the weights are chosen, let val's rows teach too: each member refit on train + val
    pricetune train --config amazon-regress --train-on-val --output-dir runs/amazon-regress-refit
    pricetune ensemble --refit runs/ensemble --swap runs/amazon-regress=runs/amazon-regress-refit \
        --out runs/ensemble-refit
    pricetune evaluate --ensemble runs/ensemble-refit --limit 0    # test only: val trained it

    from pricetune.inference import Pricer
    Pricer.from_ensemble("runs/ensemble").price("Title: ...")

A member is a run directory (a generate run prices with `--decode`, a regress run with its head),
`tfidf`, `tfidf-embed` (reading `--base-model`), `tfidf-knn`, `median` or `mean`. The combination is a weighted
mean of log(1 + price), weights on the simplex (non-negative, summing to 1) on a grid of step 1/20,
the grid point with the lowest mean absolute error on val wins; ties go to the earlier grid point.
`ensemble.json` records the members, their val MAE, the weights and the dataset; a fitted baseline
member is saved beside it (`tfidf.joblib`, `tfidf-embed.joblib`, `tfidf-knn.joblib`) so the ensemble prices without the
training data.

Modes, one file each: `fit` (weights on val), `refit` (the same weights, every member trained on
train + val: the classical ones here, with the settings val chose; the runs by `train --train-on-val`).
`weights` holds the pure combination, `members` what a member is and how a saved folder prices.
"""

from .cli import add_ensemble_arguments, ensemble_cli
from .fit import fit_ensemble
from .members import CLASSICAL, FITTED, Ensemble, Member, Predictor
from .refit import refit_ensemble
from .weights import GRID, combine, fit_weights, simplex_grid

__all__ = ["CLASSICAL", "FITTED", "GRID", "Ensemble", "Member", "Predictor", "add_ensemble_arguments", "combine",
           "ensemble_cli", "fit_ensemble", "fit_weights", "refit_ensemble", "simplex_grid"]
