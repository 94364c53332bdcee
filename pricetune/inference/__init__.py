"""Prices from a trained model: loading, batched generation, probability-aware decoding, `Pricer`.

    pricetune predict --run runs/price-...-demo "Title: 1.01 carat Ideal cut round diamond ..."
    pricetune predict --run runs/price-...-demo --file items.jsonl --out prices.jsonl
    pricetune predict --ensemble runs/pick/pipeline "Title: ..."     # an ensemble (select's pick)

    from pricetune.inference import Pricer
    pricer = Pricer.from_run("runs/price-...-demo")
    pricer.price("Title: ...\\nCategory: ...")          # -> 4215.0
    pricer.price_many([...])                            # -> [...]

One file per part: `load.py` (a run, an adapter or a bare base, ready to price), `generate.py`
(generate runs: batched generation, `--decode greedy|expected|median`), `decode.py` (the digit-level
price distributions the last two read), `pricer.py` (the Python API), `cli.py` (`pricetune predict`),
`kept.py` (a file's prices kept as they come, for the same command to continue).
A regress run prices with one forward pass per item (`pricetune.regress.regress_prices`); an ensemble folder combines its members (`members.py`).

Generation truncates prompts exactly as training did (data.encode_prompt), sorts them by length so
batches carry little padding, pads on the left, and stops a sequence as soon as its price is complete.
"""

from importlib import import_module

# Each public name and the module that defines it, imported on first use: `pricetune.ensemble` and the
# command line's parser use this package's light parts (`members.py`) without loading torch
_EXPORTS = {
    "DECODES": "..options", "add_model_arguments": "..options", "add_predict_arguments": "..options",
    "load_from_args": ".cli", "predict_cli": ".cli",
    "DigitVocab": ".decode", "digit_vocab": ".decode", "item_seed": ".decode", "price_distributions": ".decode",
    "sample_prices": ".decode", "weighted_price": ".decode",
    "MAX_NEW_TOKENS": ".generate", "generate_prices": ".generate", "left_padded": ".generate",
    "LoadedModel": ".load", "beside_adapter": ".load", "load_model": ".load", "run_paths": ".load",
    "Pricer": ".pricer", "PriceRange": ".pricer",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name], __name__), name)
