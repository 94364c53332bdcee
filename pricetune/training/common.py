"""What the trainers of both objectives share: checkpoints written atomically, a batch order a
resume reproduces, the checkpoint to resume from, and the training arguments taken from the config
(the reference's step 5)."""

from __future__ import annotations

import errno
import inspect
import os
import shutil
from pathlib import Path

import torch
from transformers import TrainingArguments
from transformers.trainer_pt_utils import LengthGroupedSampler

from .. import distributed as dist
from ..config import RunConfig
from ..errors import PricetuneError

# transformers renamed gradient_checkpointing to activation_checkpointing after 5.17 (the GPU machines'
# image); either release reads the one it has
CHECKPOINTING = ("activation_checkpointing" if "activation_checkpointing" in inspect.signature(TrainingArguments).parameters
                 else "gradient_checkpointing")

CPU_OPTIM = "adamw_torch"


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


def resolve_optim(optim: str, device: str) -> tuple[str, str | None]:
    """The optimizer to use here, and a notice when the requested one cannot run on this device."""
    if device != "cuda" and (optim.startswith("paged_") or "8bit" in optim or optim.endswith("_bnb")):
        return CPU_OPTIM, f"optimizer {optim} needs CUDA; using {CPU_OPTIM} (same AdamW maths) on {device}"
    return optim, None


def check_compiler(torch_compile: bool, device: str) -> None:
    """Refuse torch_compile on a CPU without a C++ compiler, before the data and weights load: inductor
    builds its CPU kernels with one, and would otherwise fail at the first step."""
    candidates = [os.environ.get("CXX"), "c++", "g++", "clang++"]
    if torch_compile and device == "cpu" and not any(shutil.which(c) for c in candidates if c):
        raise PricetuneError("torch_compile on a CPU needs a C++ compiler (inductor builds its kernels with one): "
                             "install g++ (or set CXX to one), or turn compiling off (--no-torch-compile)")


def compile_notice(cfg: RunConfig, device: str) -> str | None:
    """What to tell a user who compiles with LoRA dropout on a CPU: the step got slower, not faster.
    Measured, not yet explained (docs/PERFORMANCE.md, "Compiled decoder layers")."""
    if cfg.torch_compile and cfg.lora_dropout > 0 and device == "cpu":
        return (f"LoRA dropout {cfg.lora_dropout:g} with compiled layers: on a CPU a step ran slower than eager "
                "(python bench/studies/compile.py --lora-dropout 0.1: 0.76x; without dropout 1.93x); "
                "--lora-dropout 0 or --no-torch-compile")
    return None


def compile_layers(model) -> None:
    """torch_compile: PyTorch's regional compilation. Each decoder layer is compiled in place with
    inductor (`nn.Module.compile`); the layers are alike, so compiling costs about one layer's time
    (under a minute here, where the whole model took four: bench/studies/compile.py), the weights keep their
    names for saving and loading, and the embeddings, head and loss run as they are."""
    # A layer's graph has variants dynamo compiles one by one: training and evaluation (grad mode),
    # the first layer (its input needs no gradient) and the rest, and the pieces around transformers'
    # hidden-state capture. Past the default limit of 8 dynamo quietly runs new variants eagerly (a
    # real run slowed from 1.9 to 3.2-3.5 s a step); shapes are dynamic from the start, not after a
    # second length, which saves a variant per kind.
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    inner = base.base_model  # LlamaModel, Gemma3TextModel, BertModel...
    for layer in inner.layers if hasattr(inner, "layers") else inner.encoder.layer:
        layer.compile(backend="inductor", dynamic=True)


def keep_compile_cache_in(run_dir: Path) -> None:
    """torch.compile's kernels cached in the run's own .cache/ (kept for a resume, removed when the run
    finishes) instead of the system's temp folder, so a run writes only under its directory. A cache
    the user chose (TORCHINDUCTOR_CACHE_DIR set to another folder) is left as it is; importing
    inductor writes its default there, which does not count as a choice. Inductor reads the variable
    when it compiles, and its compile workers inherit it."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    chosen = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if chosen is None or os.path.abspath(chosen) == os.path.abspath(default_cache_dir()):
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(run_dir).resolve() / ".cache" / "inductor")


def shared_args(cfg: RunConfig, run_dir: Path, precision: str, device: str, has_eval: bool) -> dict:
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
        **{CHECKPOINTING: cfg.gradient_checkpointing},
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


def resolve_fast(cfg, device: str) -> tuple[bool, bool, str]:
    """(fast path on, compile on, why): the fast path and compiling were measured on CPUs only, so on
    another device they stay off unless the config asks for the fast path itself (`fast: true`)."""
    if cfg.fast is not None:
        return cfg.fast, cfg.torch_compile, "as the config sets it"
    if device == "cpu":
        return True, cfg.torch_compile, "auto: measured on CPUs (docs/PERFORMANCE.md)"
    return False, False, (f"auto: not yet measured on {device}, so TRL's stock loss and layers, not compiled "
                          "(--fast turns the fast path and the config's compiling on)")

