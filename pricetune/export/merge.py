"""Merge a run's LoRA adapter into its base model: one standalone transformers model folder.

    pricetune export runs/price-...-demo --out merged/            # bf16 safetensors + tokenizer
    pricetune export runs/price-...-demo --out merged/ --dtype fp32

    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained("merged/")     # no PEFT, no pricetune needed

The base is loaded unquantized in float32 (folding the adapter into 4-bit weights would round most of
it away), the adapter applied and folded in with PEFT's `merge_and_unload`, and the merged model
checked against base + adapter on a price prompt before anything is written: the next-token logits
must agree. Only then is it cast to `--dtype` and saved with `save_pretrained`; `pricetune_export.json`
is written last, and a failed export removes the folder it created, so no half-written model is left.

A regress run exports as a plain sequence-classification folder (`AutoModelForSequenceClassification`,
one label) with `regression_head.json` beside it: price = expm1(center + scale * output). Its
`pooling` says where `output` comes from: `last` is the folder's own `logits`; `mean` is its `score`
layer applied to the mean of the final hidden states over the prompt's tokens (pricetune's `Pricer`
does this; a plain transformers user must too; `pricetune_export.json` repeats it).

After writing, the folder is loaded back as a user would load it, in the dtype it was written in, and
its prices on the first `--check` val prompts are compared with the float32 merge's; the agreement
(same price, largest difference) is recorded in `pricetune_export.json`.

A run trained on a 4-bit base (QLoRA) exports as the full-precision base plus the adapter; that is the
standard way to ship a QLoRA model, and its prices can differ slightly from the quantized run's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from ..config import EXPORT_INFO
from ..errors import PricetuneError
from ..modeling import DTYPES
from ..options import refuse_filled_folder
from .card import write_export_card

PROBE = "Title: 1.01 carat Ideal cut round diamond\nDescription: colour G, clarity VS1"


def _prices(model, tokenizer, prompts: list[str], cfg, scale) -> list[float | None]:
    """Prices as the run would give them: greedy text for generate, the head for regress."""
    if cfg.objective == "regress":
        from ..regress import regress_prices

        return [p for _, p in regress_prices(model, tokenizer, prompts, scale, cfg.max_length, batch_size=8)]
    from ..inference import generate_prices

    tokenizer.padding_side = "left"
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return [p for _, p in generate_prices(model, tokenizer, prompts, cfg.max_length, batch_size=8)]


def check_prompts(cfg, n: int) -> list[str]:
    """The first n prompts of the run's val split (else test, else the probe), to compare prices on."""
    from ..data import load_rows

    try:
        splits, _ = load_rows(cfg.dataset, "skip")
    except PricetuneError:
        return [PROBE]
    rows = splits.get("val") or splits.get("test") or []
    return [r["prompt"] for r in rows[:n]] or [PROBE]


def finished_weights(run_dir: str):
    """(the run's config, the folder of the weights to export): the run's own, or one of its checkpoints'."""
    from ..config import load_run_config, unfinished
    from ..inference.load import run_paths

    home, weights = run_paths(run_dir)
    cfg = load_run_config(str(home))
    if not (weights / cfg.weights_file).is_file():
        raise PricetuneError(unfinished(run_dir, cfg) if weights == home else
                             f"{run_dir} has no {cfg.weights_file}: not a complete checkpoint")
    return cfg, weights


def export_run_name(cfg, run_dir: str) -> str:
    """The run's name, and the checkpoint's where one is exported: what the exported files are named by."""
    from ..inference.load import run_paths

    home, weights = run_paths(run_dir)
    return cfg.run_name if weights == home else f"{cfg.run_name}-{weights.name}"


def export_run(run_dir: str, out_dir: str, dtype: str = "bf16", check: int = 16, log=print) -> Path:
    from ..modeling import load_tokenizer

    run, out = Path(run_dir), Path(out_dir)
    if dtype not in DTYPES:
        raise PricetuneError(f"--dtype must be one of {', '.join(DTYPES)}")
    cfg, weights = finished_weights(run_dir)
    refuse_filled_folder(out)
    regress = cfg.objective == "regress"
    scale = None
    if regress:
        from ..regress import HEAD_FILE, PriceScale

        scale = PriceScale.load(weights)
    tokenizer = load_tokenizer(cfg.base_model)
    merged, diff = _merged(cfg, weights, tokenizer, log)
    prompts = check_prompts(cfg, check) if check > 0 else []
    reference = _prices(merged, tokenizer, prompts, cfg, scale) if prompts else []  # float32, before the cast

    merged = merged.to(DTYPES[dtype])
    merged.config.use_cache = True
    info = {"run": str(run), "run_name": export_run_name(cfg, run_dir), "base_model": cfg.base_model,
            "objective": cfg.objective, "dtype": dtype, "max_length": cfg.max_length, "dataset": cfg.dataset,
            "max_logit_difference": diff, "trained_quantization": cfg.quantization}
    if regress:
        info["pooling"] = scale.pooling
    out.mkdir(parents=True, exist_ok=True)
    try:
        merged.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
        if regress:
            shutil.copy2(weights / HEAD_FILE, out / HEAD_FILE)
        if prompts:  # what was written, reloaded as a user would, in the dtype it was written in
            written = _prices(_reload(out, regress, DTYPES[dtype]), tokenizer, prompts, cfg, scale)
            info["check"] = price_agreement(reference, written)
            log(f"reloaded {out} ({dtype}): {info['check']['same_price']} of {len(prompts)} prices equal the "
                f"float32 merge, largest difference ${info['check']['max_abs_difference']:,.2f}")
        write_export_card(out, info, cfg)
        # written last: its presence says the folder is complete
        (out / EXPORT_INFO).write_text(json.dumps(info, indent=2) + "\n")
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # it was new or empty: no half-written model is left
        raise
    return out


def _merged(cfg, run: Path, tokenizer, log) -> tuple[torch.nn.Module, float]:
    """The run as one float32 model, and how far its output is from base + adapter (a run that
    trained every weight is one already: it is loaded as it was saved)."""
    from peft import PeftModel

    from ..data import encode_prompt, make_prompt
    from ..modeling import load_base_model, load_fully_trained

    if cfg.finetune == "full":
        log(f"loading {run} (every weight was trained: nothing to merge)")
        return load_fully_trained(str(run), "fp32").eval(), 0.0
    regress = cfg.objective == "regress"
    log(f"loading {cfg.base_model} (float32) and the adapter from {run}")
    base = load_base_model(cfg.base_model, "none", "fp32", objective=cfg.objective,
                           pad_token_id=tokenizer.pad_token_id)
    model = PeftModel.from_pretrained(base, str(run)).eval()
    ids = torch.tensor([encode_prompt(tokenizer, make_prompt(PROBE), cfg.max_length)])
    with torch.no_grad():
        # a causal LM: the next-token logits; a regress model: the head's output
        before = model(input_ids=ids).logits[0] if regress else model(input_ids=ids).logits[0, -1]
        merged = model.merge_and_unload()
        after = merged(input_ids=ids).logits[0] if regress else merged(input_ids=ids).logits[0, -1]
    diff = float((before - after).abs().max())
    if diff > 1e-3 * max(1.0, float(before.abs().max())):
        raise PricetuneError(f"the merged model disagrees with base + adapter (max logit difference {diff:.2e})")
    log(f"merged: outputs agree with base + adapter (max difference {diff:.1e})")
    return merged, diff


def _reload(folder: Path, regress: bool, dtype):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    auto = AutoModelForSequenceClassification if regress else AutoModelForCausalLM
    return auto.from_pretrained(folder, dtype=dtype).eval()


def price_agreement(reference: list[float | None], other: list[float | None]) -> dict:
    """How far prices from the written model are from the float32 merge's, item by item. The same
    answer counts as the same price, "no price" on both sides included."""
    pairs = [(a, b) for a, b in zip(reference, other)]
    same = sum(1 for a, b in pairs if (a is None and b is None)
               or (a is not None and b is not None and round(a, 2) == round(b, 2)))
    diffs = [abs(a - b) for a, b in pairs if a is not None and b is not None]
    return {"items": len(pairs), "same_price": same, "max_abs_difference": max(diffs, default=0.0),
            "failed": sum(1 for _, b in pairs if b is None)}
