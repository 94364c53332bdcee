"""Merge a run's LoRA adapter into its base model: one standalone model directory.

    pricetune export runs/price-...-demo --out merged/            # bf16 safetensors + tokenizer
    pricetune export runs/price-...-demo --out merged/ --dtype fp32

    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained("merged/")     # no PEFT, no pricetune needed

The base is loaded unquantized in float32 (folding the adapter into 4-bit weights would round most of
it away), the adapter applied and folded in with PEFT's `merge_and_unload`, and the merged model
checked against base + adapter on a price prompt before anything is written: the next-token logits
must agree. Only then is it cast to `--dtype` and saved with `save_pretrained`; `pricetune_export.json`
is written last, and a failed export removes the folder it created, so no half-written model is left.

A run trained on a 4-bit base (QLoRA) exports as the full-precision base plus the adapter; that is the
standard way to ship a QLoRA model, and its prices can differ slightly from the quantized run's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from .errors import PricetuneError
from .modeling import DTYPES

PROBE = "Title: 1.01 carat Ideal cut round diamond\nDescription: colour G, clarity VS1"


def export_run(run_dir: str, out_dir: str, dtype: str = "bf16", log=print) -> Path:
    from peft import PeftModel

    from .config import load_run_config
    from .data import encode_prompt, make_prompt
    from .modeling import load_base_model, load_tokenizer

    run, out = Path(run_dir), Path(out_dir)
    if dtype not in DTYPES:
        raise PricetuneError(f"--dtype must be one of {', '.join(DTYPES)}")
    cfg = load_run_config(str(run))
    if not (run / "adapter_config.json").is_file():
        raise PricetuneError(f"{run} has no adapter yet (adapter_config.json); did training finish?")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PricetuneError(f"{out} already exists and is not an empty folder; choose another --out")

    log(f"loading {cfg.base_model} (float32) and the adapter from {run}")
    tokenizer = load_tokenizer(cfg.base_model)
    model = PeftModel.from_pretrained(load_base_model(cfg.base_model, "none", "fp32"), str(run)).eval()
    ids = torch.tensor([encode_prompt(tokenizer, make_prompt(PROBE), cfg.max_length)])
    with torch.no_grad():
        before = model(input_ids=ids).logits[0, -1]
        merged = model.merge_and_unload()
        after = merged(input_ids=ids).logits[0, -1]
    diff = float((before - after).abs().max())
    if diff > 1e-3 * max(1.0, float(before.abs().max())):
        raise PricetuneError(f"the merged model disagrees with base + adapter (max logit difference {diff:.2e})")
    log(f"merged: next-token logits agree with base + adapter (max difference {diff:.1e})")

    merged = merged.to(DTYPES[dtype])
    merged.config.use_cache = True
    info = {"run": str(run), "base_model": cfg.base_model, "dtype": dtype, "max_length": cfg.max_length,
            "max_logit_difference": diff, "trained_quantization": cfg.quantization}
    out.mkdir(parents=True, exist_ok=True)
    try:
        merged.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
        # written last: its presence says the folder is complete
        (out / "pricetune_export.json").write_text(json.dumps(info, indent=2) + "\n")
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # it was new or empty: no half-written model is left
        raise
    return out


def add_export_arguments(p) -> None:
    p.add_argument("run_dir", help="The run directory (holds adapter_config.json and config.yaml).")
    p.add_argument("--out", required=True, help="New folder for the merged model (must not exist, or be empty).")
    p.add_argument("--dtype", default="bf16", choices=list(DTYPES),
                   help="Weights' type in the saved model (default bf16; the merge itself runs in float32).")


def export_cli(ns) -> int:
    out = export_run(ns.run_dir, ns.out, ns.dtype)
    print(f"exported: {out}")
    return 0
