"""`pricetune prepare`, top to bottom: read, curate, cut, balance, split, write (nothing left behind on
failure), and its command line."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

from ..errors import DataError, PricetuneError
from ..options import COUNT, SIZE, refuse_filled_folder
from .card import write_card
from .read import read_source
from .rules import (BANDS, PRICE_NAMES, Funnel, PrepareSettings, balance, curate, cut_to_tokens, dedupe_prompts,
                    keep_one_currency, split, to_row)


def prepare(s: PrepareSettings, log=print) -> dict:
    """Run the pipeline; write the folder. Returns the record saved as prepare.json."""
    from ..modeling import load_tokenizer

    out = Path(s.out)
    refuse_filled_folder(out)
    if s.min_price <= 0 or s.max_price <= s.min_price:
        raise PricetuneError("--min-price must be > 0 and below --max-price")
    funnel = Funnel()
    from tqdm.auto import tqdm

    rows = tqdm(read_source(s.source, s.hub_config, s.hub_split), desc="reading", unit="row", file=sys.stderr, mininterval=1.0)
    items = keep_one_currency(curate(rows, s, funnel), funnel)
    rows.close()
    if not items:
        raise DataError(f"no item survived curation ({funnel.summary()}){funnel.hint_lines()}")
    tokenizer = load_tokenizer(s.base_model)
    tokens = cut_to_tokens(items, tokenizer, s.max_tokens)
    for it, n in zip(items, tokens):
        it["tokens"] = n
    items = dedupe_prompts(items, funnel)
    after_dedupe = len(items)
    if s.balance:
        items = balance(items, s.balance_cap, s.seed, s.min_price, s.max_price)
    splits = split(items, s.val, s.test, s.seed, funnel)
    out.mkdir(parents=True, exist_ok=True)
    try:
        for name, part in splits.items():
            if not part:  # `--val 0`: no file, which loaders read as no split (an empty one reads as a mistake)
                continue
            with open(out / f"{name}.jsonl", "w", encoding="utf-8") as f:
                for it in part:
                    f.write(json.dumps(to_row(it), ensure_ascii=False) + "\n")
        record = {
            "settings": asdict(s),
            "funnel": {"read": funnel.read, "dropped": dict(funnel.dropped.most_common()),
                       "kept_after_curation": after_dedupe,
                       "dropped_by_balance": after_dedupe - len(items), "kept": len(items),
                       "splits": {k: len(v) for k, v in splits.items()}},
            "first_drop_of_each_reason": funnel.examples,
            "currency": funnel.currency,
            "columns_read": funnel.read_from,
        }
        (out / "prepare.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        write_card(out, record, items, splits)
    except BaseException:
        import shutil

        shutil.rmtree(out, ignore_errors=True)
        raise
    return record


def add_prepare_arguments(p) -> None:
    p.description = (
        "Turn a raw product catalog (CSV or TSV, JSONL, JSON, parquet, an .xlsx sheet, a folder of them, or a Hub dataset) into "
        "train/val/test files in the course's prompt/completion format, with the course's curation and a data card.")
    d = PrepareSettings("", "")
    p.add_argument("source", help="A file, a folder of files, or a Hub dataset id.")
    p.add_argument("--out", required=True, help="New folder for train/val/test.jsonl and the data card.")
    p.add_argument("--price-column", help=f"The price column (default: the first of {', '.join(PRICE_NAMES)}): numbers, "
                   "or text such as $1,299.99, 12,50 (a decimal comma), USD 89 or 129,00 €; items priced in "
                   "a currency other than the one most prices name are dropped.")
    p.add_argument("--text-columns", type=lambda v: [c.strip() for c in v.split(",") if c.strip()],
                   help="Columns that make the item text, each a 'Name: value' line (default: title, category, "
                   "brand, description, features, details, found by name).")
    p.add_argument("--seed", type=int, default=d.seed, help=f"Seed for the split and --balance (default {d.seed}).")
    p.add_argument("--val", type=SIZE, default=d.val, help=f"Items in the val split (default {d.val}).")
    p.add_argument("--test", type=SIZE, default=d.test, help=f"Items in the test split (default {d.test}).")
    p.add_argument("--min-price", type=float, default=d.min_price, help=f"Lowest price kept (default {d.min_price}).")
    p.add_argument("--max-price", type=float, default=d.max_price, help=f"Highest price kept (default {d.max_price}).")
    p.add_argument("--min-chars", type=SIZE, default=d.min_chars,
                   help=f"Shortest item text kept, in characters (default {d.min_chars}, the course's).")
    p.add_argument("--max-tokens", type=COUNT, default=d.max_tokens,
                   help=f"Item text cut to this many tokens of --base-model's tokenizer (default {d.max_tokens}).")
    p.add_argument("--balance", action="store_true", help="Cap the items per price band (cheap items don't swamp the set).")
    p.add_argument("--balance-cap", type=COUNT, default=d.balance_cap,
                   help=f"With --balance: items per band at most (default {d.balance_cap}; {BANDS} bands).")
    p.add_argument("--base-model", default=d.base_model, help=f"Tokenizer for the cut (default {d.base_model}).")
    p.add_argument("--limit", type=COUNT, help="Stop after N kept items (a quick look at a huge catalog).")
    p.add_argument("--hub-config", metavar="NAME",
                   help="A Hub dataset's configuration (e.g. raw_meta_Appliances for McAuley-Lab/Amazon-Reviews-2023).")
    p.add_argument("--hub-split", default=d.hub_split, metavar="NAME",
                   help=f"A Hub dataset's split to read (default {d.hub_split}; Amazon-Reviews-2023's is 'full').")


def prepare_cli(ns) -> int:
    s = PrepareSettings(source=ns.source, out=ns.out, price_column=ns.price_column, text_columns=ns.text_columns,
                        seed=ns.seed, val=ns.val, test=ns.test, min_price=ns.min_price, max_price=ns.max_price,
                        min_chars=ns.min_chars, max_tokens=ns.max_tokens, balance=ns.balance,
                        balance_cap=ns.balance_cap, base_model=ns.base_model, limit=ns.limit,
                        hub_config=ns.hub_config, hub_split=ns.hub_split)
    record = prepare(s)
    f = record["funnel"]
    print(f"read {f['read']:,} rows, kept {f['kept']:,}: train {f['splits']['train']:,}, val {f['splits']['val']:,}, "
          f"test {f['splits']['test']:,}")
    for reason, n in f["dropped"].items():
        print(f"  dropped {n:,}: {reason}" + (f" (prices kept in {record['currency']})" if reason == "another currency" else ""))
    read = record["columns_read"]
    print(f"  read: the price from {read['price']!r}, the text from {', '.join(map(repr, read['text']))}")
    if record["currency"] not in (None, "USD"):
        print(f"  prices in {record['currency']}, as the catalog gives them")
    without_val = " --val-size 0" if not f["splits"]["val"] else ""
    print(f"data: {ns.out}  (card: {ns.out}/README.md; train with: pricetune train --dataset {ns.out}{without_val})")
    return 0
