"""`pricetune predict`, and the model arguments that `evaluate` and `serve` share with it."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import PricetuneError
from .generate import DECODES
from .load import LoadedModel, load_model


def add_model_arguments(p) -> None:
    p.add_argument("--adapter", metavar="ID_OR_DIR", help="A LoRA adapter on the Hub (user/name) or in a directory.")
    p.add_argument("--base-model", help="Base model (default: the run's, or the adapter's base).")
    p.add_argument("--no-adapter", action="store_true", help="Use the bare base model (needs --base-model).")
    p.add_argument("--quantization", choices=["4bit", "8bit", "none"],
                   help="Quantization of the base (default: as the run was trained, else 4bit).")
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp16", "fp32"],
                   help="Compute precision (default: auto, as in training).")
    p.add_argument("--decode", default="greedy", choices=list(DECODES),
                   help="greedy (the course's); expected: probability-weighted mean of the most likely prices; "
                        "median: median of 64 prices drawn from the model (best MAE).")
    p.add_argument("--samples", type=int, default=64,
                   help="Prices drawn per item for --decode median (default 64; more: a steadier median).")
    p.add_argument("--batch-size", type=int, default=16, help="Prompts generated together (default 16).")


def load_from_args(ns) -> LoadedModel:
    if ns.no_adapter:
        if not ns.base_model:
            raise PricetuneError("--no-adapter needs --base-model")
        return load_model(base_model=ns.base_model, quantization=ns.quantization, precision=ns.precision)
    return load_model(run=getattr(ns, "run", None), adapter=ns.adapter, base_model=ns.base_model,
                      quantization=ns.quantization, precision=ns.precision)


def add_predict_arguments(p) -> None:
    p.description = "Price one description (a bare description is wrapped in the training prompt) or a jsonl file."
    p.add_argument("description", nargs="?", help="Item text; a full prompt ending in 'Price is $' is used as is.")
    p.add_argument("--run", metavar="RUN_DIR", help="A pricetune run directory.")
    p.add_argument("--file", help="jsonl of items, each with a 'prompt' (or 'description') field.")
    p.add_argument("--out", help="Where to write the priced jsonl (default: stdout).")
    add_model_arguments(p)


def predict_cli(ns) -> int:
    if bool(ns.description) == bool(ns.file):
        raise PricetuneError("give either a description or --file items.jsonl")
    if ns.samples < 1:
        raise PricetuneError("--samples must be >= 1")
    items = []
    if ns.file:
        from ..data import iter_jsonl

        for where, row in iter_jsonl(Path(ns.file)):
            text = row.get("prompt") or row.get("description") if isinstance(row, dict) else None
            if not isinstance(text, str) or not text.strip():
                raise PricetuneError(f"{where}: needs a non-empty 'prompt' or 'description' field")
            items.append((row, text))
    else:
        items = [({"description": ns.description}, ns.description)]
    lm = load_from_args(ns)
    out = lm.price([t for _, t in items], ns.decode, ns.batch_size, ns.samples, progress=len(items) > 1)
    if not ns.file:
        text, price = out[0]
        print("no price in the answer: " + repr(text) if price is None else f"${price:,.2f}")
        return 0 if price is not None else 1
    lines = [json.dumps({**row, "prediction": text, "price_predicted": price}) for (row, _), (text, price) in
             zip(items, out)]
    if ns.out:
        Path(ns.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"wrote {len(lines)} prices to {ns.out}")
    else:
        print("\n".join(lines))
    return 0
