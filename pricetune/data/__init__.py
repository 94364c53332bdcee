"""Datasets of priced products: loading, validation, the embedded demo data, and tokenization.

    from pricetune.data import load_splits
    splits = load_splits("amazon-18k", val_size=255)   # train / val / test
    splits = load_splits("demo", val_size=100)                          # embedded diamonds

Sources: `demo`; a local directory (a `datasets` save, or train/val/test files in jsonl, json,
csv, tsv, parquet or xlsx); a single jsonl/csv/parquet file (split 80/10/10 by a fixed shuffle); a Hub dataset
id. Every row needs a non-empty text `prompt` and a `completion` that parses as a price; bad rows
stop the load with file and line, or are skipped and counted with `on_bad_rows="skip"`.

One file a part: `rows` (the format, validation), `files` (the file readers and writers), `catalog` (a raw catalog row's text),
`demo` (the diamonds), `sources` (loading splits), `encode` (tokenization).
"""

from .demo import demo_rows, diamond_prompt, diamonds_csv
from .encode import (encode_example, encode_examples, encode_prompt, encode_prompts, in_length_order, is_right_padded,
                     map_batched, tokenize_rows)
from .files import FILE_SUFFIXES, BadRows, iter_jsonl
from .rows import (COMPLETION_RESERVE, MAX_PRICE, MAX_PRICE_DIGITS, PRICE_TRAILER, QUESTION, SPLITS, TRAILER,
                   completion_price, format_completion, make_prompt, read_rows)
from .sources import hub_offline, load_rows, load_splits, looks_local, missing_here, take_train, train_copies

__all__ = ["COMPLETION_RESERVE", "FILE_SUFFIXES", "MAX_PRICE", "MAX_PRICE_DIGITS", "PRICE_TRAILER", "QUESTION", "SPLITS",
           "TRAILER", "BadRows", "completion_price", "demo_rows", "diamond_prompt", "diamonds_csv", "encode_example",
           "encode_examples", "encode_prompt", "encode_prompts", "format_completion", "hub_offline", "in_length_order",
           "is_right_padded", "iter_jsonl", "load_rows", "load_splits", "looks_local", "make_prompt", "map_batched",
           "missing_here", "read_rows", "take_train", "tokenize_rows", "train_copies"]
