"""`pricetune prepare`: each curation rule on hand-made rows, the funnel, determinism, and a prepared
folder that trains and evaluates."""

import csv
import json
import sys

import pytest

from pricetune.cli import main
from pricetune.errors import DataError
from pricetune.prepare import (
    Funnel,
    PrepareSettings,
    balance,
    curate,
    catalog_text,
    keep_one_currency,
    catalog_price,
    render_value,
    scrub_part_numbers,
    split,
)

LONG = "A sturdy thing that does what it says, made well and built to last for years of daily use. " * 2


def _rows(*rows):
    return [(f"row {i}", r) for i, r in enumerate(rows, start=1)]


def _settings(**kw):
    return PrepareSettings(source="x", out="y", **{"min_chars": 20, **kw})


def test_text_rules():
    assert scrub_part_numbers("Fits SM-G991B and A1B2C3D4 phones, 1080p, USB-C") == "Fits and phones, 1080p, USB-C"
    assert scrub_part_numbers("SAMSUNG Galaxy 2024 edition") == "SAMSUNG Galaxy 2024 edition"
    assert render_value(["fast", "  quiet\n", None]) == "fast quiet"
    details = {"Colour": "red", "Item model number": "X1", "Best Sellers Rank": "#3", "Batteries Required?": "No"}
    assert render_value(details) == "Colour: red"
    assert render_value('{"Weight": "2 kg", "Part Number": "P9"}') == "Weight: 2 kg"
    assert catalog_price("$1,299.99") == 1299.99 and catalog_price(12) == 12.0
    assert catalog_price("call us") is None and catalog_price(None) is None and catalog_price(float("nan")) is None
    # a decimal comma is not a thousands separator: "12,50" was read as 1250, a price 100 times too high
    assert catalog_price("12,50") == 12.5 and catalog_price("1.299,99") == 1299.99 and catalog_price("1,299") == 1299
    assert catalog_price("USD 89") == 89 and catalog_price("89 usd") == 89 and catalog_price("US$ 5.25") == 5.25
    assert catalog_price("-5") == -5 and catalog_price("-$5") == -5  # then dropped as out of range, not as text
    assert catalog_price("1,2,3") is None and catalog_price("12,5,0") is None and catalog_price("1.2.3") is None
    # a spreadsheet where the decimal mark is a comma writes its currency after the number, and groups
    # thousands by a (no-break) space; these were all dropped as "non-numeric price"
    assert catalog_price("129,00 €") == 129 and catalog_price("€12.50") == 12.5 and catalog_price("£7") == 7
    assert catalog_price("1 299,99 €") == catalog_price("1\u202f299,99\xa0€") == catalog_price("1'299.99 CHF") == 1299.99
    assert catalog_price("$12 EUR") is None and catalog_price("12 PCS") is None and catalog_price("12 50") is None
    # a shop's export keeps its descriptions as HTML: the text is read, the markup was kept (tokens on tags)
    assert render_value("<p>Steel &amp; oak</p><ul><li>1.7 l</li></ul><script>track()</script>") == "Steel & oak 1.7 l"
    assert render_value("R&D tested: 5 < 6 and 7>3") == "R&D tested: 5 < 6 and 7>3" and render_value("Caf&eacute;") == "Café"
    title, text = catalog_text({"Title": "A  kettle", "main_category": "Home", "store": "Acme",
                             "features": ["1.7 l", "steel"], "price": 30}, None)
    assert title == "A kettle"
    assert text == "Title: A kettle\nCategory: Home\nBrand: Acme\nFeatures: 1.7 l steel"


def test_curation_rules_and_funnel():
    rows = _rows(
        {"title": "Kettle", "description": LONG, "price": "29.99"},
        {"title": "No price", "description": LONG},
        {"title": "Free", "description": LONG, "price": ""},
        {"title": "Words", "description": LONG, "price": "cheap"},
        {"title": "Yacht", "description": LONG, "price": 5000},
        {"title": "Pin", "description": LONG, "price": 0.1},
        {"title": "Short", "description": "tiny", "price": 3},
        {"title": "Kettle", "description": LONG + " other", "price": 31},  # same title
        {"title": "Kettle 2", "description": LONG, "price": 31},  # same text as the first but title differs
        {"title": "Toaster", "description": LONG + " toast", "price": 45},
        "not a row",
    )
    funnel = Funnel()
    items = curate(rows, _settings(min_chars=40), funnel)
    assert [it["title"] for it in items] == ["Kettle", "Toaster"]
    assert funnel.read == 11
    assert funnel.dropped == {"no price column": 1, "missing price": 1, "non-numeric price": 1,
                              "price out of range": 2, "text too short": 1, "duplicate title": 1,
                              "duplicate text": 1, "unreadable row": 1}
    assert funnel.read == len(items) + sum(funnel.dropped.values())
    # the hint shows the first price that could not be read, where it was
    assert any("such as $1,299.99, 12,50, USD 89 or 129,00 €" in h and "'cheap'" in h for h in funnel.hints())


def test_the_hints_name_the_columns_the_rows_have():
    funnel = Funnel()
    # a mistyped --text-columns once left only "empty text" and a generic hint
    assert curate(_rows({"Title": "Kettle", "Notes": LONG, "price": 3}), _settings(text_columns=["nope"]), funnel) == []
    (hint,) = funnel.hints()
    assert hint.startswith("--text-columns") and "(the first row's columns: Title, Notes, price)" in hint


def test_duplicate_text_is_dropped_even_with_another_title():
    rows = _rows({"name": "A", "notes": LONG, "cost": 5}, {"name": "B", "notes": LONG, "cost": 6})
    funnel = Funnel()
    items = curate(rows, _settings(text_columns=["name", "notes"], price_column="cost"), funnel)
    assert len(items) == 1 and funnel.dropped == {"duplicate text": 1}


def test_items_that_are_their_title_alone_are_not_duplicates_of_each_other():
    """Left without the title, such items have no text at all: only a repeated title makes them
    duplicates (the duplicate-text rule once dropped all but the first)."""
    rows = _rows(*({"name": f"Widget {i} deluxe model, brushed steel", "cost": 5 + i} for i in range(3)),
                 {"name": "Widget 0 deluxe model, brushed steel", "cost": 9})
    funnel = Funnel()
    items = curate(rows, _settings(min_chars=20), funnel)
    assert len(items) == 3 and funnel.dropped == {"duplicate title": 1}
    items = curate(rows, _settings(min_chars=20, text_columns=["name"], price_column="cost"), Funnel())
    assert len(items) == 3


def test_balance_and_split_are_deterministic():
    items = [{"title": str(i), "text": str(i), "price": 5.0 if i < 80 else 500.0} for i in range(100)]
    kept = balance(items, cap=30, seed=1, lo=0.5, hi=999.49)
    assert len(kept) == 50  # 30 of the 80 cheap ones, all 20 dear ones
    assert kept == balance(items, cap=30, seed=1, lo=0.5, hi=999.49)
    a, b = split(kept, 10, 10, seed=3), split(kept, 10, 10, seed=3)
    assert a == b and [len(a[k]) for k in ("train", "val", "test")] == [30, 10, 10]
    with pytest.raises(DataError, match="too few"):
        split(kept, 30, 30, seed=3)


def _catalog(path, n=60):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sku", "product", "colour", "notes", "cost"])
        for i in range(n):
            w.writerow([f"SKU{i:07d}", f"Widget model {i}", ["red", "blue", "green"][i % 3],
                        f"Item number {i}: " + LONG, f"${10 + i}.50" if i % 17 else "n/a"])
    return path


def test_prepare_cli_with_arbitrary_columns_is_byte_for_byte_repeatable(tmp_path, capsys):
    src = _catalog(tmp_path / "export.csv")
    args = ["prepare", str(src), "--price-column", "cost", "--text-columns", "product,colour,notes",
            "--val", "8", "--test", "8", "--min-chars", "50", "--max-tokens", "40"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    assert "read: the price from 'cost', the text from 'product', 'colour', 'notes'" in capsys.readouterr().out
    assert main(args + ["--out", str(tmp_path / "b")]) == 0
    for name in ("train.jsonl", "val.jsonl", "test.jsonl", "prepare.json"):
        a, b = (tmp_path / "a" / name).read_bytes(), (tmp_path / "b" / name).read_bytes()
        assert a == b.replace(b"/b", b"/a") if name == "prepare.json" else a == b, name
    record = json.loads((tmp_path / "a" / "prepare.json").read_text())
    f = record["funnel"]
    assert f["read"] == 60 and f["dropped"] == {"non-numeric price": 4}
    assert f["kept"] == sum(f["splits"].values()) == 56
    row = json.loads((tmp_path / "a" / "train.jsonl").read_text().splitlines()[0])
    assert row["prompt"].startswith("What does this cost to the nearest dollar?\n\nProduct: Widget model")
    assert row["prompt"].endswith("\n\nPrice is $") and "Colour:" in row["prompt"]
    assert row["completion"] == f"{int(row['price'] + 0.5)}.00"
    card = (tmp_path / "a" / "README.md").read_text()
    assert "non-numeric price | 4" in card and (tmp_path / "a" / "price_hist.png").stat().st_size > 1000
    assert main(args + ["--out", str(tmp_path / "a")]) == 2  # never overwritten


def test_a_split_asked_to_be_empty_is_left_out_and_training_is_told_so(tmp_path, capsys):
    from pricetune.data import load_splits

    args = ["prepare", str(_catalog(tmp_path / "export.csv")), "--price-column", "cost", "--text-columns",
            "product,notes", "--val", "0", "--test", "0", "--min-chars", "50", "--out", str(tmp_path / "d")]
    assert main(args) == 0
    assert "train with: pricetune train --dataset " + str(tmp_path / "d") + " --val-size 0" in capsys.readouterr().out
    # the empty val.jsonl and test.jsonl it wrote made that very training stop ("no usable rows")
    assert not (tmp_path / "d" / "val.jsonl").exists() and not (tmp_path / "d" / "test.jsonl").exists()
    splits, _ = load_splits(str(tmp_path / "d"), val_size=0)
    assert len(splits["train"]) == 56 and "val" not in splits


def test_too_few_items_left_says_where_the_rest_went(tmp_path, capsys):
    src = _catalog(tmp_path / "export.csv")  # 60 rows, 4 without a price
    args = ["prepare", str(src), "--price-column", "cost", "--text-columns", "product,notes", "--min-chars", "50"]
    assert main(args + ["--val", "50", "--test", "10", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "only 56 item(s) survived curation (60 rows read; dropped: 4 non-numeric price)" in err
    assert "too few for --test 10 and --val 50" in err and not (tmp_path / "o").exists()


def test_unreadable_sources_stop_with_a_message(tmp_path, capsys):
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"not parquet at all")
    assert main(["prepare", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "broken.parquet" in err and "Traceback" not in err
    assert main(["prepare", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err
    src = _catalog(tmp_path / "c.csv", 10)
    assert main(["prepare", str(src), "--price-column", "nope", "--out", str(tmp_path / "o")]) == 2
    assert "no column 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_prepared_folder_trains_and_evaluates(tiny_model_dir, tmp_path, capsys):
    from .conftest import tiny_overrides, train_cli_args

    src = _catalog(tmp_path / "export.csv")
    data = tmp_path / "data"
    assert main(["prepare", str(src), "--price-column", "cost", "--text-columns", "product,colour,notes",
                 "--val", "8", "--test", "8", "--min-chars", "50", "--max-tokens", "40", "--out", str(data),
                 "--base-model", str(tiny_model_dir)]) == 0
    out = tmp_path / "run"
    args = train_cli_args(tiny_overrides(tiny_model_dir, data, out, quantization="none"))
    assert main(args) == 0
    assert main(["evaluate", str(out), "--limit", "8", "--output-dir", str(tmp_path / "eval")]) == 0
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["n"] == 8


def test_a_spreadsheet_export_with_semicolons_and_decimal_commas_or_tabs_reads_as_a_comma_csv(tmp_path):
    from pricetune.prepare.read import read_source

    rows = [["title", "description", "price"], ["Lamp", "A desk lamp, LED; dimmable", "12.50"],
            ["Rug", "A wool rug", "1,299.00"]]
    european = [r[:2] + [r[2].replace(",", "").replace(".", ",")] for r in rows[1:]]  # 12,50 and 1299,00
    for name, delimiter, body in (("comma.csv", ",", rows[1:]), ("semicolon.csv", ";", european),
                                  ("tabs.tsv", "\t", rows[1:])):
        with open(tmp_path / name, "w", newline="") as f:
            csv.writer(f, delimiter=delimiter).writerows([rows[0], *body])
    read = {name: [(r["title"], r["description"], catalog_price(r["price"])) for _, r in read_source(str(tmp_path / name))]
            for name in ("comma.csv", "semicolon.csv", "tabs.tsv")}
    # the semicolon export was one column named "title;description;price", so every row lacked a price
    assert read["semicolon.csv"] == read["tabs.tsv"] == read["comma.csv"]
    assert read["comma.csv"] == [("Lamp", "A desk lamp, LED; dimmable", 12.5), ("Rug", "A wool rug", 1299.0)]


def test_a_catalog_priced_in_two_currencies_keeps_the_one_most_prices_name(tmp_path, capsys):
    with open(tmp_path / "mixed.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter=";")
        w.writerow(["title", "description", "price"])
        for i in range(40):  # 30 in euros, 10 in dollars, then 10 bare numbers (no currency: kept)
            price = f"{10 + i},50 €" if i < 30 else f"${10 + i}.50"
            w.writerow([f"Item {i}", f"{LONG} number {i}", price])
        for i in range(40, 50):
            w.writerow([f"Item {i}", f"{LONG} number {i}", f"{10 + i},50"])
    out = tmp_path / "o"
    assert main(["prepare", str(tmp_path / "mixed.csv"), "--out", str(out), "--val", "5", "--test", "5",
                 "--min-chars", "50"]) == 0
    said = capsys.readouterr().out
    assert "dropped 10: another currency (prices kept in EUR)" in said and "prices in EUR, as the catalog" in said
    record = json.loads((out / "prepare.json").read_text())
    assert record["currency"] == "EUR" and record["funnel"]["kept"] == 40
    assert record["first_drop_of_each_reason"]["another currency"].endswith("mixed.csv:32 ('$40.50')")
    assert "Median price EUR " in (out / "README.md").read_text()
    prices = sorted(json.loads(line)["price"] for name in ("train", "val", "test")
                    for line in (out / f"{name}.jsonl").read_text().splitlines())
    assert prices == [10.5 + i for i in range(30)] + [50.5 + i for i in range(10)]


def test_an_xlsx_catalog_prepares_as_its_csv_export_does(tmp_path, capsys, monkeypatch):
    openpyxl = pytest.importorskip("openpyxl", reason="the excel extra: pip install 'pricetune[excel]'")
    src = _catalog(tmp_path / "export.csv")
    book = openpyxl.Workbook()
    sheet = book.active
    # a sheet holds its prices as numbers, and may have a blank row and a note in a column without a header;
    # a workbook may split its catalog over sheets of one header, and keep notes in a sheet of its own
    more, notes = book.create_sheet("More"), book.create_sheet("Notes")
    notes.append(["Remarks"])
    notes.append(["prices checked in May"])
    rows = list(csv.reader(src.open(newline="")))
    for n, row in enumerate(rows):
        (sheet if n <= 30 else more).append([float(v[1:]) if v.startswith("$") else v for v in row])
        if n == 5:
            sheet.append([])
    more.insert_rows(1)
    for column, name in enumerate(rows[0], start=1):
        more.cell(row=1, column=column, value=name)
    sheet.cell(row=2, column=7, value="stray note")
    book.save(tmp_path / "export.xlsx")
    args = ["prepare", "--price-column", "cost", "--text-columns", "product,colour,notes", "--val", "8", "--test", "8",
            "--min-chars", "50", "--max-tokens", "40"]
    assert main([*args, str(src), "--out", str(tmp_path / "from-csv")]) == 0
    assert main([*args, str(tmp_path / "export.xlsx"), "--out", str(tmp_path / "from-xlsx")]) == 0
    for name in ("train.jsonl", "val.jsonl", "test.jsonl"):
        assert (tmp_path / "from-csv" / name).read_text() == (tmp_path / "from-xlsx" / name).read_text(), name
    assert "sheet 'Notes' not read: its header is not the first sheet's" in capsys.readouterr().err
    # without openpyxl: one line naming the extra, before anything is written
    monkeypatch.setitem(sys.modules, "openpyxl", None)
    capsys.readouterr()
    assert main([*args, str(tmp_path / "export.xlsx"), "--out", str(tmp_path / "o")]) == 2
    assert "pip install 'pricetune[excel]'" in capsys.readouterr().err and not (tmp_path / "o").exists()
    # and predict refuses to write one before it prices anything
    assert main(["predict", "--run", str(tmp_path / "no-run"), "--file", str(src), "--out", str(tmp_path / "p.xlsx")]) == 2
    assert "pip install 'pricetune[excel]'" in capsys.readouterr().err
    monkeypatch.undo()
    (tmp_path / "broken.xlsx").write_bytes(b"PK not a workbook")
    assert main([*args, str(tmp_path / "broken.xlsx"), "--out", str(tmp_path / "o")]) == 2
    assert "broken.xlsx: not a readable .xlsx workbook" in capsys.readouterr().err


def test_excel_s_windows_and_unicode_csv_encodings_read_with_a_note(tmp_path, capsys):
    from pricetune.prepare.read import read_source

    text = "title;description;price\nCafé crème;Une tasse à café;12,50 €\nThé;Boîte de thé vert;4,90 €\n"
    (tmp_path / "windows.csv").write_bytes(text.encode("cp1252"))  # Excel's plain "CSV" on Windows
    (tmp_path / "unicode.csv").write_bytes(text.encode("utf-16"))  # with its byte-order mark
    (tmp_path / "utf8.csv").write_text(text, encoding="utf-8")
    # the Windows file was refused whole ("not UTF-8 text ... re-save it as UTF-8")
    read = {name: [(r["title"], r["description"], catalog_price(r["price"])) for _, r in read_source(str(tmp_path / name))]
            for name in ("windows.csv", "unicode.csv", "utf8.csv")}
    assert read["windows.csv"] == read["unicode.csv"] == read["utf8.csv"]
    assert read["utf8.csv"] == [("Café crème", "Une tasse à café", 12.5), ("Thé", "Boîte de thé vert", 4.9)]
    err = capsys.readouterr().err
    assert "windows.csv is not UTF-8" in err and "read as Windows-1252" in err and "unicode.csv" not in err
    (tmp_path / "neither.csv").write_bytes(b"title,price\nx\x81y,3\n")  # a byte Windows-1252 does not have
    with pytest.raises(DataError, match="neither.csv: not UTF-8 text"):
        list(read_source(str(tmp_path / "neither.csv")))


@pytest.mark.parametrize("row, text, price, columns", [
    ({"Handle": "kettle", "Title": "Kettle", "Body (HTML)": "<p>A <b>steel</b> kettle</p>", "Vendor": "Acme",
      "Product Category": "Kitchen", "Variant Price": "29.99", "Variant Compare At Price": "35.00"},
     "Title: Kettle\nCategory: Kitchen\nBrand: Acme\nDescription: A steel kettle", 29.99,
     ["Variant Price", "Title", "Product Category", "Vendor", "Body (HTML)"]),  # Shopify
    ({"ID": 7, "Name": "Kettle", "Short description": "<p>Steel</p>", "Description": "<p>A steel kettle</p>",
      "Regular price": "29.99", "Sale price": "", "Categories": "Home > Kitchen"},
     "Title: Kettle\nCategory: Home > Kitchen\nDescription: A steel kettle", 29.99,
     ["Regular price", "Name", "Categories", "Description"]),  # WooCommerce
    ({"id": "k1", "title": "Kettle", "description": "A steel kettle", "price": "29.99 USD", "brand": "Acme",
      "google_product_category": "Home & Garden > Kitchen"},
     "Title: Kettle\nCategory: Home & Garden > Kitchen\nBrand: Acme\nDescription: A steel kettle", 29.99,
     ["price", "title", "google_product_category", "brand", "description"]),  # Google Merchant
])
def test_a_shop_s_product_export_is_read_by_its_own_column_names(row, text, price, columns):
    # every row of a Shopify or WooCommerce export was dropped as "no price column", its description
    # (Body (HTML)) unread and its markup kept where it was read
    items = curate(_rows(row), _settings(min_chars=10), funnel := Funnel())
    assert not funnel.dropped and items[0]["text"] == text and items[0]["price"] == price
    # and which columns those were is said (prepare's closing lines, prepare.json, the data card)
    assert funnel.read_from == {"price": columns[0], "text": columns[1:]}


def test_a_spreadsheet_s_headers_with_spaces_and_capitals_name_the_columns_prepare_knows():
    # "List Price" and "Product Name" were no columns prepare knew: every row was dropped as "no price column"
    row = {"Product Name": "Kettle", "Main Category": "Home", "List Price": "$29.99", "Description": LONG}
    funnel = Funnel()
    items = curate(_rows(row), _settings(), funnel)
    assert not funnel.dropped and items[0]["price"] == 29.99
    assert items[0]["text"].startswith("Title: Kettle\nCategory: Home\nDescription: A sturdy thing")
    assert curate(_rows(row), _settings(price_column="list-price"), Funnel())[0]["price"] == 29.99
    # a unit in brackets names the column all the same, and a currency there is the prices' currency
    row = {"Title (EN)": "Kettle", "Price (EUR)": "12,50", "Description": LONG}
    items = curate(_rows(row), _settings(), funnel := Funnel())
    assert not funnel.dropped and items[0]["price"] == 12.5 and items[0]["text"].startswith("Title: Kettle\n")
    assert keep_one_currency(items, funnel) == items and funnel.currency == "EUR"
