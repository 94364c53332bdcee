"""The run directory's README.md: a model card with the run's figures and hyper-parameters."""

from __future__ import annotations

from pathlib import Path

import yaml

from ..config import RunConfig, hub_base_model, public_value


def write_model_card(run_dir: Path, cfg: RunConfig, summary: dict) -> None:
    """The card is pushed with the adapter: it names the base and data as `public_config` does (a local
    path only by its last part) and the run by its name, never by a folder of this machine."""
    base, data = public_value(cfg.base_model), public_value(cfg.dataset)
    repo = cfg.hub_model_id or f"{cfg.hub_user or 'HF_USER'}/{cfg.run_name}"
    hp = {k: getattr(cfg, k) for k in (
        "objective", "quantization", "finetune", "lora_r", "lora_alpha", "lora_dropout", "target_modules",
        "epochs", "max_steps", "batch_size", "grad_accum", "learning_rate", "warmup_ratio",
        "lr_scheduler", "weight_decay", "optim", "max_grad_norm", "max_length", "seed")}
    if cfg.base_dropout is not None:
        hp.update(base_dropout=cfg.base_dropout)
    if cfg.objective == "regress":
        hp.update(regress_loss=cfg.regress_loss, regress_pooling=cfg.regress_pooling)
        if cfg.regress_loss == "huber":
            hp.update(regress_huber_delta=cfg.regress_huber_delta)
    rows = "\n".join(f"| {k} | {v} |" for k, v in hp.items())
    read = "the last prompt token" if cfg.regress_pooling == "last" else "the mean over the prompt's tokens"
    if cfg.objective != "regress":
        how = 'the adapter completes the price ("64.00").'
    else:
        how = (f"a scalar head on {read} gives the price (regress objective: "
               "price = expm1(center + scale * output), `regression_head.json`).")
    rows_used = (f"{summary['train_rows']} rows of train + val: a refit, settings chosen on val beforehand"
                 if cfg.train_on_val else f"{summary['train_rows']} train rows, {summary['val_rows']} val rows")
    looked_up = (f" Each prompt also carries, after the question, the prices of the {cfg.neighbours} most similar "
                 "training items (TF-IDF cosine); `neighbours.json` holds those items, and pricetune looks every new "
                 "item up in them, so the file must travel with the adapter." if cfg.neighbours else "")
    full = cfg.finetune == "full"
    what = "A model, every weight trained," if full else "A LoRA adapter"
    front = {"base_model": hub_base_model(cfg.base_model), "library_name": "transformers" if full else "peft",
             "tags": ["pricetune", "full-finetune" if full else "lora", "price-prediction"]}
    front = yaml.safe_dump({k: v for k, v in front.items() if v is not None}, sort_keys=False)
    card = f"""---
{front}---
# {cfg.run_name}

{what} that prices products from their descriptions, trained with pricetune from `{base}` on `{data}`.

Prompt: "What does this cost to the nearest dollar?", the item, then "Price is $"; {how}{looked_up}

| | |
|---|---|
| base model | {base} ({cfg.quantization}) |
| dataset | {data} ({rows_used}) |
| steps | {summary['steps']} |
| validation loss before training | {_fmt(summary['initial_eval_loss'])} |
| validation loss after training | {_fmt(summary['final_eval_loss'])} |
| precision / device | {summary['precision']} / {summary['device']} |

## Hyper-parameters
| name | value |
|---|---|
{rows}

## Use
```bash
pricetune predict --adapter {repo} "Title: ...\\nCategory: ...\\nDescription: ..."
pricetune evaluate {repo} --dataset DATA   # DATA: a folder of train/val/test.jsonl in the same format
```

`pricetune predict --run RUN --similar K` and `pricetune serve --similar K` show, beside a price, the K
training items most like the description: their text is the training data's own, so whoever can call
such a service can read it.{" This adapter's `neighbours.json` holds the training items' text too." if cfg.neighbours else ""}
"""
    (run_dir / "README.md").write_text(card, encoding="utf-8")


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.4f}"
