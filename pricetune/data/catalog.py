"""A raw catalog row's text, as `pricetune prepare` writes it into a prompt and as `predict --file` and
the API price a catalog's rows: one line per field the row has ("Title: ...\nBrand: ...\nDescription:
..."), values rendered (lists joined, dicts as "key: value" without the noisy keys), part numbers
scrubbed.

    from pricetune.data.catalog import catalog_text
    title, text = catalog_text({"title": "A kettle", "description": "1.7 l, steel", "price": 30})
"""

from __future__ import annotations

import html
import json
import math
import re
from html.parser import HTMLParser
from typing import Any

NOISY_DETAIL_KEYS = ("part number", "model number", "item model", "best sellers rank", "batteries",
                     "date first available", "asin", "upc", "manufacturer reference")
PART_NUMBER = re.compile(r"\b(?=[A-Z0-9-]*[A-Z])(?=[A-Z0-9-]*\d)[A-Z0-9][A-Z0-9-]{6,}\b")
WHITESPACE = re.compile(r"\s+")
HTML_TAG = re.compile(r"</?[a-zA-Z][a-zA-Z0-9]*(?:\s[^<>]*)?/?>")
HTML_ENTITY = re.compile(r"&(?:[a-zA-Z]+|#\d+|#x[0-9a-fA-F]+);")
# item line -> the column names it is read from, in order of preference: Amazon's, and those of the
# exports of Shopify ("Body (HTML)", "Vendor"), WooCommerce ("Short description") and Google Merchant feeds
FIELDS = {
    "Title": ("title", "name", "product_name"),
    "Category": ("category", "main_category", "product_category", "product_type", "categories",
                 "google_product_category"),
    "Brand": ("brand", "store", "manufacturer", "vendor"),
    "Description": ("description", "body", "short_description"),
    "Features": ("features",),
    "Details": ("details",),
}
# Every column a field is read from: a row holding any of them is a catalog row
CATALOG_COLUMNS = tuple(c for columns in FIELDS.values() for c in columns)


UNIT = re.compile(r"\s*[(\[]\s*([^)\]]*?)\s*[)\]]\s*$")  # a header's "(EUR)" or "[kg]"


def column_key(name: Any) -> str:
    """A column's name as the rules look it up: a spreadsheet's "Product Name", "list-price" or "Price
    (EUR)" is product_name, list_price or price."""
    return re.sub(r"[\s-]+", "_", UNIT.sub("", str(name)).strip().lower())


def column_unit(name: Any) -> str:
    """The unit a header names in brackets at its end ("EUR" for "Price (EUR)"); "" when none."""
    m = UNIT.search(str(name))
    return m.group(1) if m else ""


def catalog_columns(row: dict) -> list[str]:
    """The row's catalog columns that hold some text, as the row names them."""
    return [k for k, v in row.items() if column_key(k) in CATALOG_COLUMNS and render_value(v)]


def squash(text: str) -> str:
    return WHITESPACE.sub(" ", text).strip()


def scrub_part_numbers(text: str) -> str:
    """Remove tokens that look like part numbers (7+ characters of capitals and digits, both present)."""
    return squash(PART_NUMBER.sub("", text))


class _HtmlText(HTMLParser):
    """The text of an HTML fragment, a space where each tag was; scripts and styles left out."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self.hidden += 1
        self.parts.append(" ")

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self.hidden:
            self.hidden -= 1
        self.parts.append(" ")

    def handle_data(self, data):
        if not self.hidden:
            self.parts.append(data)


def html_text(text: str) -> str:
    """A description's text without its HTML markup ("<p>Steel &amp; oak</p>" is "Steel & oak"): a
    shop's export keeps its descriptions as HTML, whose tags cost tokens and tell nothing of the price."""
    if HTML_TAG.search(text):
        parser = _HtmlText()
        parser.feed(text)
        parser.close()
        return "".join(parser.parts)
    return html.unescape(text) if HTML_ENTITY.search(text) else text


def render_value(value: Any) -> str:
    """Lists joined, dicts as 'key: value' (noisy keys dropped), strings squashed and without HTML."""
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped[:1] in "[{" and stripped[-1:] in "]}":  # a list or dict stored as JSON text
            try:
                return render_value(json.loads(stripped))
            except json.JSONDecodeError:
                pass
        return squash(html_text(value))
    if isinstance(value, dict):
        parts = [f"{squash(str(k))}: {render_value(v)}" for k, v in value.items()
                 if not any(noise in str(k).lower() for noise in NOISY_DETAIL_KEYS) and render_value(v)]
        return "; ".join(parts)
    if isinstance(value, (list, tuple)):
        return " ".join(p for p in (render_value(v) for v in value) if p)
    return squash(str(value))


def catalog_text(row: dict, text_columns: list[str] | None = None) -> tuple[str, str]:
    """(title, the item's text lines) of a raw row: "Title: ...\nCategory: ...\nDescription: ...", part
    numbers scrubbed from each line; `text_columns` (prepare's --text-columns) name the lines instead."""
    lines = catalog_lines(row, text_columns)
    # the title (for de-duplication) is the line read from a column named like one, if any
    title = next((value for _, column, value in lines if column_key(column) in FIELDS["Title"]), "")
    return title, "\n".join(scrub_part_numbers(f"{name}: {value}") for name, _, value in lines)


def catalog_lines(row: dict, text_columns: list[str] | None = None) -> list[tuple[str, str, str]]:
    """(line name, the column it is read from as the row names it, its text) for each line of the item:
    one per field of FIELDS the row has (its first column with some text), or per --text-columns column."""
    headers = {column_key(k): k for k in row}
    choices = ([(c.replace("_", " ").capitalize(), (column_key(c),)) for c in text_columns] if text_columns
               else FIELDS.items())
    lines = []
    for name, columns in choices:
        for key in columns:
            value = render_value(row[headers[key]]) if key in headers else ""
            if value:
                lines.append((name, headers[key], value))
                break
    return lines
