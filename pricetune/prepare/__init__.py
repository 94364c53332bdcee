"""`pricetune prepare`: a raw product catalog in, a training set in the course's format out.

    pricetune prepare catalog.csv --out data/mine                    # columns found by name
    pricetune prepare export.csv --out data/mine --price-column cost --text-columns name,colour,notes
    pricetune prepare McAuley-Lab/Amazon-Reviews-2023 --out data/appliances   # a Hub dataset (online)
    pricetune train --dataset data/mine                              # reads the folder as it is

SOURCE: a CSV (or TSV), JSONL, JSON, parquet or .xlsx file, a folder of them, or a Hub dataset id. Rows are read in
a stream (parquet by record batch, Hub datasets with streaming=True), so memory holds the kept items
only. Each row becomes one item text: a `Title:` line, then `Category:`, `Brand:`, `Description:`,
`Features:` and `Details:` lines from the columns of those names (or their names in Amazon's data and
in Shopify's, WooCommerce's and Google Merchant's exports: `data.catalog.FIELDS`; HTML read as text), or
one `Name: value` line per `--text-columns` column (the title, for de-duplication, is the one named
title, name or product_name, if chosen); lists are joined, dicts rendered `key: value`.

The course's curation, each step a setting (`pricetune prepare --help`), applied in this order and
counted in the data card's funnel:
  1. a usable price: present, a number (or text: $1,299.99, 12,50, USD 89, 129,00 €), within --min-price ..
     --max-price ($0.50 - $999.49); where prices name currencies, those of the one most name (the others
     dropped after this step, as "another currency");
  2. text: detail keys that are noise dropped (part and model numbers, best-sellers rank, batteries,
     dates first available), whitespace squashed, part-number-like tokens (7+ characters mixing
     capital letters and digits) scrubbed, at least --min-chars characters left;
  3. duplicates: the first item of each title, then of each text (its title taken out; an item
     that is its title alone is judged by its title only), is kept;
  4. the text cut to --max-tokens tokens of the base model's tokenizer (the course kept ~110);
  5. optional --balance: at most --balance-cap items per price band (20 bands, even in log price),
     drawn by seed, so cheap items don't swamp the set;
  6. a split by seed: --test and --val items, the rest train.
Output: train/val/test.jsonl ({"prompt", "completion": "64.00", "price": 64.3}), prepare.json (the
funnel and the settings), README.md (the data card), price_hist.png and token_hist.png.

One file a part: `rules` (the curation, rule by rule), `read` (the sources, streamed), `card`, `run`
(the pipeline and its command line).
"""

from .card import write_card
from .read import read_source
from ..data.catalog import catalog_text, render_value, scrub_part_numbers, squash
from .rules import (BANDS, Funnel, PrepareSettings, balance, curate, cut_to_tokens, make_item_prompt, catalog_price,
                    dedupe_prompts, keep_one_currency, read_price, split, to_row)
from .run import add_prepare_arguments, prepare, prepare_cli

__all__ = ["BANDS", "Funnel", "PrepareSettings", "add_prepare_arguments", "balance", "curate", "cut_to_tokens",
           "catalog_text", "make_item_prompt", "catalog_price", "dedupe_prompts", "keep_one_currency", "prepare", "prepare_cli", "read_price", "read_source", "render_value",
           "scrub_part_numbers", "split", "squash", "to_row", "write_card"]
