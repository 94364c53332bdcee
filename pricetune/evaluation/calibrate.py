"""`pricetune calibrate`: price the val split once and save what price ranges need.

    pricetune calibrate runs/<run>                 # -> runs/<run>/calibration.json
    pricetune calibrate runs/<run>/checkpoint-400    # -> runs/<run>/checkpoint-400/calibration.json
    pricetune calibrate --ensemble runs/pick/pipeline

The ranges are split conformal intervals on log price (`pricetune.intervals`): their promise rests on
the val items being like new ones, so a run trained on val (a refit) cannot be calibrated there. An
ensemble's weights were fit on the same val items, which makes its ranges a little narrow; its
coverage on test (`pricetune evaluate`) says by how much.
"""

from __future__ import annotations

from pathlib import Path

from .. import distributed as dist
from .. import intervals
from ..errors import PricetuneError
from ..inference.kept import model_key, partial_path, price_keeping
from ..options import add_decode_arguments


def add_calibrate_arguments(p) -> None:
    p.description = ("Price the val split once and save calibration.json in the run (or ensemble) folder: what "
                     "`predict --interval`, `Pricer.price(..., interval=0.8)` and `evaluate` need for price ranges. The val "
                     "prices are kept as they come (calibration.json.partial): stopped, the same command continues.")
    p.add_argument("run", nargs="?", help="A run directory, or one of its checkpoint-N folders (calibrated apart: "
                   "calibration.json lands in the folder given).")
    p.add_argument("--ensemble", metavar="DIR", help="An ensemble folder instead.")
    p.add_argument("--dataset", help="Whose val split (default: the run's or ensemble's dataset).")
    add_decode_arguments(p)


def calibrate_cli(ns) -> int:
    from ..config import load_run_config, refuse_val_of_refit
    from ..data import load_rows
    from ..data.rows import fingerprint
    from ..inference import Pricer, run_paths

    if bool(ns.run) == bool(ns.ensemble):
        raise PricetuneError("give a run directory or --ensemble DIR (one of them)")
    if ns.ensemble:
        from ..ensemble import Ensemble

        ens = Ensemble.load(ns.ensemble)
        if ens.train_on_val:
            raise PricetuneError(f"{ns.ensemble} is a refit: its members trained on val, so val cannot calibrate it")
        folder, dataset = Path(ns.ensemble), ns.dataset or ens.record["dataset"]
    else:
        run_dir, folder = run_paths(ns.run)  # a checkpoint's calibration is its own, not the final model's
        from ..inference.cli import refuse_decoding_options

        refuse_val_of_refit(run_dir, "calibrating its ranges")
        cfg = load_run_config(run_dir)
        refuse_decoding_options(ns, cfg.objective)  # before the model loads: the config says how it prices
        dataset = ns.dataset or cfg.dataset
    splits, _ = load_rows(dataset)  # before the model loads: data without a val split stops here
    val = splits.get("val") or []
    if not val:
        raise PricetuneError(f"dataset {dataset} has no val split (found: {', '.join(splits)}): price ranges are "
                             "calibrated on one; pass --dataset with a val split like the items to be priced")
    pricer = (Pricer.from_ensemble(ns.ensemble, batch_size=ns.batch_size) if ns.ensemble else
              Pricer.from_run(ns.run, batch_size=ns.batch_size, decode=ns.decode, samples=ns.samples, calibrated=False))
    say = print if dist.is_main() else (lambda *_: None)
    say(f"pricing {len(val)} val items")

    def price(texts: list[str]) -> list:
        # under torchrun / accelerate launch each process prices every N-th item; rank 0 writes
        return [(None, g) for g in dist.map_shared(pricer.price_items, texts)]

    # kept as they come beside calibration.json: an interrupted calibration's same command prices the rest
    kept = folder / intervals.CALIBRATION_FILE
    guesses = [g for _, g in price_keeping([r["prompt"] for r in val], price, kept, model_key(ns))]
    if not dist.is_main():
        return 0
    try:
        calibration = intervals.fit([r["price"] for r in val], guesses)
    except ValueError as e:
        raise PricetuneError(str(e)) from None
    calibration.update(dataset=dataset, val_fingerprint=fingerprint(val), model=str(ns.run or ns.ensemble),
                       decode=ns.decode if ns.run else "greedy")
    path = intervals.save(folder, calibration)
    partial_path(kept).unlink(missing_ok=True)  # written: the kept prices have served
    for c in (0.5, 0.8, 0.9):
        widths = [intervals.half_width(e, c) for e in calibration["errors"]]
        print(f"  {c:.0%} range: log(1 + guess) ± {' / '.join(f'{w:.2f}' for w in widths)} (by price band)")
    print(f"calibration: {path} ({calibration['items']} val items, {len(calibration['errors'])} band(s))")
    return 0
