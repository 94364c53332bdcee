"""The data card `pricetune prepare` writes beside the splits: README.md and the two histograms."""

from __future__ import annotations

from pathlib import Path

from .rules import to_row


def write_card(out: Path, record: dict, items: list[dict], splits: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    prices = [it["price"] for it in items]
    currency = record.get("currency") or "USD"
    unit = "$" if currency == "USD" else f"{currency} "
    in_currency = "" if currency == "USD" else " (the catalog's currency; the prompts keep the course's words, 'Price is $')"
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=100)
    ax.hist(prices, bins=50, color="#1f77b4")
    ax.set(xlabel=f"price ({currency})", ylabel="items", title=f"prices of the {len(items):,} items kept")
    fig.tight_layout()
    fig.savefig(out / "price_hist.png")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=100)
    ax.hist([it["tokens"] for it in items], bins=40, color="#2e9e44")
    ax.set(xlabel="tokens in the item text (after the cut)", ylabel="items", title="item length")
    fig.tight_layout()
    fig.savefig(out / "token_hist.png")
    plt.close(fig)

    f = record["funnel"]
    s = record["settings"]
    funnel_rows = [f"| rows read | {f['read']:,} |"]
    funnel_rows += [f"| dropped: {reason} | {n:,} |" for reason, n in f["dropped"].items()]
    funnel_rows += [f"| kept after curation | {f['kept_after_curation']:,} |"]
    if s["balance"]:
        funnel_rows += [f"| dropped by --balance | {f['dropped_by_balance']:,} |"]
    funnel_rows += [f"| kept: train / val / test | {f['splits']['train']:,} / {f['splits']['val']:,} / "
                    f"{f['splits']['test']:,} |"]
    samples = "\n\n".join("```text\n" + to_row(it)["prompt"] + to_row(it)["completion"] + "\n```"
                          for it in splits["train"][:3])
    settings = "\n".join(f"| {k} | {v} |" for k, v in s.items())
    card = f"""# Data card: {Path(s['source']).name}

Made by `pricetune prepare` from `{s['source']}`; train with `pricetune train --dataset {out}`.
Read from its columns: the price from `{record['columns_read']['price']}`, the text from
{', '.join(f"`{c}`" for c in record['columns_read']['text'])}.
Each row: `{{"prompt": ..., "completion": "64.00", "price": 64.3}}` (completion: the whole-dollar price).

## Funnel

| step | rows |
|---|---|
{chr(10).join(funnel_rows)}

## Prices and lengths

![prices](price_hist.png)

![tokens](token_hist.png)

Median price {unit}{sorted(prices)[len(prices) // 2]:,.2f}; range {unit}{min(prices):,.2f} - {unit}{max(prices):,.2f}{in_currency}.

## Samples (train)

{samples}

## Settings

| setting | value |
|---|---|
{settings}
"""
    (out / "README.md").write_text(card, encoding="utf-8")
