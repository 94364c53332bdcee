"""Fine-tuning: the reference recipe's steps 0-7 as one function that reads top to bottom.

    pricetune train                                   # demo preset: embedded SmolLM2 + diamonds, CPU
    pricetune train --preset lite --dry-run           # the reference lite recipe, resolved, no weights
    pricetune train --preset lite --base-model smollm2-135m \
        --dataset ../shared/data/amazon-items --max-steps 3

    from pricetune.config import resolve_config
    from pricetune.training import train
    summary = train(resolve_config("demo", overrides={"max_steps": 10}))

The fast path (`fast: true`, the default) is TRL's SFTTrainer with these changes, each measured in
docs/PERFORMANCE.md: the loss computes the LM head only at the few completion positions instead of
over the full vocabulary at every token, and skips the per-step full-vocabulary entropy/accuracy
metrics; right-padded batches run without an attention mask (causal attention already keeps real
tokens from the padding after them); and `pricetune.fastpath.speed_up` swaps in attention, LoRA
dropout, RMSNorm and SwiGLU that cost less time or keep less for backward. Same loss, same gradients.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from transformers import Trainer, TrainerCallback
from transformers.trainer_pt_utils import LengthGroupedSampler
from trl import SFTTrainer

from . import distributed as dist
from . import hub
from .config import RunConfig
from .data import load_splits, tokenize_rows
from .errors import PricetuneError
from .fastpath import speed_up
from .regression import (HEAD_FILE, PriceScale, RegressionCollator, head_outputs, init_head_from_probe, regression_loss,
                         restandardise, tokenize_regression_rows)
from .modeling import (
    build_lora_config,
    check_targets,
    check_targets_without_weights,
    describe_device,
    detect_device,
    keep_one_4bit_layout,
    load_base_model,
    load_tokenizer,
    pick_precision,
)

CPU_OPTIM = "adamw_torch"


# ------------------------------------------------------------------------------------------------
# The fast loss


def completion_loss(model, inputs: dict, num_items_in_batch=None, drop_mask: bool = True) -> tuple[torch.Tensor, int]:
    """Mean next-token cross-entropy over labelled positions, computing the LM head only there.

    Returns the loss and the number of labelled tokens. Equal to the stock causal-LM loss: the
    hidden state at position t predicts label t+1, positions labelled -100 are ignored.
    Under DDP the forward goes through the wrapper, which is what synchronises gradients across
    processes (the model then computes logits for one position only); in one process the decoder
    runs alone. Either way the LM head is applied here, at the completion positions only.
    `drop_mask`: run right-padded batches without their attention mask (same result, faster kernel).
    """
    from torch.nn.parallel import DistributedDataParallel

    mask = inputs.get("attention_mask")
    if drop_mask and mask is not None and is_right_padded(mask):
        # Causal attention never lets a real token see the padding after it, so the mask changes
        # nothing that reaches the loss; without it attention takes its unmasked causal kernel
        mask = None
    if isinstance(model, DistributedDataParallel):
        # DDP synchronises gradients through hooks its forward sets up: go through it, with logits
        # for one position only; under mixed precision the outputs come back in float32
        out = model(input_ids=inputs["input_ids"], attention_mask=mask, use_cache=False,
                    output_hidden_states=True, logits_to_keep=1)
        hidden, unwrapped = out.hidden_states[-1], model.module
    else:
        # One process: the decoder alone, without the full model's outputs and the autocast wrapper
        # accelerate puts around the model's forward (a bf16 model runs in bf16 as loaded)
        unwrapped = model
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        hidden = base.get_decoder()(input_ids=inputs["input_ids"], attention_mask=mask, use_cache=False).last_hidden_state
    head = unwrapped.get_output_embeddings()
    hidden = hidden.to(head.weight.dtype)  # the final (normed) hidden state, as the LM head reads it
    targets = inputs["labels"][:, 1:]
    keep = targets != -100
    logits = head(hidden[:, :-1][keep]).float()
    loss_sum = F.cross_entropy(logits, targets[keep], reduction="sum")
    n = int(keep.sum())
    denom = num_items_in_batch if num_items_in_batch is not None else max(n, 1)
    return loss_sum / torch.as_tensor(denom, device=loss_sum.device).clamp(min=1), n


def is_right_padded(mask: torch.Tensor) -> bool:
    """True when every row of an attention mask is ones followed only by zeros."""
    return bool((mask[:, 1:] <= mask[:, :-1]).all())


class EpochSeededLengthSampler(LengthGroupedSampler):
    """Length-grouped order drawn from seed + epoch alone. The Trainer calls `set_epoch` before each
    epoch, also the one a resumed run continues, so a resume sees the batches the interrupted run
    would have (stock samplers draw from the global RNG, which a resume restores only after the
    epoch's order was drawn)."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int):
        super().__init__(batch_size, lengths=lengths, generator=torch.Generator())
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.generator.manual_seed(self.seed + int(epoch))


class AtomicCheckpoints:
    """Trainer mixin: checkpoints written under .staging/ and renamed into place (a checkpoint that
    exists is complete, so resume never picks a half-written one), rotation over complete ones only,
    and the (seed, epoch)-fixed length-grouped order. Under a launcher every process writes its own
    RNG state into the staged checkpoint and rank 0 alone renames and rotates, after all have."""

    _staging: str | None = None

    def _get_output_dir(self, trial):
        return self._staging or super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial):
        from transformers.trainer_utils import rotate_checkpoints

        run_dir = self.args.output_dir
        name = f"checkpoint-{self.state.global_step}"
        main = self.args.should_save  # rank 0 (the only process under no launcher)
        self._staging = os.path.join(run_dir, ".staging")
        if main:
            shutil.rmtree(self._staging, ignore_errors=True)
        self.accelerator.wait_for_everyone()  # nobody writes into a staging folder being cleared
        try:
            super()._save_checkpoint(model, trial)
        except OSError as e:
            shutil.rmtree(os.path.join(run_dir, ".staging"), ignore_errors=True)
            raise CheckpointError(checkpoint_failure(run_dir, name, e)) from None
        finally:
            staged, self._staging = os.path.join(run_dir, ".staging", name), None
        self.accelerator.wait_for_everyone()  # every process's RNG state is in the staged checkpoint
        if main:
            for extra in self.checkpoint_files:  # files the run needs to use a checkpoint on its own
                shutil.copy2(os.path.join(run_dir, extra), os.path.join(staged, extra))
            final = os.path.join(run_dir, name)
            if os.path.exists(final):  # the same step saved again after a resume
                shutil.rmtree(final)
            os.replace(staged, final)
            shutil.rmtree(os.path.join(run_dir, ".staging"), ignore_errors=True)
            # rotation sees only complete checkpoints and always keeps the newest
            rotate_checkpoints(output_dir=run_dir, save_total_limit=self.args.save_total_limit, use_mtime=False)
        self.accelerator.wait_for_everyone()

    checkpoint_files: tuple[str, ...] = ()

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        """Resume with the trainable weights in the dtypes the run trained them in. A QLoRA run
        trains its LoRA weights in bf16, and loading the checkpoint's adapter brings them back as
        float32: the resumed run's updates would then differ from the uninterrupted run's."""
        target = model if model is not None else self.model
        dtypes = {n: p.dtype for n, p in target.named_parameters() if p.requires_grad}
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        for name, param in target.named_parameters():
            if name in dtypes and param.dtype != dtypes[name]:
                param.data = param.data.to(dtypes[name])

    seeded_order: bool = True  # False: the stock sampler (bench: the same batches as the reference)

    def _get_train_sampler(self, train_dataset=None):
        train_dataset = train_dataset if train_dataset is not None else self.train_dataset
        if not self.seeded_order or self.args.train_sampling_strategy != "group_by_length" or train_dataset is None:
            return super()._get_train_sampler(train_dataset)
        lengths = [len(ids) for ids in train_dataset["input_ids"]]
        # Grouped by the global batch: the order is the same on any number of processes (accelerate
        # hands process r every world_size-th per-device batch of it)
        global_batch = self.args.train_batch_size * self.args.gradient_accumulation_steps * self.args.world_size
        return EpochSeededLengthSampler(global_batch, lengths, self.args.data_seed or self.args.seed)


class PricetuneTrainer(AtomicCheckpoints, SFTTrainer):
    """TRL's SFTTrainer with atomic checkpoints and, when `fast`, the completion-only LM head."""

    def __init__(self, *args, fast: bool = True, drop_mask: bool = True, seeded_order: bool = True, **kwargs):
        self.fast, self.drop_mask, self.seeded_order = fast, drop_mask, seeded_order
        super().__init__(*args, **kwargs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not self.fast:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        loss, _ = completion_loss(model, inputs, num_items_in_batch, self.drop_mask)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes
        if model.training and "attention_mask" in inputs:
            self._total_train_tokens += int(inputs["attention_mask"].sum())
        if return_outputs:
            raise NotImplementedError("the fast loss returns no logits; set fast: false for compute_metrics")
        return loss


class RegressionTrainer(AtomicCheckpoints, Trainer):
    """transformers' Trainer for the regress objective: L1 (or Huber) on standardised log price,
    the head read at the last prompt token or on the mean over the prompt (`pooling`)."""

    checkpoint_files = (HEAD_FILE,)
    # The loss is a per-batch mean: Trainer divides it over accumulation steps (the seq-cls model's
    # **kwargs would otherwise make Trainer assume a loss already normalised by num_items_in_batch)
    loss_is_scaled_for_ga = False

    def __init__(self, *args, loss_kind: str = "l1", head_learning_rate: float | None = None, pooling: str = "last",
                 **kwargs):
        self.loss_kind, self.head_learning_rate, self.pooling = loss_kind, head_learning_rate, pooling
        self._total_train_tokens = 0
        super().__init__(*args, **kwargs)

    def create_optimizer(self, model=None):
        """The new head may learn faster than the LoRA weights: its own parameter group."""
        if self.optimizer is not None or self.head_learning_rate is None:
            return super().create_optimizer(model) if self.optimizer is None else self.optimizer
        model = model if model is not None else self.model
        head = [p for n, p in model.named_parameters() if p.requires_grad and "modules_to_save" in n]
        rest = [p for n, p in model.named_parameters() if p.requires_grad and "modules_to_save" not in n]
        optim_cls, optim_kwargs = Trainer.get_optimizer_cls_and_kwargs(self.args, model)
        self.optimizer = optim_cls([
            {"params": rest, "weight_decay": self.args.weight_decay},
            {"params": head, "weight_decay": 0.0, "lr": self.head_learning_rate},
        ], **optim_kwargs)
        return self.optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = head_outputs(model, inputs["input_ids"], inputs.get("attention_mask"), self.pooling)
        loss = regression_loss(outputs, inputs["labels"], self.loss_kind)
        if model.training and "attention_mask" in inputs:
            self._total_train_tokens += int(inputs["attention_mask"].sum())
        return (loss, {"logits": outputs}) if return_outputs else loss


class CheckpointError(PricetuneError):
    """A checkpoint could not be written; the previous ones are untouched."""


def checkpoint_failure(run_dir: str, name: str, err: OSError) -> str:
    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(run_dir)
    kept = f"the previous checkpoint {last} is kept" if last else "no earlier checkpoint exists"
    if err.errno == errno.ENOSPC:
        free = shutil.disk_usage(run_dir).free / 2**20
        cause = f"not enough disk space ({free:,.0f} MiB free in {run_dir})"
    else:
        cause = f"{type(err).__name__}: {err}"
    return (f"could not save {name}: {cause}; {kept}.\n  Free some space, then resume with: "
            f"pricetune train --output-dir {run_dir} --resume")


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


class GracefulStop(TrainerCallback):
    """First Ctrl-C / SIGTERM: save a checkpoint at the next step boundary and stop. Second: exit now.

    Under a launcher the processes agree at every step end (one small all-reduce), so all of them
    save and stop at the same step even when the signal reaches them at different times."""

    # A terminal's Ctrl-C reaches the whole process group and torchrun then forwards a SIGTERM: one
    # request delivered twice. Only a signal after this many seconds counts as a second one.
    REPEAT_AFTER_S = 2.0

    def __init__(self):
        self.requested = None
        self._at = 0.0

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL if sig == signal.SIGTERM else signal.default_int_handler)

    def _handle(self, signum, frame):
        if self.requested is not None and time.monotonic() - self._at < self.REPEAT_AFTER_S:
            return
        if self.requested is not None:
            sys.stderr.write("\nsecond interrupt: exiting now without saving\n")
            os._exit(128 + signum)
        self.requested, self._at = signal.Signals(signum).name, time.monotonic()
        sys.stderr.write(f"\n{self.requested}: saving a checkpoint at the end of this step, then stopping "
                         "(interrupt again to exit at once)\n")

    def on_step_end(self, args, state, control, **kwargs):
        if dist.any_process(self.requested is not None):
            self.requested = self.requested or "a stop signal on another process"
            control.should_save = True
            control.should_training_stop = True
        return control


def find_checkpoint(run_dir: Path, which: str | None) -> str | None:
    """The checkpoint to resume from: a given path, or the newest complete one of the run."""
    from transformers.trainer_utils import get_last_checkpoint

    if which and which != "latest":
        p = Path(which)
        if not (p / "trainer_state.json").is_file():
            raise PricetuneError(f"{p} is not a complete checkpoint (no trainer_state.json)")
        return str(p)
    if not run_dir.is_dir():
        raise PricetuneError(f"nothing to resume: {run_dir} does not exist")
    last = get_last_checkpoint(str(run_dir))
    if last is None:
        raise PricetuneError(f"nothing to resume: {run_dir} has no checkpoint yet; start it again without --resume")
    return last


# ------------------------------------------------------------------------------------------------
# Step 5: SFTConfig


def resolve_optim(optim: str, device: str) -> tuple[str, str | None]:
    """The optimizer to use here, and a notice when the requested one cannot run on this device."""
    if device != "cuda" and (optim.startswith("paged_") or "8bit" in optim or optim.endswith("_bnb")):
        return CPU_OPTIM, f"optimizer {optim} needs CUDA; using {CPU_OPTIM} (same AdamW maths) on {device}"
    return optim, None


def _shared_args(cfg: RunConfig, run_dir: Path, precision: str, device: str, has_eval: bool) -> dict:
    """The training arguments both objectives take from the config."""
    optim, _ = resolve_optim(cfg.optim, device)
    per_device, accum = dist.split_batch(cfg.batch_size, cfg.grad_accum, dist.world_size())
    return dict(
        output_dir=str(run_dir),
        run_name=cfg.run_name,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=per_device,
        per_device_eval_batch_size=cfg.eval_batch_size or per_device,
        gradient_accumulation_steps=accum,
        learning_rate=cfg.learning_rate,
        warmup_steps=cfg.warmup_ratio,  # a float < 1 is read as a ratio (transformers >= 5)
        lr_scheduler_type=cfg.lr_scheduler,
        weight_decay=cfg.weight_decay,
        optim=optim,
        max_grad_norm=cfg.max_grad_norm,
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=cfg.eval_steps,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        gradient_checkpointing=cfg.gradient_checkpointing,
        report_to=cfg.report_to,
        seed=cfg.seed,
        # We push ourselves (hub.py) so that a failed push never stops local saving
        push_to_hub=False,
        dataloader_pin_memory=device == "cuda",
        # Under DDP every LoRA weight takes part in every step; searching for unused ones costs a
        # graph walk per step and breaks with gradient checkpointing
        ddp_find_unused_parameters=False,
        use_cpu=device == "cpu",
        disable_tqdm=False,
    )


def build_sft_config(cfg: RunConfig, run_dir: Path, precision: str, device: str, has_eval: bool):
    """Step 5: TRL's SFTConfig (generate objective)."""
    from trl import SFTConfig

    return SFTConfig(**_shared_args(cfg, run_dir, precision, device, has_eval), max_length=None)


def build_regress_args(cfg: RunConfig, run_dir: Path, precision: str, device: str, has_eval: bool):
    """transformers' TrainingArguments for the regress objective (no text, no SFT preparation)."""
    from transformers import TrainingArguments

    return TrainingArguments(**_shared_args(cfg, run_dir, precision, device, has_eval),
                             remove_unused_columns=False, prediction_loss_only=True)


# ------------------------------------------------------------------------------------------------
# Run directory outputs


class MetricsLogger(TrainerCallback):
    """Appends every log record (loss, lr, eval_loss, ...) with its step to metrics.jsonl."""

    def __init__(self, path: Path):
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and state.is_world_process_zero:
            record = {"step": state.global_step, "epoch": state.epoch, **logs}
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")


def write_model_card(run_dir: Path, cfg: RunConfig, summary: dict) -> None:
    hp = {k: getattr(cfg, k) for k in (
        "objective", "quantization", "lora_r", "lora_alpha", "lora_dropout", "target_modules", "epochs", "max_steps",
        "batch_size", "grad_accum", "learning_rate", "warmup_ratio", "lr_scheduler", "weight_decay",
        "optim", "max_grad_norm", "max_length", "seed")}
    if cfg.objective == "regress":
        hp.update(regress_loss=cfg.regress_loss, regress_pooling=cfg.regress_pooling, regress_layers=cfg.regress_layers,
                  regress_head_init=cfg.regress_head_init)
    rows = "\n".join(f"| {k} | {v} |" for k, v in hp.items())
    read = "the last prompt token" if cfg.regress_pooling == "last" else "the mean over the prompt's tokens"
    if cfg.regress_layers is not None:
        read += f" after the base's first {cfg.regress_layers} decoder layers (the rest are not used)"
    how = (f"a scalar head on {read} gives the price (regress objective: "
           "price = expm1(center + scale * output), `regression_head.json`)." if cfg.objective == "regress"
           else 'the adapter completes the price ("64.00").')
    card = f"""---
base_model: {cfg.base_model}
library_name: peft
tags: [pricetune, lora, price-prediction]
---
# {cfg.run_name}

A LoRA adapter that prices products from their descriptions, trained with
[pricetune](https://github.com/) from `{cfg.base_model}` on `{cfg.dataset}`.

Prompt: "What does this cost to the nearest dollar?", the item, then "Price is $"; {how}

| | |
|---|---|
| base model | {cfg.base_model} ({cfg.quantization}) |
| dataset | {cfg.dataset} ({summary['train_rows']} train rows, {summary['val_rows']} val rows) |
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
pricetune predict --run {run_dir} "Title: ...\\nCategory: ...\\nDescription: ..."
pricetune evaluate {run_dir}
```
"""
    (run_dir / "README.md").write_text(card, encoding="utf-8")


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.4f}"


# ------------------------------------------------------------------------------------------------
# The entry point


def plan(cfg: RunConfig) -> str:
    """What `train` would do, without loading anything heavy."""
    device = detect_device()
    precision = pick_precision(cfg.precision)
    optim, notice = resolve_optim(cfg.optim, device)
    push = "yes, to " + (cfg.hub_model_id or f"<HF_USER>/{cfg.run_name}") + (
        " (private)" if cfg.hub_private else " (public)") if cfg.push_to_hub else "no"
    targets = check_targets_without_weights(cfg.base_model, cfg.lora_targets)
    world = dist.world_size()
    per_device, accum = dist.split_batch(cfg.batch_size, cfg.grad_accum, world)
    sharded = dist.sharded_weights()
    lines = [
        f"model:     {cfg.base_model} ({cfg.quantization}), LoRA r={cfg.lora_r} alpha={cfg.lora_alpha} "
        f"on {', '.join(cfg.lora_targets)} ({targets})",
        f"objective: {cfg.objective}" + (
            f" (scalar head on the {cfg.regress_pooling} hidden state"
            + (f" of layer {cfg.regress_layers}" if cfg.regress_layers else "")
            + f", log price, {cfg.regress_loss} loss)"
            if cfg.objective == "regress"
            else " (SFT: the model writes the price)"),
        f"data:      {cfg.dataset} (val: first {cfg.val_size} rows"
        + (f", train: first {cfg.train_size} rows" if cfg.train_size else ", train: all rows")
        + f", max_length {cfg.max_length})",
        f"device:    {describe_device()}, precision {precision}, optimizer {optim}",
        f"processes: {world}" + (" (under a launcher: DDP, rank 0 writes)" if world > 1 else "")
        + (f", weights sharded by {sharded}" if sharded else ""),
        f"batch:     global {per_device * accum * world} = {per_device} per device x {accum} accumulation step(s)"
        f" x {world} process(es)",
        f"outputs:   {cfg.run_dir}/ (adapter, config.yaml, metrics.jsonl, summary.json, checkpoints)",
        f"push:      {push}",
    ]
    if notice:
        lines.append(f"notice:    {notice}")
    if sharded and cfg.fast:
        lines.append(f"notice:    the fast path is off under {sharded} (it applies the LM head outside the "
                     "wrapped forward, which sharded weights do not allow); TRL's stock loss is used")
    return "\n".join(lines)


def prepare_run_dir(cfg: RunConfig, overwrite: bool = False) -> Path:
    """A fresh run directory. One that holds a run, finished or interrupted, is never mixed into:
    it is refused unless `overwrite`, which empties it first."""
    run_dir = cfg.run_dir
    if run_dir.exists() and not run_dir.is_dir():
        raise PricetuneError(f"{run_dir} is a file, not a run directory; choose another --output-dir")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if not overwrite:
            state = "a finished run" if (run_dir / "summary.json").exists() else (
                "an interrupted run" if (run_dir / "config.yaml").exists() else "files")
            raise PricetuneError(
                f"{run_dir} already holds {state}; continue it with --resume, replace it with --overwrite, "
                "or choose another --output-dir")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(cfg.to_yaml(), encoding="utf-8")
    return run_dir


def peft_for_training(model, lora, cfg: RunConfig):
    """The base wrapped in LoRA for a plain Trainer, as TRL's SFTTrainer does it for SFT: input
    gradients for checkpointing, and on a quantized base the LoRA weights in bf16 (QLoRA)."""
    from peft import get_peft_model

    model = get_peft_model(model, lora)
    if cfg.gradient_checkpointing:
        model.enable_input_require_grads()
    if cfg.quantization != "none":
        for name, param in model.named_parameters():
            if param.requires_grad and "lora_" in name:
                param.data = param.data.to(torch.bfloat16)
    return model


def prepare_trainer(cfg: RunConfig, log: Callable[[str], None] = print, resuming: bool = False, trainer_cls=None,
                    overwrite: bool = False, fastpath: dict | None = None, seeded_order: bool = True):
    """Steps 1-5: everything up to a ready trainer. Returns (trainer, context dict).

    For the benchmarks: `trainer_cls` replaces the generate trainer (the reference side passes TRL's
    SFTTrainer); `fastpath` switches single fast-path changes off ({"no_mask": False, "attention":
    False, ...}); `seeded_order=False` keeps the stock batch order."""
    fastpath = dict(fastpath or {})
    drop_mask = fastpath.pop("no_mask", True)
    # 0. Hub login: nothing to do here; huggingface_hub reads HF_TOKEN (or its own login) on demand,
    #    and we never store the token.
    # 1. precision, device and optimizer
    device = detect_device()
    precision = pick_precision(cfg.precision)
    _, notice = resolve_optim(cfg.optim, device)
    if notice:
        log(f"notice: {notice}")

    # 2. data: validated before any weights are loaded
    splits, bad = load_splits(cfg.dataset, cfg.val_size, cfg.train_size, cfg.on_bad_rows)
    if bad:
        log(f"skipped {sum(bad.counts.values())} invalid row(s): {bad.summary()}")

    # 3. tokenizer, tokenized splits (too-long prompts fail here, still before the weights), base
    tokenizer = load_tokenizer(cfg.base_model, padding_side="right")
    val_rows = splits.get("val", [])[: cfg.val_size]
    regress = cfg.objective == "regress"
    scale = None
    if regress and resuming and (cfg.run_dir / HEAD_FILE).is_file():
        scale = PriceScale.load(cfg.run_dir)  # the run's own: a probe-initialised head moved the center off the median
    elif regress:
        scale = PriceScale.fit([r["price"] for r in splits["train"]], cfg.regress_loss, cfg.regress_pooling,
                               cfg.regress_layers)

    def tokenize(rows: list[dict]):
        if regress:
            return tokenize_regression_rows(tokenizer, rows, cfg.max_length, scale)
        return tokenize_rows(tokenizer, rows, cfg.max_length)

    if dist.launched():
        # Rank 0 makes the run directory and tokenizes into its cache; the others read that cache
        run_dir = cfg.run_dir if resuming else dist.on_main(lambda: prepare_run_dir(cfg, overwrite))
        train_ds = dist.main_first(lambda: cached(run_dir, "train", tokenize, splits["train"], cfg))
        val_ds = dist.main_first(lambda: cached(run_dir, "val", tokenize, val_rows, cfg)) if val_rows else None
    else:
        train_ds = tokenize(splits["train"])
        val_ds = tokenize(val_rows) if val_rows else None
        run_dir = cfg.run_dir if resuming else prepare_run_dir(cfg, overwrite)
    log(f"run directory: {run_dir}")
    # Seeded before the model exists: a regress head is initialised as it loads, and TRL creates the
    # LoRA weights before Trainer seeds
    from transformers import set_seed

    set_seed(cfg.seed)
    model = load_base_model(cfg.base_model, cfg.quantization, precision, cfg.bnb_4bit_quant_type, cfg.double_quant,
                            objective=cfg.objective, pad_token_id=tokenizer.pad_token_id,
                            quant_storage=cfg.bnb_4bit_quant_storage, num_layers=cfg.regress_layers)
    check_targets(model, cfg.lora_targets)
    keep_one_4bit_layout(model)
    if regress and cfg.regress_head_init == "probe" and not resuming:
        # LoRA starts as a no-op, so the probe fit on the bare base is the wrapped model's first answer
        probed, figures = init_head_from_probe(model, tokenizer, splits["train"], val_rows, scale, cfg.max_length,
                                               cfg.eval_batch_size or cfg.batch_size, progress=dist.is_main())
        log(f"head initialised from a ridge probe on the train split: alpha {figures['alpha']:g}, "
            f"val MAE ${figures['val_mae']:,.2f} before fine-tuning")
        train_ds, val_ds = (restandardise(ds, scale, probed) if ds is not None else None for ds in (train_ds, val_ds))
        scale = probed
        if dist.is_main():
            (run_dir / "head_init.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    set_seed(cfg.seed)  # 4. LoRA, 5. SFTConfig, from the same state whatever loading drew
    lora = build_lora_config(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets, cfg.objective)
    callbacks = [MetricsLogger(run_dir / "metrics.jsonl")]
    if regress:
        if dist.is_main():
            scale.save(run_dir)
        model = peft_for_training(model, lora, cfg)
        trainer = RegressionTrainer(
            model=model, args=build_regress_args(cfg, run_dir, precision, device, has_eval=val_ds is not None),
            train_dataset=train_ds, eval_dataset=val_ds, data_collator=RegressionCollator(tokenizer.pad_token_id),
            processing_class=tokenizer, callbacks=callbacks, loss_kind=cfg.regress_loss, pooling=cfg.regress_pooling,
            head_learning_rate=cfg.head_learning_rate,
        )
    else:
        args = build_sft_config(cfg, run_dir, precision, device, has_eval=val_ds is not None)
        own = {} if trainer_cls is not None else dict(fast=cfg.fast and not dist.sharded_weights(), drop_mask=drop_mask, seeded_order=seeded_order)
        trainer = (trainer_cls or PricetuneTrainer)(
            model=model, args=args, train_dataset=train_ds, eval_dataset=val_ds, processing_class=tokenizer,
            peft_config=lora, callbacks=callbacks, **own,
        )
    if cfg.fast and trainer_cls is None and not dist.sharded_weights():
        speed_up(trainer.model, **fastpath)
    context = dict(run_dir=run_dir, tokenizer=tokenizer, device=device, precision=precision, bad=bad,
                   train_rows=len(train_ds), val_rows=len(val_rows))
    return trainer, context


def cached(run_dir: Path, split: str, tokenize: Callable[[list[dict]], Any], rows: list[dict], cfg: RunConfig):
    """Tokenized rows, kept in <run_dir>/.cache/ so that the processes of a launched run tokenize
    once. The key covers what changes the tokens, so a stale cache is never read."""
    import hashlib

    from datasets import load_from_disk

    h = hashlib.sha256(json.dumps([cfg.base_model, cfg.objective, cfg.regress_loss, cfg.max_length]).encode())
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


class OpeningLoss(TrainerCallback):
    """The validation loss before the first step: logged, and kept in `path` for a resumed run."""

    def __init__(self, path: Path | None, log: Callable[[str], None]):
        self.path, self.log, self.loss = path, log, None

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.loss is None and state.global_step == 0 and metrics and "eval_loss" in metrics:
            self.loss = metrics["eval_loss"]
            self.log(f"validation loss before training: {self.loss:.4f}")
            if self.path is not None:
                self.path.write_text(json.dumps({"eval_loss": self.loss}) + "\n")


class Interrupted(PricetuneError):
    """Training stopped on a signal after saving a checkpoint."""


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
    trainer, ctx = prepare_trainer(cfg, log, resuming=checkpoint is not None, overwrite=overwrite)
    run_dir, has_val = ctx["run_dir"], ctx["val_rows"] > 0
    stop = GracefulStop()
    trainer.add_callback(stop)
    if cfg.push_to_hub and cfg.hub_strategy == "every_save" and main:
        pusher = hub.CheckpointPusher(cfg, log)
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
    start = time.perf_counter()
    stop.install()
    try:
        trainer.train(resume_from_checkpoint=checkpoint)
    except torch.cuda.OutOfMemoryError:
        raise PricetuneError(oom_advice(cfg) + f"\n  Checkpoints so far are in {run_dir}.") from None
    finally:
        stop.uninstall()
    seconds = time.perf_counter() - start
    if stop.requested:
        raise Interrupted(
            f"stopped on {stop.requested} at step {trainer.state.global_step}; checkpoint saved in {run_dir}.\n"
            f"  resume with: pricetune train --output-dir {run_dir} --resume"
        )
    final = trainer.evaluate()["eval_loss"] if has_val else None
    trainer.save_model(str(run_dir))  # adapter_config.json + adapter_model.safetensors (rank 0 writes)
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
        "initial_eval_loss": opening.loss,
        "final_eval_loss": final,
        "train_tokens": tokens,
        "train_seconds": round(seconds, 2),
        "train_tokens_per_second": round(tokens / seconds, 1) if seconds > 0 else None,
        "world_size": args.world_size,
        "per_device_batch_size": args.per_device_train_batch_size,
        "grad_accum": args.gradient_accumulation_steps,
        "global_batch_size": args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size,
        "precision": ctx["precision"],
        "device": ctx["device"],
        "fast": cfg.fast,
        "objective": cfg.objective,
        "pushed_to": None,
    }
    if not main:
        return summary
    shutil.rmtree(run_dir / ".cache", ignore_errors=True)  # tokenized data, for the full preset ~0.7 GB
    ctx["tokenizer"].save_pretrained(str(run_dir))
    write_model_card(run_dir, cfg, summary)

    # 7. push the adapter (private); a failure never loses the local run
    if pusher is not None:
        pusher.wait()  # checkpoint pushes still in flight land before the final one
    if cfg.push_to_hub:
        summary["pushed_to"] = hub.push_after_training(run_dir, cfg, log)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
