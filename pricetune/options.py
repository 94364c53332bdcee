"""Command-line options that several subcommands share: the model options of `evaluate`, `predict`
and `serve`, and `predict`'s own. Nothing here imports torch, so every `--help` answers at once."""

from __future__ import annotations

import argparse
from pathlib import Path

DECODES = ("greedy", "expected", "median")  # how a generate run turns digit probabilities into a price
PRECISIONS = ("bf16", "fp16", "fp32")  # compute and storage types by name (modeling.DTYPES maps them to torch's)
DEFAULT_SAMPLES = 64  # prices drawn per item for --decode median


def refuse_filled_folder(path: str | Path, option: str = "--out") -> None:
    """`option` names a new or empty folder: pricetune never writes into one that holds something."""
    from .errors import PricetuneError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise PricetuneError(f"{path} is a file; {option} names a new folder")
    if path.is_dir() and any(path.iterdir()):
        raise PricetuneError(f"{path} already exists and is not empty; choose another {option}")


class Number:
    """An argparse type: a number of `kind` from `low` to `high` (None: no bound; `open`: the bounds
    themselves refused), so a bad value is refused with the option's name before anything loads."""

    def __init__(self, kind=int, low=None, high=None, open=False):
        self.kind, self.low, self.high, self.open = kind, low, high, open
        self.__name__ = kind.__name__  # argparse's "invalid int value: 'x'"

    def __call__(self, text: str):
        value = self.kind(text)
        too_low = self.low is not None and (value <= self.low if self.open else value < self.low)
        too_high = self.high is not None and (value >= self.high if self.open else value > self.high)
        if too_low or too_high or value != value:  # value != value: NaN
            sign = "" if self.open else "="
            need = " and ".join(f"{op}{sign} {b}" for op, b in ((">", self.low), ("<", self.high)) if b is not None)
            raise argparse.ArgumentTypeError(f"must be {need} (got {text})")
        return value


COUNT = Number(int, 1)  # how many of something: at least one
SIZE = Number(int, 0)  # 0 allowed (0 = all, or none)


def add_decode_arguments(p) -> None:
    """How a generate run prices (a regress run has one way), and how many prompts go together."""
    p.add_argument("--decode", default="greedy", choices=list(DECODES),
                   help="How a generate run prices: greedy (the course's); expected: probability-weighted mean of "
                   "the most likely prices; median: median of prices drawn from the model (best MAE). A "
                   "calibration applies to the decoding it was made with, and only to it.")
    p.add_argument("--samples", type=COUNT, default=DEFAULT_SAMPLES,
                   help=f"Prices drawn per item for --decode median (default {DEFAULT_SAMPLES}; more: a steadier median).")
    p.add_argument("--batch-size", type=COUNT, default=16, help="Prompts priced together (default 16).")


def add_model_arguments(p) -> None:
    p.add_argument("--adapter", metavar="ID_OR_DIR", help="A LoRA adapter on the Hub (user/name) or in a directory.")
    p.add_argument("--base-model", help="Base model (default: the run's, or the adapter's base).")
    p.add_argument("--no-adapter", action="store_true", help="Use the bare base model (needs --base-model), or "
                   "a folder `pricetune export` wrote, priced as its run priced (--base-model merged/).")
    p.add_argument("--quantization", choices=["4bit", "8bit", "none"],
                   help="Quantization of the base (default: as the run was trained, else 4bit).")
    p.add_argument("--precision", default="auto", choices=["auto", *PRECISIONS],
                   help="Compute precision (default: auto, as in training).")
    p.add_argument("--no-merge", action="store_true",
                   help="Keep the LoRA adapter beside an unquantized base instead of merging it into the weights "
                        "(the computation as trained, slower; merged, a price moves by about 1%% in bf16).")
    add_decode_arguments(p)


def add_predict_arguments(p) -> None:
    p.description = ("Price one description (a bare description is wrapped in the training prompt) or a file of "
                     "items (--file: jsonl, json, csv, tsv, parquet or xlsx, one item a row).")
    p.add_argument("description", nargs="?", help="Item text; a full prompt ending in 'Price is $' is used as is.")
    p.add_argument("--run", metavar="RUN_DIR", help="A pricetune run directory.")
    p.add_argument("--ensemble", metavar="DIR", help="Price with an ensemble instead: a pick of `pricetune select` "
                   "(e.g. runs/pick/pipeline) or a folder of `pricetune ensemble`.")
    p.add_argument("--interval", type=float, metavar="COVERAGE",
                   help="Also give a range that holds the true price for this share of items (e.g. 0.8); needs the "
                   "run's or ensemble's calibration.json (`pricetune calibrate RUN`; select's picks have one).")
    p.add_argument("--similar", type=SIZE, default=0, metavar="K",
                   help="Also show the K training items most like each description, with their prices and "
                   "similarity (at most 20; reads the training data: a run's neighbours.json or dataset, an "
                   "ensemble's).")
    p.add_argument("--file", help="A file of items (jsonl, json, csv, tsv, parquet or xlsx). A row's "
                   "text: its 'prompt' or 'text', else its catalog columns as `pricetune prepare` writes them (title, "
                   "category, brand, description, features, details), else a 'description' alone. Each row comes "
                   "back with its price_predicted.")
    p.add_argument("--out", help="The file to write the priced rows to, by its name: .csv, .tsv, .xlsx, .json (a "
                   "list), else JSON Lines (default: JSON Lines on stdout). Prices are kept in OUT.partial as they come: "
                   "after a failure or Ctrl-C the same command continues from them.")
    add_model_arguments(p)
