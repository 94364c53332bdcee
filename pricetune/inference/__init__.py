"""Prices from a trained model: loading, batched generation, probability-aware decoding, `Pricer`.

    pricetune predict --run runs/price-...-demo "Title: 1.01 carat Ideal cut round diamond ..."
    pricetune predict --run runs/price-...-demo --file items.jsonl --out prices.jsonl

    from pricetune.inference import Pricer
    pricer = Pricer.from_run("runs/price-...-demo")
    pricer.price("Title: ...\\nCategory: ...")          # -> 4215.0
    pricer.price_many([...])                            # -> [...]

One file per part: `load.py` (a run, an adapter or a bare base, ready to price), `generate.py`
(generate runs: batched generation, `--decode greedy|expected|median`), `decode.py` (the digit-level
price distributions the last two read), `pricer.py` (the Python API), `cli.py` (`pricetune predict`).
A regress run prices with one forward pass per item (`pricetune.regression.regress_prices`).

Generation truncates prompts exactly as training did (data.encode_prompt), sorts them by length so
batches carry little padding, pads on the left, and stops a sequence as soon as its price is complete.
"""

from ..options import DECODES, add_model_arguments, add_predict_arguments
from .cli import load_from_args, predict_cli
from .decode import (
    DigitVocab,
    digit_vocab,
    item_seed,
    price_distributions,
    sample_prices,
    weighted_price,
)
from .generate import MAX_NEW_TOKENS, generate_prices, left_padded
from .load import LoadedModel, beside_adapter, load_model, run_paths
from .pricer import Pricer, PriceRange

__all__ = [
    "DECODES", "MAX_NEW_TOKENS", "DigitVocab", "LoadedModel", "PriceRange", "Pricer", "add_model_arguments",
    "add_predict_arguments", "beside_adapter", "digit_vocab", "generate_prices", "item_seed", "left_padded",
    "load_from_args", "load_model", "predict_cli", "price_distributions", "run_paths", "sample_prices",
    "weighted_price",
]
