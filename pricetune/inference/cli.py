"""`pricetune predict`: load a model from the command line's options (`pricetune.options`) and price."""

from __future__ import annotations

import sys
from pathlib import Path

from .. import distributed as dist
from .. import intervals
from ..data.files import format_table, openpyxl_for, write_table_file
from ..errors import PricetuneError
from ..options import DEFAULT_SAMPLES
from .load import LoadedModel, load_model, run_paths
from .kept import model_key, partial_path, price_keeping


def load_from_args(ns) -> LoadedModel:
    if ns.no_adapter:
        if not ns.base_model:
            raise PricetuneError("--no-adapter needs --base-model")
        return load_model(base_model=ns.base_model, quantization=ns.quantization, precision=ns.precision)
    run = getattr(ns, "run", None)
    if run:  # a run directory says its objective before any weights load; an adapter's is known once loaded
        from ..config import load_run_config

        refuse_decoding_options(ns, load_run_config(run_paths(run)[0]).objective)
    lm = load_model(run=run, adapter=ns.adapter, base_model=ns.base_model,
                    quantization=ns.quantization, precision=ns.precision, merge=not ns.no_merge)
    refuse_decoding_options(ns, lm.objective)
    return lm


def refuse_decoding_options(ns, objective: str) -> None:
    """--decode and --samples choose how a generate run's digits become a price; a regress run reads one
    number from its head, so they would change nothing, and a figure labelled with them would mislead."""
    if objective == "regress" and (ns.decode != "greedy" or ns.samples != DEFAULT_SAMPLES):
        given = f"--decode {ns.decode}" if ns.decode != "greedy" else f"--samples {ns.samples}"
        raise PricetuneError(f"{given} chooses how a generate run reads its price digits; this is a regress run "
                             "(one number from its head, nothing decoded): leave it out")


def refuse_model_options_for_ensemble(ns) -> None:
    """An ensemble prices with the members and decodings its ensemble.json names: the options that
    choose one model would be ignored, so a command that gives them is refused (--batch-size applies)."""
    given = [flag for flag, value in (("--run", getattr(ns, "run", None)), ("--adapter", ns.adapter),
                                      ("--base-model", ns.base_model), ("--no-adapter", ns.no_adapter),
                                      ("--quantization", ns.quantization), ("--no-merge", ns.no_merge),
                                      ("--precision", ns.precision != "auto"), ("--decode", ns.decode != "greedy"),
                                      ("--samples", ns.samples != DEFAULT_SAMPLES)) if value]
    if given:
        raise PricetuneError(f"{', '.join(given)} chooses one model; --ensemble prices with the members its "
                             "ensemble.json names, each as it was fit: leave it out")


def interval_calibration(ns) -> dict | None:
    """The run's (or ensemble's) calibration when --interval asks for ranges (refused, with the fix, when it
    has none)."""
    if ns.interval is None:
        return None
    if not 0 < ns.interval < 1:
        raise PricetuneError(f"--interval is a coverage between 0 and 1, such as 0.8 (got {ns.interval})")
    if getattr(ns, "ensemble", None):
        folder, decode = ns.ensemble, None  # its members decode as the ensemble says
    else:
        run = getattr(ns, "run", None)
        folder, decode = (run_paths(run)[1] if run else None), ns.decode  # a checkpoint has its own
    calibration = intervals.load(folder, decode) if folder else None
    if calibration is None:
        ensemble = bool(getattr(ns, "ensemble", None))
        raise PricetuneError(f"--interval needs the {'ensemble' if ensemble else 'run'}'s calibration.json: run "
                             f"`{intervals.calibrate_command(folder, ensemble)}` first (it prices the val split once)")
    return calibration


def similar_index(ns, lm: LoadedModel):
    """The training items `--similar` looks in: the run's neighbours, else its dataset's rows; None without it."""
    from .similar import check_similar_count, index_of_run

    if not check_similar_count(ns.similar):
        return None
    if lm.neighbours is not None:
        return lm.neighbours
    if not getattr(ns, "run", None):
        raise PricetuneError("--similar reads the training items of a run: pass --run RUN_DIR (an adapter carries "
                             "them only when it trained with neighbours)")
    return index_of_run(run_paths(ns.run)[0])


def show_similar(found) -> list[str]:
    return [f"  ${a.price:,.2f}  similarity {a.similarity:.2f}  {' '.join(a.text.split())[:100]}" for a in found]


def check_predict_arguments(ns) -> None:
    """What `predict` can refuse before reading a file or loading a model."""
    from ..config import is_run_dir
    from .similar import check_similar_count

    if ns.description and not ns.run and is_run_dir(ns.description):
        raise PricetuneError(f"{ns.description} is a run directory: give it as --run {ns.description}, then the "
                             "description or --file")
    if bool(ns.description) == bool(ns.file):
        raise PricetuneError("give a description or --file items.jsonl" + (", not both" if ns.file else ""))
    if ns.description is not None and not ns.description.strip():
        raise PricetuneError("the description is blank: give the item's text (its title, and what else is known)")
    if ns.ensemble:
        refuse_model_options_for_ensemble(ns)
    check_similar_count(ns.similar)
    if ns.out and Path(ns.out).is_dir():  # found now, not once every item is priced
        raise PricetuneError(f"--out {ns.out} is a folder; name the file to write (e.g. {Path(ns.out) / 'priced.csv'})")
    if ns.out and Path(ns.out).suffix.lower() == ".xlsx":
        openpyxl_for(Path(ns.out))


def read_items(ns) -> list[tuple[dict, str | None]]:
    """(row, the text to price) for the description, or each row of --file (None: a row without one, as a
    product's variant rows in a shop's export; written back with an error, as the API does)."""
    if not ns.file:
        return [({"description": ns.description}, ns.description)]
    from ..data.files import BadRows, iter_file
    from ..data.rows import ITEM_TEXT_WANTED, item_text_of, unpriced_note

    bad, items, without = BadRows(), [], []
    for where, row in iter_file(Path(ns.file), bad):  # any data file: jsonl, json, csv, tsv, parquet, xlsx
        items.append((row, item_text_of(row)))
        if items[-1][1] is None:
            without.append(where)
    if bad:
        raise PricetuneError(f"{ns.file}: unreadable rows ({bad.summary()}):\n  " + "\n  ".join(bad.examples))
    if not items:
        raise PricetuneError(f"{ns.file} holds no items to price")
    if len(without) == len(items):
        raise PricetuneError(f"{without[0]}: needs {ITEM_TEXT_WANTED}")
    if without and dist.is_main():
        print(f"note: {ns.file}: {len(without)} row(s) without a text to price (the first: {without[0]}) are written "
              "back without a price, with an 'error'", file=sys.stderr)
    if (note := unpriced_note(next(row for row, text in items if text))) and dist.is_main():
        print(f"note: {ns.file}: {note}", file=sys.stderr)
    return items


def pricing_from_args(ns):
    """A function giving (the model's answer or None, price) for each of a list of texts, and the index
    --similar looks in (or None). Under torchrun / accelerate launch each process prices every N-th text
    and every process gets all the prices."""
    if ns.ensemble:
        from .pricer import Pricer

        pricer = Pricer.from_ensemble(ns.ensemble, batch_size=ns.batch_size)
        index = pricer.training_items() if ns.similar else None

        def price(texts: list[str], progress: bool) -> list:
            return [(None, p) for p in pricer.price_items(texts, progress)]
    else:
        lm = load_from_args(ns)
        index = similar_index(ns, lm)

        def price(texts: list[str], progress: bool) -> list:
            return lm.price(texts, ns.decode, ns.batch_size, ns.samples, progress=progress)

    def shared(texts: list[str], progress: bool = False) -> list:
        return dist.map_shared(lambda share: price(share, progress and dist.is_main()), texts)

    return shared, index


def price_with_args(ns, texts: list[str]):
    """(the model's answer or None, price) for each text, and the index --similar looks in (or None). A
    file priced into --out keeps its prices as they come (`kept.py`)."""
    price, index = pricing_from_args(ns)
    if ns.file and ns.out:
        return price_keeping(texts, price, Path(ns.out), model_key(ns)), index
    return price(texts, progress=len(texts) > 1), index


def predict_cli(ns) -> int:
    check_predict_arguments(ns)
    items = read_items(ns)
    calibration = interval_calibration(ns)
    from .similar import look_alikes

    todo = [i for i, (_, text) in enumerate(items) if text is not None]  # a row without a text keeps its place
    texts = [items[i][1] for i in todo]
    answers, index = price_with_args(ns, texts)
    if not dist.is_main():  # under a launcher: rank 0 writes
        return 0
    nearest = look_alikes(index, texts, ns.similar) if index is not None else [[] for _ in todo]
    out: list[tuple[str | None, float | None]] = [(None, None)] * len(items)
    alike: list[list] = [[] for _ in items]
    for i, answer, near in zip(todo, answers, nearest):
        out[i], alike[i] = answer, near
    ranges = [intervals.interval(p, calibration, ns.interval) if calibration else None for _, p in out]
    if not ns.file:
        (text, price), r = out[0], ranges[0]
        shown = f" ({ns.interval:.0%}: ${r[0]:,.2f} - ${r[1]:,.2f})" if r else ""
        print(("no price" if text is None else "no price in the answer: " + repr(text)) if price is None
              else f"${price:,.2f}{shown}")
        if alike[0]:
            print("\n".join(["similar training items:", *show_similar(alike[0])]))
        return 0 if price is not None else 1
    priced = [{**row, **({"prediction": text} if text is not None else {}), "price_predicted": price,
               **({"price_low": r[0], "price_high": r[1]} if r else {}),
               **({"similar": [vars(a) for a in found]} if index is not None else {}),
               **({"error": "no text to price"} if item_text is None else {})}
              for (row, item_text), (text, price), r, found in zip(items, out, ranges, alike)]
    if ns.out:
        Path(ns.out).parent.mkdir(parents=True, exist_ok=True)
        fmt = write_table_file(Path(ns.out), priced)
        partial_path(Path(ns.out)).unlink(missing_ok=True)  # written: the kept prices have served
        print(f"wrote {len(priced)} prices to {ns.out} ({fmt})")
    else:
        print(format_table("jsonl", priced), end="")
    return 0
