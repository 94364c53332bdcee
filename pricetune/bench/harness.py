"""Side-by-side benchmarks: the reference recipe against pricetune, same model, data, batch and seed.

    pricetune bench train --steps 8 --batch-size 16 --json bench/results/train.json
    pricetune bench eval --limit 64 --run RUN_DIR --json bench/results/eval.json
    pricetune bench eval --limit 0 --run REGRESS_RUN --quantization none --json bench/results/merge.json

Data: ../shared/data/amazon-items when it is beside the checkout, else the embedded demo data.

train: each side runs in its own child process (so `peak_rss_mb` is that side's own peak), one after
the other, from this one command. Both get the same tokenized batches (pricetune's tokenization,
so the losses are comparable step by step), model, LoRA (lite: r 32, alpha 64, dropout 0.1,
attention), optimizer settings, precision and seed.
  - reference: TRL SFTTrainer + PEFT exactly as the reference lite preset (gradient checkpointing,
    stock loss with full-vocabulary logits and per-step entropy/accuracy); only batch size, steps
    and precision are shared with pricetune, and paged_adamw_32bit becomes adamw_torch off CUDA.
  - pricetune: `pricetune.training.prepare_trainer` on the same values with pricetune's fast path.
Tokens/s count real (non-padding) tokens, after the first (warm-up) step. peak_rss_mb is the peak
resident memory while training runs (loading, the same on both sides, is reported apart).

MFU: model FLOPs per real token = 4 x (parameters of the transformer blocks' linear layers) — 2 for
the forward pass and 2 for the backward pass's input gradients (the frozen base needs no weight
gradients) — plus 6 x LoRA parameters. The LM head, attention scores and recomputation are not
counted. Peak: a square matmul in the training precision, measured in the same run.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import statistics
import sys
import time
from pathlib import Path

from transformers import TrainerCallback

# Looked up from the current directory (a checkout beside ../shared), never from the package's own
# location: an installed pricetune has no repository around it
AMAZON = Path("..") / "shared" / "data" / "amazon-items"
LITE_LORA = dict(lora_r=32, lora_alpha=64, lora_dropout=0.1, target_modules="attention")


def bench_dataset() -> str:
    """../shared/data/amazon-items (from the current directory) when it is there, else the embedded
    demo data; the choice is printed and recorded in the result."""
    chosen = str(AMAZON) if AMAZON.is_dir() else "demo"
    print(f"bench dataset: {chosen}" + ("" if chosen != "demo" else f" ({AMAZON} not found; pass --dataset)"),
          file=sys.stderr)
    return chosen


def gemm_peak_gflops(precision: str, n: int = 2048, repeats: int = 5) -> float:
    import torch

    dtype = torch.bfloat16 if precision == "bf16" else torch.float16 if precision == "fp16" else torch.float32
    device = "cuda" if torch.cuda.is_available() else "cpu"
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    best = float("inf")
    for _ in range(repeats + 1):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def flops_per_token(model) -> float:
    import torch

    body = 0
    for name, module in model.named_modules():
        if "lora_" in name or name.endswith("base_layer") or ".layers." not in name:
            continue
        layer = getattr(module, "base_layer", module)  # a LoRA-wrapped linear counts its base
        if isinstance(layer, torch.nn.Linear):
            body += layer.in_features * layer.out_features
    lora = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    return 4 * body + 6 * lora


# ------------------------------------------------------------------------------------------------
# train


class StepTimer(TrainerCallback):
    """Each step's wall time, loss and real-token count of `trainer`'s training."""

    def __init__(self, trainer):
        self.times, self.tokens, self.losses = [], [], []
        self.trainer = trainer

    def on_step_begin(self, args, state, control, **kw):
        self.t0, self.tok0 = time.perf_counter(), self.trainer._total_train_tokens

    def on_step_end(self, args, state, control, **kw):
        self.times.append(time.perf_counter() - self.t0)
        self.tokens.append(int(self.trainer._total_train_tokens - self.tok0))

    def on_log(self, args, state, control, logs=None, **kw):
        if logs and "loss" in logs:
            self.losses.append(float(logs["loss"]))


class PeakRSS:
    """Peak resident memory while the block runs (sampled every 20 ms), so model loading, which
    both sides share, does not mask what training itself needs."""

    def __enter__(self):
        import threading

        import psutil

        self.mb, self._stop = 0.0, threading.Event()
        proc = psutil.Process()
        self.start_mb = proc.memory_info().rss / 2**20

        def sample():
            while not self._stop.is_set():
                self.mb = max(self.mb, proc.memory_info().rss / 2**20)
                self._stop.wait(0.02)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _side(kind: str, opts: dict, out: mp.Queue) -> None:
    import torch

    from pricetune.config import resolve_config
    from pricetune.training import prepare_trainer

    torch.manual_seed(opts["seed"])
    accum = opts.get("grad_accum", 1)
    overrides = dict(
        base_model=opts["model"], dataset=opts["dataset"], output_dir=os.path.join(opts["tmp"], kind),
        max_steps=opts["steps"], batch_size=opts["batch_size"], grad_accum=accum, max_length=opts["max_length"],
        val_size=0, precision=opts["precision"], quantization=opts["quantization"], learning_rate=1e-4,
        seed=opts["seed"], push_to_hub=False, logging_steps=1, save_steps=10_000, eval_steps=10_000,
        train_size=opts["steps"] * opts["batch_size"] * accum * 4, objective=opts.get("objective", "generate"),
        **(opts.get("lora") or LITE_LORA),
    )
    if kind == "reference":
        overrides.update(fast=False, gradient_checkpointing=True)
    else:
        overrides.update(fast=True, gradient_checkpointing=False)
        overrides.update(opts.get("pricetune_overrides") or {})  # for the per-change ablation
    cfg = resolve_config("lite", overrides=overrides)
    from trl import SFTTrainer

    # the reference side runs TRL's stock trainer class, untouched. The pricetune side takes the stock
    # length-grouped order, so both sides see the same batches (pricetune's own order, seeded per
    # epoch for exact resume, draws a different permutation; it costs nothing per step), and for the
    # ablation the fast-path switches it is given
    if kind == "reference":
        trainer, ctx = prepare_trainer(cfg, log=lambda _: None, trainer_cls=SFTTrainer)
    else:
        trainer, ctx = prepare_trainer(cfg, log=lambda _: None, fastpath=opts.get("fastpath"), seeded_order=False)
    timer = StepTimer(trainer)
    trainer.add_callback(timer)
    trainer.args.disable_tqdm = True
    peak = PeakRSS()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    with peak:
        trainer.train()
    times, tokens = timer.times[1:], timer.tokens[1:]
    out.put({
        "tokens_per_second": sum(tokens) / sum(times),
        "step_seconds": [round(t, 3) for t in timer.times],
        "peak_rss_mb": peak.mb,
        "rss_at_train_start_mb": peak.start_mb,
        "train_rss_growth_mb": peak.mb - peak.start_mb,
        "peak_rss_mb_whole_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None,
        "losses": timer.losses,
        "flops_per_token": flops_per_token(trainer.model),
        "trainer": type(trainer).__name__,
        "gradient_checkpointing": cfg.gradient_checkpointing,
    })


def _run_side(kind: str, opts: dict) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_side, args=(kind, opts, q))
    p.start()
    import queue

    while True:
        try:
            result = q.get(timeout=5)
            break
        except queue.Empty:
            if not p.is_alive():
                raise RuntimeError(f"the {kind} side died (exit code {p.exitcode}); see its output above")
    p.join()
    return result


def side_by_side(ref: dict, fast: dict) -> dict:
    """pricetune's side against the reference's over the same batches: speed, and the losses' largest
    relative difference step by step."""
    diffs = [abs(a - b) / abs(a) for a, b in zip(ref["losses"], fast["losses"]) if a]
    return {"speedup": fast["tokens_per_second"] / ref["tokens_per_second"],
            "max_rel_loss_diff": max(diffs) if diffs else None}


def bench_train(opts: dict) -> dict:
    import tempfile

    from pricetune.modeling import pick_precision

    opts = dict(opts)
    opts["precision"] = pick_precision(opts.get("precision", "auto"))
    with tempfile.TemporaryDirectory() as tmp:
        opts["tmp"] = tmp
        ref = _run_side("reference", opts)
        fast = _run_side("pricetune", opts)
    peak = gemm_peak_gflops(opts["precision"])
    achieved = fast["tokens_per_second"] * fast["flops_per_token"] / 1e9
    return {
        "what": "train", "model": opts["model"], "dataset": opts["dataset"], "steps": opts["steps"],
        "batch_size": opts["batch_size"], "max_length": opts["max_length"], "precision": opts["precision"],
        "quantization": opts["quantization"], "lora": LITE_LORA, "seed": opts["seed"],
        "reference": ref, "pricetune": fast, **side_by_side(ref, fast),
        "memory_ratio": fast["peak_rss_mb"] / ref["peak_rss_mb"],
        "train_memory_growth_ratio": fast["train_rss_growth_mb"] / max(ref["train_rss_growth_mb"], 1e-9),
        "gemm_peak_gflops": peak,
        "achieved_gflops": achieved,
        "mfu": achieved / peak,
    }


# ------------------------------------------------------------------------------------------------
# eval


def bench_eval(opts: dict) -> dict:
    import torch

    from pricetune.data import encode_prompt, load_rows
    from pricetune.inference import generate_prices, load_model
    from pricetune.metrics import parse_price

    lm = load_model(run=opts.get("run"), base_model=None if opts.get("run") else opts["model"],
                    quantization=opts["quantization"], precision=opts.get("precision", "auto"), merge=False)
    if lm.objective == "regress":
        return bench_merge(opts, lm)
    splits, _ = load_rows(opts["dataset"])
    prompts = [r["prompt"] for r in splits["test"][: opts["limit"] or None]]
    tok, model = lm.tokenizer, lm.model

    # reference: the course's loop, one item at a time, max_new_tokens 8, same (truncated) prompts
    start = time.perf_counter()
    ref_prices = []
    with torch.inference_mode():
        for p in prompts:
            ids = torch.tensor([encode_prompt(tok, p, lm.max_length)])
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=8,
                                 do_sample=False, pad_token_id=tok.pad_token_id)
            ref_prices.append(parse_price(tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)))
    ref_seconds = time.perf_counter() - start

    start = time.perf_counter()
    fast = generate_prices(model, tok, prompts, lm.max_length, batch_size=opts["eval_batch_size"])
    fast_seconds = time.perf_counter() - start
    same = sum(a == b for a, (_, b) in zip(ref_prices, fast))
    floor_seconds = prefill_only_seconds(model, tok, prompts, lm.max_length, opts["eval_batch_size"])
    return {
        "what": "eval", "model": lm.label, "dataset": opts["dataset"], "items": len(prompts),
        "batch_size": opts["eval_batch_size"],
        "reference": {"items_per_second": len(prompts) / ref_seconds, "seconds": ref_seconds},
        "pricetune": {"items_per_second": len(prompts) / fast_seconds, "seconds": fast_seconds},
        "prefill_only": {"items_per_second": len(prompts) / floor_seconds, "seconds": floor_seconds},
        "speedup": ref_seconds / fast_seconds,
        "speedup_ceiling": ref_seconds / floor_seconds,
        "agreement": same / len(prompts),
    }


def bench_merge(opts: dict, lm) -> dict:
    """A regress run priced two ways, passes alternating so the machine's drift hits both alike: the
    LoRA adapter beside the base, as it trained, and merged into the base's weights, as `load_model`
    prices by default. Rows of the val split (a choice of setting is made on val), with each side's
    MAE beside the price change merging makes."""
    import copy
    import dataclasses

    from pricetune.data import load_rows
    from pricetune.errors import PricetuneError
    from pricetune.metrics import compute_metrics

    if opts["quantization"] != "none":
        raise PricetuneError("bench eval of a regress run compares its adapter with the adapter merged into "
                             "the base, which needs an unquantized base: add --quantization none")
    splits, _ = load_rows(opts["dataset"])
    if not splits.get("val"):  # each side's MAE is a score: never on test, which only `evaluate` scores (and counts)
        raise PricetuneError(f"bench eval of a regress run scores on the val split; {opts['dataset']} has none")
    split = "val"
    rows = splits[split][: opts["limit"] or None]
    prompts, truths = [r["prompt"] for r in rows], [float(r["completion"]) for r in rows]
    sides = {"adapter": lm, "merged": dataclasses.replace(lm, model=copy.deepcopy(lm.model).merge_and_unload(),
                                                                 merged=True)}
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    prices: dict[str, list[float]] = {}
    for _ in range(max(1, opts["repeats"])):
        for name, side in sides.items():
            start = time.perf_counter()
            prices[name] = [p for _, p in side.price(prompts, batch_size=opts["eval_batch_size"])]
            seconds[name].append(time.perf_counter() - start)
    change = [abs(m - a) / max(a, 1e-9) for a, m in zip(prices["adapter"], prices["merged"])]
    out = {"what": "eval (regress: adapter beside the base against merged into it)", "model": lm.label,
           "dataset": opts["dataset"], "split": split, "items": len(prompts),
           "batch_size": opts["eval_batch_size"], "repeats": len(seconds["adapter"])}
    for name in sides:
        median = statistics.median(seconds[name])
        out[name] = {"items_per_second": len(prompts) / median, "seconds": seconds[name],
                     "mae": compute_metrics(truths, prices[name])["mae"]}
    out["speedup"] = statistics.median(seconds["adapter"]) / statistics.median(seconds["merged"])
    out["price_change"] = {"mean_relative": sum(change) / len(change), "max_relative": max(change)}
    return out


def prefill_only_seconds(model, tokenizer, prompts: list[str], max_length: int, batch_size: int) -> float:
    """Time for one forward pass over every prompt, batched and sorted as pricetune batches them, the
    LM head at the last position only: work any exact greedy decoder has to do before its first
    price digit, so reference time / this bounds the speedup batching can give on this machine."""
    import torch

    from pricetune.data import encode_prompt, make_prompt
    from pricetune.inference import left_padded

    device = next(model.parameters()).device
    encoded = sorted((encode_prompt(tokenizer, make_prompt(p), max_length) for p in prompts), key=len, reverse=True)
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(encoded), batch_size):
            input_ids, attention_mask = left_padded(tokenizer, encoded[i:i + batch_size], device)
            model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=1)
    return time.perf_counter() - start
