"""Linear probes on the frozen base model: which hidden state carries the price?

    python -m pricetune.probe --dataset ../shared/data/amazon-items --out docs/results/pooling-probe.json

Before spending 40 minutes of training on a read-out (`regress_pooling: last` or `mean`,
`regress_layers`), this asks the untrained base: each prompt of the train and val splits goes through
the base once (encoded exactly as training encodes it), and a ridge regression on log price is fit on
the train split's features, its regularisation chosen on val, for each read-out: the last prompt
token's final hidden state (what transformers' sequence classification reads), and the mean over the
prompt of each layer's hidden states, passed through the base's final norm as they would be in a base
cut to that many layers (`regress_layers: k`). The val MAE of each says how much price a linear head
finds there. The test split is never read.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from .regression import PROBE_ALPHAS, layer_readouts, ridge_on_log_price


def readout_names(n_layers: int) -> list[str]:
    return ["last token, final layer"] + [f"mean, layer {k}" for k in range(1, n_layers + 1)]


def features(model, tokenizer, prompts: list[str], max_length: int, batch_size: int = 32, progress: bool = True):
    """[n, 1 + layers, hidden] float32 array: the read-outs of `readout_names`, prompts in input order."""
    layers = range(1, model.config.num_hidden_layers + 1)
    return layer_readouts(model, tokenizer, prompts, max_length, layers, last_token=True, batch_size=batch_size,
                          progress=progress, desc="probing")


def ridge_probe(train_x, train_prices, val_x, val_prices, alphas=PROBE_ALPHAS) -> dict:
    """Standardised features, ridge on log(1 + price); the alpha with the lowest val MAE."""
    fit = ridge_on_log_price(train_x, train_prices, val_x, val_prices, alphas)
    return {k: fit[k] for k in ("val_mae", "alpha", "val_mae_by_alpha")}


def run_probe(base_model: str, dataset: str, max_length: int, batch_size: int = 32, progress: bool = True) -> dict:
    from .data import load_splits
    from .modeling import load_base_model, load_tokenizer, pick_precision

    splits, _ = load_splits(dataset, val_size=10**9, need=("train", "val"))
    tokenizer = load_tokenizer(base_model)
    model = load_base_model(base_model, "none", pick_precision()).eval()
    feats = {name: features(model, tokenizer, [r["prompt"] for r in splits[name]], max_length, batch_size, progress)
             for name in ("train", "val")}
    prices = {name: [r["price"] for r in splits[name]] for name in ("train", "val")}
    result = {"base_model": base_model, "dataset": dataset, "max_length": max_length,
              "train_rows": len(prices["train"]), "val_rows": len(prices["val"]),
              "fit": "ridge on log(1 + price), standardised features, alpha chosen on val", "readouts": {}}
    for k, name in enumerate(readout_names(model.config.num_hidden_layers)):
        result["readouts"][name] = ridge_probe(feats["train"][:, k], prices["train"], feats["val"][:, k], prices["val"])
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pricetune.probe", description=__doc__.split("\n\n")[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, help="A dataset with train and val splits (as `train --dataset`).")
    p.add_argument("--base-model", default="smollm2-135m", help="The base to probe (as `train --base-model`).")
    p.add_argument("--max-length", type=int, default=192, help="Prompt tokens, cut as training cuts them.")
    p.add_argument("--batch-size", type=int, default=32, help="Prompts per forward pass.")
    p.add_argument("--out", help="Write the result here as JSON (printed either way).")
    ns = p.parse_args(argv)
    from .errors import PricetuneError

    try:
        result = run_probe(ns.base_model, ns.dataset, ns.max_length, ns.batch_size)
    except PricetuneError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name, r in result["readouts"].items():
        print(f"  {name:<26} val MAE ${r['val_mae']:,.2f} (alpha {r['alpha']:g})")
    if ns.out:
        Path(ns.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {ns.out}")
    return 0 if all(math.isfinite(r["val_mae"]) for r in result["readouts"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
