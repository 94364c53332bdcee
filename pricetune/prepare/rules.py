"""The curation rules of `pricetune prepare`, one function each, pure where they can be (tested one by
one in tests/test_prepare.py): price, text, duplicates (`curate`), the token cut, the balance, the split."""

from __future__ import annotations

import hashlib
import math
import random
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

from ..data import QUESTION, TRAILER, format_completion
from ..data.catalog import catalog_lines, catalog_text, column_key, column_unit, squash
from ..data.rows import POINT_DECIMAL
from ..errors import DataError

LABELS = re.compile(r"^[^:\n]*:", re.M)  # each text line's "Name:"
# in order of preference: Amazon's, then Shopify's, WooCommerce's and a spreadsheet's names
PRICE_NAMES = ("price", "list_price", "variant_price", "regular_price", "unit_price", "retail_price", "sale_price", "cost")
BANDS = 20


@dataclass
class PrepareSettings:
    source: str
    out: str
    price_column: str | None = None
    text_columns: list[str] | None = None
    seed: int = 42
    val: int = 500
    test: int = 500
    min_price: float = 0.5
    max_price: float = 999.49
    min_chars: int = 300
    max_tokens: int = 110
    balance: bool = False
    balance_cap: int = 1000
    base_model: str = "smollm2-135m"
    limit: int | None = None
    hub_config: str | None = None
    hub_split: str = "train"


@dataclass
class Funnel:
    read: int = 0
    dropped: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)  # reason -> first location
    extremes: dict = field(default_factory=dict)  # reason -> (least, most) of the measured value
    columns: list = field(default_factory=list)  # the first row's, for the hints
    currency: str | None = None  # the prices' currency, where any names one
    read_from: dict = field(default_factory=dict)  # the columns the first kept item's price and text came from

    def drop(self, reason: str, where: str, value: float | None = None) -> None:
        self.dropped[reason] += 1
        self.examples.setdefault(reason, where)
        if value is not None:
            lo, hi = self.extremes.get(reason, (value, value))
            self.extremes[reason] = (min(lo, value), max(hi, value))

    def summary(self) -> str:
        """What became of the rows read, for an error: "1,500 rows read; dropped: 1,469 duplicate text"."""
        dropped = ", ".join(f"{n:,} {reason}" for reason, n in self.dropped.most_common())
        return f"{self.read:,} rows read; dropped: {dropped or 'none'}"

    def hint_lines(self) -> str:
        """`hints`, each on a line of its own, to end an error with."""
        return "".join(f"\n  {h}" for h in self.hints())

    def hints(self) -> list[str]:
        """For each reason rows were dropped, the option that keeps them, with a value that would."""
        out, seen = [], f" (the first row's columns: {', '.join(self.columns)[:200]})" if self.columns else ""
        if "text too short" in self.extremes:
            shortest = self.extremes["text too short"][0]
            out.append(f"--min-chars {int(shortest)} keeps every item dropped as too short (the shortest text "
                       f"has {int(shortest)} characters)")
        if "price out of range" in self.extremes:
            lo, hi = self.extremes["price out of range"]
            out.append(f"--min-price / --max-price set the range kept (dropped prices ran from {lo:g} to {hi:g})")
        if self.dropped.get("non-numeric price"):
            out.append("a price is read from a number or from text such as $1,299.99, 12,50, USD 89 or 129,00 €; the first "
                       f"price that was none of these: {self.examples['non-numeric price']}")
        if self.dropped.get("another currency"):
            out.append(f"the prices kept are in {self.currency}, the currency most of them name; the first in another: "
                       f"{self.examples['another currency']}: convert them to {self.currency}, or prepare each "
                       "currency's items on their own")
        if self.dropped.get("no price column"):
            out.append(f"--price-column NAME names the price column (looked for: {', '.join(PRICE_NAMES)}){seen}")
        if self.dropped.get("empty text"):
            out.append(f"--text-columns a,b,c names the columns that make the item text{seen}")
        return out


# ------------------------------------------------------------------------------------------------
# Pure text rules (tested one by one)


# The currencies a text price may name, before or after its number, by the code they stand for: only to
# tell a catalog whose prices mix currencies ("$" and "USD" are one currency, "$" and "€" are two)
CURRENCIES = {"$": "USD", "us$": "USD", "usd": "USD", "€": "EUR", "eur": "EUR", "£": "GBP", "gbp": "GBP",
              "¥": "JPY", "jpy": "JPY", "₹": "INR", "inr": "INR", "c$": "CAD", "cad": "CAD", "a$": "AUD",
              "aud": "AUD", "chf": "CHF"}
_MARK = "|".join(sorted(map(re.escape, CURRENCIES), key=len, reverse=True))
# Text prices: "$1,299.99", "USD 89", "129,00 €", "1 299,99 €", and a decimal comma ("12,50", "1.299,99"):
# a comma followed by one or two digits is never a thousands separator, so "12,50" is not read as 1250
PRICE_TEXT = re.compile(rf"\s*(-?)\s*({_MARK})?\s*(-?)\s*(\d(?:[\d.,' \u00a0\u202f]*\d)?)\s*({_MARK})?\s*", re.I)
COMMA_DECIMAL = re.compile(r"(?:\d{1,3}(?:\.\d{3})+|\d+),\d{1,2}")
# thousands grouped by a space (a no-break one, as spreadsheets write them) or an apostrophe (Swiss)
SPACE_GROUPS = re.compile(r"\d{1,3}(?:[' \u00a0\u202f]\d{3})+(?:[.,]\d{1,2})?")


def read_price(value: Any) -> tuple[float, str | None] | None:
    """A catalog price and the currency its text names ("EUR" for "129,00 €"; None for a bare number);
    None when the value is no price."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return (float(value), None) if math.isfinite(value) else None
    m = PRICE_TEXT.fullmatch(str(value))
    if m is None or (m.group(1) and m.group(3)):
        return None
    before, after = (CURRENCIES[g.lower()] if g else None for g in (m.group(2), m.group(5)))
    if before and after and before != after:
        return None
    sign, number = (-1 if m.group(1) or m.group(3) else 1), m.group(4)
    if SPACE_GROUPS.fullmatch(number):
        number = re.sub(r"[' \u00a0\u202f]", "", number).replace(",", ".")
    if POINT_DECIMAL.fullmatch(number):
        return sign * float(number.replace(",", "")), before or after
    if COMMA_DECIMAL.fullmatch(number):
        return sign * float(number.replace(".", "").replace(",", ".")), before or after
    return None


def catalog_price(value: Any) -> float | None:
    """A catalog price: a number, or text like "$1,299.99", "12,50" or "129,00 €"; None when there is none."""
    read = read_price(value)
    return read[0] if read else None


def make_item_prompt(text: str) -> str:
    return f"{QUESTION}\n\n{text}{TRAILER}"


# ------------------------------------------------------------------------------------------------
# The pipeline's steps, rule by rule


def curate(rows: Iterable[tuple[str, Any]], s: PrepareSettings, funnel: Funnel) -> list[dict]:
    """Rules 1-3: price, text, duplicates. Returns {"title", "text", "price"} items."""
    seen_titles: set[bytes] = set()
    seen_texts: set[bytes] = set()
    items = []
    price_names = (column_key(s.price_column),) if s.price_column else PRICE_NAMES
    for where, row in rows:
        funnel.read += 1
        if not isinstance(row, dict):
            funnel.drop("unreadable row", where)
            continue
        funnel.columns = funnel.columns or list(map(str, row))
        headers = {column_key(k): k for k in row}  # "price" -> "Price (EUR)"
        lowered = {key: row[k] for key, k in headers.items()}
        name = next((p for p in price_names if p in lowered), None)
        if name is None:
            if s.price_column:
                raise DataError(f"{where}: no column {s.price_column!r} (columns: {', '.join(map(str, row))[:300]})")
            funnel.drop("no price column", where)
            continue
        raw = lowered[name]
        if raw is None or (isinstance(raw, str) and not raw.strip()) or (isinstance(raw, float) and math.isnan(raw)):
            funnel.drop("missing price", where)
            continue
        read = read_price(raw)
        if read is None:
            funnel.drop("non-numeric price", f"{where} ({str(raw)[:40]!r})")
            continue
        price, currency = read
        currency = currency or CURRENCIES.get(column_unit(headers[name]).lower())  # a header's "Price (EUR)"
        if not s.min_price <= price <= s.max_price:
            funnel.drop("price out of range", where, price)
            continue
        title, text = catalog_text(row, s.text_columns)
        if not text.strip():
            funnel.drop("empty text", where)
            continue
        if len(text) < s.min_chars:
            funnel.drop("text too short", where, len(text))
            continue
        text = text[: s.max_tokens * 7]  # a character ceiling before tokenizing, as the course does
        t_key = hashlib.blake2b(squash(title).lower().encode(), digest_size=16).digest()
        # the same text under another title is the same product listed twice; an item that is its title
        # alone has no such text (its lines' labels are not text), and only its title can repeat
        rest = text.replace(title, "", 1)
        x_key = hashlib.blake2b(rest.lower().encode(), digest_size=16).digest()
        if title and t_key in seen_titles:
            funnel.drop("duplicate title", where)
            continue
        if LABELS.sub("", rest).strip() and x_key in seen_texts:
            funnel.drop("duplicate text", where)
            continue
        seen_titles.add(t_key)
        seen_texts.add(x_key)
        if not items:  # what the first item was read from, for the user to check against their file
            funnel.read_from = {"price": headers[name], "text": [column for _, column, _ in catalog_lines(row, s.text_columns)]}
        items.append({"title": title, "text": text, "price": price, "where": where, "currency": currency,
                      "raw_price": raw})
        if s.limit and len(items) >= s.limit:
            break
    return items


def keep_one_currency(items: list[dict], funnel: Funnel) -> list[dict]:
    """The items priced in the catalog's main currency (or in none): one model learns one currency's
    prices. The others are dropped as "another currency"."""
    named = Counter(it["currency"] for it in items if it["currency"])
    if not named:
        return items
    funnel.currency = named.most_common(1)[0][0]
    kept = []
    for it in items:
        if it["currency"] in (None, funnel.currency):
            kept.append(it)
        else:
            funnel.drop("another currency", f"{it['where']} ({str(it['raw_price'])[:40]!r})")
    return kept


def cut_to_tokens(items: list[dict], tokenizer, max_tokens: int, batch: int = 1000, progress: bool = True) -> list[int]:
    """Rule 4, in place: each text cut to `max_tokens` tokens (at a token boundary). Returns the
    token counts after the cut."""
    from tqdm.auto import tqdm

    counts = []
    bar = tqdm(total=len(items), desc="tokenizing", unit="item", file=sys.stderr, disable=not progress)
    for start in range(0, len(items), batch):
        chunk = items[start:start + batch]
        encoded = tokenizer([it["text"] for it in chunk], add_special_tokens=False)["input_ids"]
        for it, ids in zip(chunk, encoded):
            if len(ids) > max_tokens:
                it["text"] = tokenizer.decode(ids[:max_tokens], skip_special_tokens=True).strip()
            counts.append(min(len(ids), max_tokens))
        bar.update(len(chunk))
    bar.close()
    return counts


def dedupe_prompts(items: list[dict], funnel: Funnel) -> list[dict]:
    """Rule 4b: two items the token cut made identical (they differed only past the cut) are one
    item, so the same prompt can never land in two splits."""
    seen: set[bytes] = set()
    kept = []
    for it in items:
        key = hashlib.blake2b(it["text"].lower().encode(), digest_size=16).digest()
        if key in seen:
            funnel.drop("duplicate after the token cut", it.get("where", "?"))
            continue
        seen.add(key)
        kept.append(it)
    return kept


def balance(items: list[dict], cap: int, seed: int, lo: float, hi: float) -> list[dict]:
    """Rule 5: at most `cap` items in each of BANDS price bands, even in log price, drawn by seed."""
    rng = random.Random(seed)
    span = math.log(hi) - math.log(lo)
    bands: dict[int, list[dict]] = {}
    for it in items:
        b = min(BANDS - 1, int((math.log(it["price"]) - math.log(lo)) / span * BANDS))
        bands.setdefault(b, []).append(it)
    kept = []
    for b in sorted(bands):
        group = bands[b]
        kept += group if len(group) <= cap else rng.sample(group, cap)
    return kept


def split(items: list[dict], val: int, test: int, seed: int, funnel: Funnel | None = None) -> dict[str, list[dict]]:
    """Rule 6: a shuffle by seed; test first, then val, the rest train. `funnel`: what became of the
    other rows, for the error when too few are left."""
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    shuffled = [items[i] for i in order]
    if len(shuffled) < val + test + 1:
        why, hints = (f" ({funnel.summary()})", funnel.hint_lines()) if funnel else ("", "")
        raise DataError(f"only {len(shuffled):,} item(s) survived curation{why}: too few for --test {test} and "
                        f"--val {val} plus a train split (lower them, or loosen --min-chars / the price range){hints}")
    return {"test": shuffled[:test], "val": shuffled[test:test + val], "train": shuffled[test + val:]}


def to_row(item: dict) -> dict:
    return {"prompt": make_item_prompt(item["text"]), "completion": format_completion(item["price"]),
            "price": item["price"]}
