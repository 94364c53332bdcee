"""The model card (README.md) an exported folder carries, so that a pushed export says on the Hub what it
is and how to price with it. It names the base and the data as a pushed run's card does: no folder of
this machine."""

from __future__ import annotations

from pathlib import Path

import yaml

from ..config import hub_base_model, public_value
from ..data.rows import PRICE_TRAILER, QUESTION

HOW = {
    "merged-generate": 'transformers: `AutoModelForCausalLM.from_pretrained(REPO)`, the whole prompt, greedy, at most '
                       '8 new tokens; the completion is the price ("64.00").',
    "merged-regress": "transformers: `AutoModelForSequenceClassification.from_pretrained(REPO)`, one output, and "
                      "`price = expm1(center + scale * output)` with `center`, `scale` and `pooling` from "
                      "`regression_head.json`; where `pooling` is `mean`, the head reads the mean of the final hidden "
                      "states (`model.score(states.mean(dim=1))`), not the last token the model's own output reads.",
    "gguf-generate": "llama.cpp: `llama-cli -m FILE --temp 0 -n 8 -no-cnv -p \"$(cat prompt.txt)\"`; Ollama: "
                     "`ollama create price -f Modelfile`, then `ollama run price \"$(cat prompt.txt)\"`. The completion "
                     'is the price ("64.00").',
}


def write_export_card(out: Path, info: dict, cfg) -> None:
    """README.md in `out`: what the export is, its check figures, and how it prices."""
    gguf = info.get("format") == "gguf"
    front = {"base_model": hub_base_model(cfg.base_model), "library_name": None if gguf else "transformers",
             "tags": ["pricetune", "price-prediction", *(["gguf"] if gguf else [])]}
    front = yaml.safe_dump({k: v for k, v in front.items() if v is not None}, sort_keys=False)
    what = f"A GGUF file ({info['quant']}, `{info['file']}`)" if gguf else f"A merged transformers model ({info['dtype']})"
    how = HOW[f"{'gguf' if gguf else 'merged'}-{cfg.objective}"].replace("FILE", info.get("file", ""))
    check = info.get("check_transformers") if gguf else info.get("check")
    checked = (f"\n\nLoaded back as written, it gives {check['same_price']} of {check['items']} check prices as the "
               f"float32 merge did (largest difference ${check['max_abs_difference']:,.2f})." if check else "")
    card = f"""---
{front}---
# {info['run_name']}

{what} of the pricetune run `{info['run_name']}`: `{public_value(cfg.base_model)}` fine-tuned on \
`{public_value(cfg.dataset)}` to price a product from its description ({cfg.objective} objective), the \
adapter folded into the full-precision base.{checked}

## Pricing with it

pricetune: `pricetune predict --base-model REPO --no-adapter "Title: ..."` (`pricetune_export.json` says how).
Elsewhere, {how}

The model was trained on raw prompts, not a chat template. Send the whole prompt, cut to \
{cfg.max_length} tokens in its item text:

```text
{QUESTION}

Title: ...
Description: ...

{PRICE_TRAILER}
```
"""
    (out / "README.md").write_text(card, encoding="utf-8")
