"""`pricetune predict`: load a model from the command line's options (`pricetune.options`) and price."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import PricetuneError
from .load import LoadedModel, load_model


def load_from_args(ns) -> LoadedModel:
    if ns.no_adapter:
        if not ns.base_model:
            raise PricetuneError("--no-adapter needs --base-model")
        return load_model(base_model=ns.base_model, quantization=ns.quantization, precision=ns.precision)
    return load_model(run=getattr(ns, "run", None), adapter=ns.adapter, base_model=ns.base_model,
                      quantization=ns.quantization, precision=ns.precision, merge=not ns.no_merge)


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
