"""Price amazon-18k's val items as a catalog file gives them: the description alone (how predict --file priced a
title + description row before), the catalog text (now), and the val prompt itself (the reference).

    bash docs/results/amazon-18k-bases/maxlen-rule.sh     # makes runs/minilm-maxlen-192 (MiniLM on 3,376 train rows)
    .venv/bin/python docs/results/catalog-text/run.py runs/minilm-maxlen-192 docs/results/catalog-text/minilm-maxlen-192.json
"""
import gzip, glob, json, sys, statistics
from pricetune.data.rows import item_text_of
from pricetune.inference import Pricer

run = sys.argv[1]
rows = [json.loads(l) for l in gzip.open(glob.glob("pricetune/data/amazon-18k/val*")[0], "rt")]
catalog = []
for r in rows:
    body = r["prompt"].split("\n\n", 1)[1].rsplit("\n\nPrice is $", 1)[0]
    title, _, description = body.partition("\n")
    catalog.append({"title": title, "description": description.replace("\n", " ") or title})
pricer = Pricer.from_run(run)
truths = [r["price"] for r in rows]
out = {"run": run, "items": len(rows)}
for name, texts in (("prompt", [r["prompt"] for r in rows]),
                    ("description_alone", [c["description"] for c in catalog]),
                    ("catalog_text", [item_text_of(c) for c in catalog])):
    prices = pricer.price_items(texts, True)
    errors = [abs(p - t) for p, t in zip(prices, truths)]
    out[name] = {"mae": statistics.fmean(errors), "errors": errors}
    print(name, round(out[name]["mae"], 2), flush=True)
for name in ("description_alone", "catalog_text"):
    d = [a - b for a, b in zip(out[name]["errors"], out["prompt"]["errors"])]
    m, se = statistics.fmean(d), statistics.stdev(d) / len(d) ** 0.5
    out[f"{name}_vs_prompt"] = {"mean": m, "ci95": 1.96 * se}
d = [a - b for a, b in zip(out["catalog_text"]["errors"], out["description_alone"]["errors"])]
out["catalog_vs_description"] = {"mean": statistics.fmean(d), "ci95": 1.96 * statistics.stdev(d) / len(d) ** 0.5}
for k in ("prompt", "description_alone", "catalog_text"):
    out[k].pop("errors")
print(json.dumps(out, indent=1))
json.dump(out, open(sys.argv[2], "w"), indent=1)
