"""`pricetune predict`: load a model from the command line's options (`pricetune.options`) and price."""

from __future__ import annotations

import json
from pathlib import Path

from .. import intervals
from ..errors import PricetuneError
from .load import LoadedModel, load_model, run_paths


def load_from_args(ns) -> LoadedModel:
    if ns.no_adapter:
        if not ns.base_model:
            raise PricetuneError("--no-adapter needs --base-model")
        return load_model(base_model=ns.base_model, quantization=ns.quantization, precision=ns.precision)
    return load_model(run=getattr(ns, "run", None), adapter=ns.adapter, base_model=ns.base_model,
                      quantization=ns.quantization, precision=ns.precision, merge=not ns.no_merge)


def interval_calibration(ns) -> dict | None:
    """The run's calibration when --interval asks for ranges (refused, with the fix, when it has none)."""
    if ns.interval is None:
        return None
    if not 0 < ns.interval < 1:
        raise PricetuneError(f"--interval is a coverage between 0 and 1, such as 0.8 (got {ns.interval})")
    folder = run_paths(ns.run)[0] if getattr(ns, "run", None) else None
    calibration = intervals.load(folder) if folder else None
    if calibration is None:
        raise PricetuneError("--interval needs the run's calibration.json: run `pricetune calibrate "
                             f"{folder or 'RUN'}` first (it prices the val split once)")
    return calibration


def predict_cli(ns) -> int:
    if bool(ns.description) == bool(ns.file):
        raise PricetuneError("give either a description or --file items.jsonl")
    if ns.samples < 1:
        raise PricetuneError("--samples must be >= 1")
    items = []
    if ns.file:
        from ..data import iter_jsonl
        from ..data.rows import ITEM_TEXT_FIELDS, item_text_of

        for where, row in iter_jsonl(Path(ns.file)):
            text = item_text_of(row)
            if text is None:
                raise PricetuneError(f"{where}: needs a non-empty field named one of {', '.join(ITEM_TEXT_FIELDS)}")
            items.append((row, text))
    else:
        items = [({"description": ns.description}, ns.description)]
    calibration = interval_calibration(ns)
    lm = load_from_args(ns)
    out = lm.price([t for _, t in items], ns.decode, ns.batch_size, ns.samples, progress=len(items) > 1)
    ranges = [intervals.interval(p, calibration, ns.interval) if calibration else None for _, p in out]
    if not ns.file:
        (text, price), r = out[0], ranges[0]
        shown = f" ({ns.interval:.0%}: ${r[0]:,.2f} - ${r[1]:,.2f})" if r else ""
        print("no price in the answer: " + repr(text) if price is None else f"${price:,.2f}{shown}")
        return 0 if price is not None else 1
    lines = [json.dumps({**row, "prediction": text, "price_predicted": price,
                         **({"price_low": r[0], "price_high": r[1]} if r else {})})
             for (row, _), (text, price), r in zip(items, out, ranges)]
    if ns.out:
        Path(ns.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"wrote {len(lines)} prices to {ns.out}")
    else:
        print("\n".join(lines))
    return 0
