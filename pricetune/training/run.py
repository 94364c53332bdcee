"""The entry point: the reference recipe's steps 0-7 as `prepare_trainer` (steps 1-5) and `train`
(steps 6-7), read top to bottom; `plan` says what a run would do without loading weights."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import torch

from .. import distributed as dist
from .. import hub
from ..config import RunConfig
from ..data import load_splits, missing_here, tokenize_rows
from ..baselines.neighbours import NeighbourIndex
from ..errors import PricetuneError
from ..fastpath import speed_up
from ..modeling import (
    build_lora_config,
    check_targets,
    check_targets_without_weights,
    describe_device,
    detect_device,
    head_names,
    keep_one_4bit_layout,
    load_base_model,
    load_tokenizer,
    pick_precision,
)
from ..regress import HEAD_FILE, PriceScale, RegressionCollator, tokenize_regression_rows
from .callbacks import CheckpointPusher, GracefulStop, MetricsLogger, OpeningLoss, ValTime
from .card import write_model_card
from .common import (
    check_compiler, compile_layers, compile_notice, find_checkpoint, keep_compile_cache_in, resolve_fast,
    resolve_optim,
)
from .generate import PricetuneTrainer, build_sft_config
from .regress import RegressionTrainer, build_regress_args, peft_for_training


def oom_advice(cfg: RunConfig) -> str:
    """What to change after CUDA runs out of memory, keeping the effective batch size."""
    tips = []
    if cfg.batch_size > 1:
        half = max(1, cfg.batch_size // 2)
        accum = cfg.grad_accum * (cfg.batch_size // half)
        tips.append(f"--batch-size {half} --grad-accum {accum} (same effective batch of {cfg.batch_size * cfg.grad_accum})")
    if not cfg.gradient_checkpointing:
        tips.append("--gradient-checkpointing")
    if cfg.quantization == "none":
        tips.append("--quantization 8bit or 4bit")
    elif cfg.quantization == "8bit":
        tips.append("--quantization 4bit")
    if cfg.max_length > 128:
        tips.append(f"a smaller --max-length (now {cfg.max_length})")
    return "CUDA ran out of memory. Try: " + "; or ".join(tips or ["a smaller model"])


def plan(cfg: RunConfig) -> str:
    """What `train` would do, without loading anything heavy."""
    device = detect_device()
    fast, compiling_on, why = resolve_fast(cfg, device)
    cfg = cfg.model_copy(update=dict(fast=fast, torch_compile=compiling_on))
    precision = pick_precision(cfg.precision)
    optim, notice = resolve_optim(cfg.optim, device)
    push = "yes, to " + (cfg.hub_model_id or f"<HF_USER>/{cfg.run_name}") + (
        " (private)" if cfg.hub_private else " (public)") if cfg.push_to_hub else "no"
    if cfg.finetune == "full":
        training = "every weight trained (finetune full)"
    else:
        training = (f"LoRA r={cfg.lora_r} alpha={cfg.lora_alpha} on {', '.join(cfg.lora_targets)} "
                    f"({check_targets_without_weights(cfg.base_model, cfg.lora_targets)})")
    world = dist.world_size()
    per_device, accum = dist.split_batch(cfg.batch_size, cfg.grad_accum, world)
    sharded = dist.sharded_weights()
    lines = [
        f"model:     {cfg.base_model} (quantization {cfg.quantization}), {training}",
        f"objective: {cfg.objective}" + (
            f" (scalar head on the {cfg.regress_pooling} hidden state, log price, {cfg.regress_loss} loss)"
            if cfg.objective == "regress"
            else " (SFT: the model writes the price)"),
        f"data:      {cfg.dataset} (val: first {cfg.val_size} rows"
        + (f", train: {cfg.train_sample} {cfg.train_size} rows" if cfg.train_size else ", train: all rows")
        + (" + the val rows: a refit, no evaluation" if cfg.train_on_val else "")
        + f", max_length {cfg.max_length})"
        + (f"; each prompt with its {cfg.neighbours} most similar training items' prices" if cfg.neighbours else ""),
        f"device:    {describe_device()}, precision {precision}, optimizer {optim}"
        + (", decoder layers compiled (torch.compile, inductor)" if cfg.torch_compile else ""),
        f"processes: {world}" + (" (under a launcher: DDP, rank 0 writes)" if world > 1 else "")
        + (f", weights sharded by {sharded}" if sharded else ""),
        f"batch:     global {per_device * accum * world} = {per_device} per device x {accum} accumulation step(s)"
        f" x {world} process(es)",
        f"outputs:   {cfg.run_dir}/ ({'model' if cfg.finetune == 'full' else 'adapter'}, config.yaml, "
        "metrics.jsonl, summary.json, checkpoints)",
        f"path:      {'fast' if fast and not sharded else 'stock'} ({why})",
        f"push:      {push}",
    ]
    if notice:
        lines.append(f"notice:    {notice}")
    if missing_here(cfg.dataset):
        lines.append(f"notice:    dataset {cfg.dataset} is not on this machine: training here would stop at once")
    if compiling := compile_notice(cfg, device):
        lines.append(f"notice:    {compiling}")
    if sharded and cfg.fast:
        lines.append(f"notice:    the fast path is off under {sharded} (it applies the LM head outside the "
                     "wrapped forward, which sharded weights do not allow); TRL's stock loss is used")
    return "\n".join(lines)


def refuse_occupied(run_dir: Path, overwrite: bool) -> None:
    """A directory that holds a run, finished or interrupted, is never mixed into: refused unless `overwrite`."""
    if run_dir.exists() and not run_dir.is_dir():
        raise PricetuneError(f"{run_dir} is a file, not a run directory; choose another --output-dir")
    if run_dir.is_dir() and any(run_dir.iterdir()) and not overwrite:
        state = "a finished run" if (run_dir / "summary.json").exists() else (
            "an interrupted run" if (run_dir / "config.yaml").exists() else "files")
        raise PricetuneError(f"{run_dir} already holds {state}; continue it with --resume, replace it with "
                             "--overwrite, or choose another --output-dir")


def prepare_run_dir(cfg: RunConfig, overwrite: bool = False) -> Path:
    """A fresh run directory (`overwrite` empties one that holds a run first) with the run's config."""
    run_dir = cfg.run_dir
    refuse_occupied(run_dir, overwrite)
    if run_dir.is_dir() and any(run_dir.iterdir()):
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(cfg.to_yaml(), encoding="utf-8")
    return run_dir


def prepare_trainer(cfg: RunConfig, log: Callable[[str], None] = print, resuming: bool = False, trainer_cls=None,
                    overwrite: bool = False, fastpath: dict | None = None, seeded_order: bool = True):
    """Steps 1-5: everything up to a ready trainer. Returns (trainer, context dict).

    For the benchmarks: `trainer_cls` replaces the generate trainer (the reference side passes TRL's
    SFTTrainer); `fastpath` switches single fast-path changes off ({"no_mask": False, "attention":
    False, ...}); `seeded_order=False` keeps the stock batch order."""
    from transformers import set_seed

    # 0. Hub login: nothing to do here; huggingface_hub reads HF_TOKEN (or its own login) on demand,
    #    and we never store the token.
    cfg, device, precision = choose_device_and_path(cfg, log)  # 1. device, precision, path, optimizer
    train_rows, val_rows, bad, index = load_data(cfg, log)  # 2. validated before any weights load
    # 3. tokenizer, tokenized splits (too-long prompts fail here, still before the weights), base
    tokenizer = load_tokenizer(cfg.base_model, padding_side="right")
    scale = price_scale(cfg, train_rows, resuming) if cfg.objective == "regress" else None
    run_dir, train_ds, val_ds = tokenize_splits(cfg, tokenizer, scale, train_rows, val_rows, resuming, overwrite, log)
    if index is not None and dist.is_main():
        index.save(run_dir)
    if scale is not None and dist.is_main():
        scale.save(run_dir)
    if cfg.torch_compile:
        keep_compile_cache_in(run_dir)
    # Seeded before the model exists: a regress head is initialised as it loads, and TRL creates the
    # LoRA weights before Trainer seeds
    set_seed(cfg.seed)
    # every weight trained: float32 master weights, the compute in `precision` under Trainer's autocast
    # (bf16 weights would round most updates away); LoRA trains float32 adapters on a base in `precision`
    weights = "fp32" if cfg.finetune == "full" else precision
    model = load_base_model(cfg.base_model, cfg.quantization, weights, cfg.bnb_4bit_quant_type, cfg.double_quant,
                            objective=cfg.objective, pad_token_id=tokenizer.pad_token_id,
                            quant_storage=cfg.bnb_4bit_quant_storage, dropout=cfg.base_dropout)
    keep_one_4bit_layout(model)
    set_seed(cfg.seed)  # 4. LoRA, from the same state whatever loading drew (none when every weight trains)
    lora = None
    if cfg.finetune == "lora":
        check_targets(model, cfg.lora_targets)
        lora = build_lora_config(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets, cfg.objective,
                                 head=head_names(model))
    # 5. the trainer (TrainingArguments / SFTConfig), then the fast path and compiled layers
    fastpath = dict(fastpath or {})
    drop_mask = fastpath.pop("no_mask", True)
    fast = cfg.fast and trainer_cls is None and not dist.sharded_weights()
    parts = dict(model=model, lora=lora, tokenizer=tokenizer, train_ds=train_ds, val_ds=val_ds, scale=scale)
    trainer = build_trainer(cfg, run_dir, device, precision, parts, trainer_cls,
                            dict(fast=fast, drop_mask=drop_mask, seeded_order=seeded_order))
    if fast:
        speed_up(trainer.model, **fastpath)
    if cfg.torch_compile:  # after the fast path has put its layers in: they are what gets compiled
        compile_layers(trainer.model)
    context = dict(run_dir=run_dir, tokenizer=tokenizer, device=device, precision=precision, bad=bad,
                   train_rows=len(train_ds), val_rows=len(val_rows), fast=cfg.fast and not dist.sharded_weights(),
                   compiled=cfg.torch_compile)
    return trainer, context


def choose_device_and_path(cfg: RunConfig, log) -> tuple[RunConfig, str, str]:
    """Step 1: the device, the path (fast or stock, saved resolved in config.yaml), precision and the
    optimizer's fallback, with a notice for each choice a user did not make."""
    device = detect_device()
    fast, compiling_on, why = resolve_fast(cfg, device)
    if cfg.fast is None and device != "cpu":
        log(f"notice: path: stock ({why})")
    cfg = cfg.model_copy(update=dict(fast=fast, torch_compile=compiling_on))
    _, notice = resolve_optim(cfg.optim, device)
    if notice:
        log(f"notice: {notice}")
    check_compiler(cfg.torch_compile, device)
    if compiling := compile_notice(cfg, device):
        log(f"notice: {compiling}")
    return cfg, device, pick_precision(cfg.precision)


def load_data(cfg: RunConfig, log) -> tuple[list[dict], list[dict], Any, NeighbourIndex | None]:
    """Step 2: the train and val rows as training reads them (val added to train for a refit; each
    prompt with its look-alikes' prices when `neighbours` is set), the skipped rows, the index."""
    splits, bad = load_splits(cfg.dataset, cfg.val_size, cfg.train_size, cfg.on_bad_rows,
                              train_sample=cfg.train_sample, seed=cfg.seed)
    if bad:
        log(f"skipped {sum(bad.counts.values())} invalid row(s): {bad.summary()}")
    train_rows, val_rows = splits["train"], splits.get("val", [])[: cfg.val_size]
    if cfg.train_on_val:
        # The refit: settings were chosen on val by earlier runs, so val's rows now teach instead of judge
        if not val_rows:
            raise PricetuneError(f"dataset {cfg.dataset}: train_on_val needs a val split to train on")
        train_rows, val_rows = train_rows + val_rows, []
        log(f"train_on_val: training on {len(train_rows)} rows (train + val), no evaluation during training")
    index = None
    if cfg.neighbours:
        # Each prompt gains its look-alikes' prices: a training row from the other training rows, val
        # from the training rows, as a new item will be priced
        index = NeighbourIndex.build(train_rows, cfg.neighbours)
        train_rows = index.add_to_rows(train_rows, exclude_self=True)
        val_rows = index.add_to_rows(val_rows)
        log(f"neighbours: each prompt carries the prices of its {cfg.neighbours} most similar of "
            f"{len(index.prices)} training items")
    return train_rows, val_rows, bad, index


def price_scale(cfg: RunConfig, train_rows: list[dict], resuming: bool) -> PriceScale:
    """A regress run's standardisation: the run's own when it resumes, else fit on its train prices."""
    if resuming and (cfg.run_dir / HEAD_FILE).is_file():
        return PriceScale.load(cfg.run_dir)
    return PriceScale.fit([r["price"] for r in train_rows], cfg.regress_loss, cfg.regress_pooling,
                          cfg.regress_huber_delta)


def tokenize_splits(cfg: RunConfig, tokenizer, scale: PriceScale | None, train_rows: list[dict],
                    val_rows: list[dict], resuming: bool, overwrite: bool, log):
    """Step 3: (run_dir, train dataset, val dataset or None). Under a launcher rank 0 makes the run
    directory and tokenizes into its cache, and the others read that cache."""

    def tokenize(rows: list[dict]):
        if scale is not None:
            return tokenize_regression_rows(tokenizer, rows, cfg.max_length, scale)
        return tokenize_rows(tokenizer, rows, cfg.max_length)

    if dist.launched():
        run_dir = cfg.run_dir if resuming else dist.on_main(lambda: prepare_run_dir(cfg, overwrite))
        train_ds = dist.main_first(lambda: cached(run_dir, "train", tokenize, train_rows, cfg, scale))
        val_ds = dist.main_first(lambda: cached(run_dir, "val", tokenize, val_rows, cfg, scale)) if val_rows else None
    else:
        train_ds = tokenize(train_rows)
        val_ds = tokenize(val_rows) if val_rows else None
        run_dir = cfg.run_dir if resuming else prepare_run_dir(cfg, overwrite)
    log(f"run directory: {run_dir}")
    per_device, _ = dist.split_batch(cfg.batch_size, cfg.grad_accum, dist.world_size())
    if repeats := dist.repeated_rows(len(train_ds), per_device, dist.world_size()):
        log(f"notice: each epoch repeats {repeats} of its {len(train_ds)} rows: the last round of micro-batches is "
            f"filled up so that every one of the {dist.world_size()} processes takes the same steps")
    return run_dir, train_ds, val_ds


def build_trainer(cfg: RunConfig, run_dir: Path, device: str, precision: str, parts: dict, trainer_cls, own: dict):
    """Step 5: the regress objective's Trainer, or the generate objective's SFT trainer (pricetune's,
    with the `own` fast-path switches, or `trainer_cls` as given)."""
    callbacks = [MetricsLogger(run_dir / "metrics.jsonl")]
    has_eval = parts["val_ds"] is not None
    if parts["scale"] is not None:
        return RegressionTrainer(
            model=peft_for_training(parts["model"], parts["lora"], cfg) if parts["lora"] else parts["model"],
            args=build_regress_args(cfg, run_dir, precision, device, has_eval=has_eval),
            train_dataset=parts["train_ds"], eval_dataset=parts["val_ds"],
            data_collator=RegressionCollator(parts["tokenizer"].pad_token_id), processing_class=parts["tokenizer"],
            callbacks=callbacks, scale=parts["scale"], head_learning_rate=cfg.head_learning_rate,
        )
    return (trainer_cls or PricetuneTrainer)(
        model=parts["model"], args=build_sft_config(cfg, run_dir, precision, device, has_eval=has_eval),
        train_dataset=parts["train_ds"], eval_dataset=parts["val_ds"], processing_class=parts["tokenizer"],
        peft_config=parts["lora"], callbacks=callbacks, **({} if trainer_cls is not None else own),
    )


def cached(run_dir: Path, split: str, tokenize: Callable[[list[dict]], Any], rows: list[dict], cfg: RunConfig,
           scale: PriceScale | None = None):
    """Tokenized rows, kept in <run_dir>/.cache/ so that the processes of a launched run tokenize
    once. The key covers what changes the tokens or the targets (a regress run's price scale: a
    resumed run's may differ from the one its first session tokenized with), so a stale cache is never read."""
    import dataclasses
    import hashlib

    from datasets import load_from_disk

    key = [cfg.base_model, cfg.objective, cfg.max_length,
           dataclasses.asdict(scale) if scale is not None else None]
    h = hashlib.sha256(json.dumps(key).encode())
    for r in rows:
        h.update(f"{r['prompt']}\0{r['price']}\0".encode())
    path = run_dir / ".cache" / f"{split}-{h.hexdigest()[:16]}"
    if path.is_dir():
        return load_from_disk(str(path))
    ds = tokenize(rows)
    staged = path.with_name(path.name + ".partial")
    shutil.rmtree(staged, ignore_errors=True)
    ds.save_to_disk(str(staged))
    os.replace(staged, path)  # a cache that exists is complete
    return ds


def _quiet(*_args, **_kwargs) -> None:
    """The log of ranks other than 0: one voice per run."""


class Interrupted(PricetuneError):
    """Training stopped on a signal after saving a checkpoint."""


def closing_eval_loss(trainer) -> float:
    """The validation loss after training: the one logged at the last step when an evaluation ran
    there (eval_steps dividing the steps, as the shipped configs do), else a fresh evaluation; the
    same loss either way, and the repeat would cost a pass over the val split (~50 s on the amazon items)."""
    logged = [h for h in trainer.state.log_history if "eval_loss" in h]
    if logged and logged[-1].get("step") == trainer.state.global_step:
        return logged[-1]["eval_loss"]
    return trainer.evaluate()["eval_loss"]


def train(cfg: RunConfig, log: Callable[[str], None] = print, resume: str | None = None,
          overwrite: bool = False) -> dict:
    """Fine-tune per `cfg`; returns the summary (also written to <run_dir>/summary.json).

    `resume`: "latest" (the newest complete checkpoint of cfg.run_dir) or a checkpoint path.
    Under torchrun / accelerate launch every process calls this; rank 0 alone logs, writes and pushes.
    """
    main = dist.is_main()
    if not main:
        log = _quiet
    checkpoint = None
    if resume:
        if (cfg.run_dir / "summary.json").is_file():
            log(f"{cfg.run_dir} already finished; nothing to resume")
            return json.loads((cfg.run_dir / "summary.json").read_text())
        checkpoint = find_checkpoint(cfg.run_dir, resume)
        log(f"resuming from {checkpoint}")
    elif not dist.launched():  # now, not after the data is read (launched: rank 0 checks as it makes the folder)
        refuse_occupied(cfg.run_dir, overwrite)
    trainer, ctx = prepare_trainer(cfg, log, resuming=checkpoint is not None, overwrite=overwrite)
    run_dir, has_val = ctx["run_dir"], ctx["val_rows"] > 0
    if checkpoint and main:
        MetricsLogger(run_dir / "metrics.jsonl").drop_after(int(Path(checkpoint).name.rsplit("-", 1)[-1]))
    stop = GracefulStop()
    trainer.add_callback(stop)
    if cfg.push_to_hub and cfg.hub_strategy == "every_save" and main:
        pusher = CheckpointPusher(cfg, log)
        trainer.add_callback(pusher)
    else:
        pusher = None

    # 6. train, with the validation loss before and after. The opening evaluation runs inside train()
    #    (eval_on_start), after the model is wrapped for DDP: an evaluate() before train() would mark
    #    the model prepared, and accelerate would then never wrap it, leaving gradients unsynchronised
    prior = run_dir / "initial_eval_loss.json"
    opening = OpeningLoss(prior if main else None, log)
    if has_val and checkpoint and prior.is_file():
        opening.loss = json.loads(prior.read_text())["eval_loss"]
        log(f"validation loss before training: {opening.loss:.4f}")
    trainer.args.eval_on_start = has_val and opening.loss is None
    trainer.add_callback(opening)
    val_time = ValTime()
    trainer.add_callback(val_time)
    start = time.perf_counter()
    # The handler stays until the run is written: a signal during the closing evaluation or the save
    # lets them finish (a second one still exits at once), instead of discarding a finished run
    stop.install()
    try:
        try:
            trainer.train(resume_from_checkpoint=checkpoint)
        except torch.cuda.OutOfMemoryError:
            raise PricetuneError(oom_advice(cfg) + f"\n  Checkpoints so far are in {run_dir}.") from None
        seconds = time.perf_counter() - start
        if stop.requested:
            raise Interrupted(
                f"stopped on {stop.requested} at step {trainer.state.global_step}; checkpoint saved in {run_dir}.\n"
                f"  resume with: pricetune train --output-dir {run_dir} --resume"
            )
        return _finish(trainer, cfg, ctx, log, seconds, val_time.seconds, opening.loss, pusher, has_val)
    finally:
        stop.uninstall()


def _finish(trainer, cfg: RunConfig, ctx: dict, log, seconds: float, val_seconds: float, opening_loss, pusher,
            has_val: bool) -> dict:
    """Step 7 and the record: the adapter saved (first: nothing after it can lose the run), the closing
    validation loss, the summary, the card, the push."""
    run_dir, main = ctx["run_dir"], dist.is_main()
    # adapter_config.json + adapter_model.safetensors, or a full run's model.safetensors (rank 0 writes)
    trainer.save_model(str(run_dir))
    final = closing_eval_loss(trainer) if has_val else None
    tokens = dist.total(int(trainer._total_train_tokens))  # every process's tokens
    args = trainer.args
    summary = {
        "run_dir": str(run_dir),
        "adapter_dir": str(run_dir),
        "run_name": cfg.run_name,
        "base_model": cfg.base_model,
        "dataset": cfg.dataset,
        "train_rows": ctx["train_rows"],
        "val_rows": ctx["val_rows"],
        "skipped_rows": dict(ctx["bad"].counts),
        "steps": trainer.state.global_step,
        "initial_eval_loss": opening_loss,
        "final_eval_loss": final,
        "train_tokens": tokens,
        "train_seconds": round(seconds, 2),
        "train_tokens_per_second": round(tokens / seconds, 1) if seconds > 0 else None,
        "val_seconds": round(val_seconds, 2),  # of train_seconds: the validation passes
        "world_size": args.world_size,
        "per_device_batch_size": args.per_device_train_batch_size,
        "grad_accum": args.gradient_accumulation_steps,
        "global_batch_size": args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size,
        "precision": ctx["precision"],
        "device": ctx["device"],
        "fast": ctx["fast"],
        "compiled": ctx["compiled"],
        "objective": cfg.objective,
        "pushed_to": None,
    }
    if not main:
        return summary
    # tokenized data (for the full preset ~0.7 GB) and torch.compile's kernels
    shutil.rmtree(run_dir / ".cache", ignore_errors=True)
    ctx["tokenizer"].save_pretrained(str(run_dir))
    write_model_card(run_dir, cfg, summary)

    # 7. push the adapter (private); a failure never loses the local run
    if pusher is not None:
        pusher.wait()  # checkpoint pushes still in flight land before the final one
    if cfg.push_to_hub:
        summary["pushed_to"] = hub.push_after_training(run_dir, cfg, log)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
