"""Step time of the amazon-regress recipe eager against compiled, measured interleaved in one process
so the machine's drift hits every variant alike; and what compiling costs.

    python bench/studies/compile.py bench/results/compile-cpu.json [--batches 4] [--repeats 3]
    python bench/studies/compile.py bench/results/compile-dropout-cpu.json --lora-dropout 0.1 --variants eager,layers

Variants, each a model built by `pricetune train`'s own preparation from configs/amazon-regress.yaml
(the amazon items when ../shared/data/amazon-items is there, else the demo data):
  - eager: as training runs without `torch_compile`.
  - layers: each decoder layer compiled in place, as `torch_compile: true` does it
    (`pricetune.training.common.compile_layers`, PyTorch's regional compilation).
  - whole model: `torch.compile(model, backend="inductor")`, what transformers' Trainer does under its
    own `torch_compile` argument (through accelerate), kept here for the comparison.
The same batches of 16 for all, of different lengths as length-grouped training gives them, bf16
autocast as training runs on this CPU. A step is forward + backward; the optimizer update, the same
for all, is left out. Each variant compiles into its own empty kernel cache, as a first run does.
Reports each variant's median step time after the first round, its speed against eager, the first
round's time (for a compiled variant: compiling, at each new shape until the shapes turn dynamic),
and the steps a run must take before compiling has paid for itself. `--lora-dropout` times every
variant with that LoRA dropout instead of the config's 0 (the presets' 0.1 draws a mask for each
adapted projection's input at every step).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch

from pricetune.bench.harness import bench_dataset
from shared import backward_step, regress_trainer, report_json, step_times
from pricetune.modeling import pick_precision
from pricetune.training.common import compile_layers

VARIANTS = ("eager", "layers", "whole model")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", help="JSON file to write")
    ap.add_argument("--batches", type=int, default=4, help="Batches of 16 timed per round (each its own length).")
    ap.add_argument("--repeats", type=int, default=3, help="Timed rounds after the first (compiling) round.")
    ap.add_argument("--lora-dropout", type=float, default=None, help="LoRA dropout for every variant (default: the config's).")
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help=f"Comma-separated, eager first: {', '.join(VARIANTS)}.")
    ns = ap.parse_args()
    names = [v.strip() for v in ns.variants.split(",")]
    if names[0] != "eager" or not set(names) <= set(VARIANTS) or len(set(names)) < 2:
        ap.error(f"--variants: eager first, then one or both of {VARIANTS[1:]}")
    overrides = {} if ns.lora_dropout is None else {"lora_dropout": ns.lora_dropout}
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(pick_precision("auto"))
    dataset = bench_dataset()
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {name: regress_trainer(f"{tmp}/{name}", dataset, **overrides) for name in names}
        models = {name: trainer.model for name, trainer in trainers.items()}
        if "layers" in models:
            compile_layers(models["layers"])
        if "whole model" in models:
            models["whole model"] = torch.compile(models["whole model"], backend="inductor")
        batches = [b for _, b in zip(range(ns.batches), trainers["eager"].get_train_dataloader())]
        lengths = [int(b["input_ids"].shape[1]) for b in batches]
        first, times = {}, {name: [] for name in models}
        for rep in range(ns.repeats + 1):
            for k, (name, model) in enumerate(models.items()):
                if not rep:  # inductor reads the cache folder when it compiles
                    os.environ["TORCHINDUCTOR_CACHE_DIR"] = f"{tmp}/inductor-{k}"
                start = time.perf_counter()
                for b in batches:
                    backward_step(model, trainers[name].compute_loss, b, dtype)
                seconds = time.perf_counter() - start
                if rep:
                    times[name].append(seconds / len(batches))
                else:
                    first[name] = seconds
                print(f"round {rep} {name}: {seconds / len(batches):.2f} s a step", flush=True)
    eager = statistics.median(times["eager"])
    payback = {}
    for name in names[1:]:
        saved = eager - statistics.median(times[name])
        payback[name] = (first[name] - first["eager"]) / saved if saved > 0 else None
    report_json({"dataset": dataset, "batch_lengths": lengths,
                 "lora_dropout": trainers["eager"].model.peft_config["default"].lora_dropout,
                 "variants": step_times(times, "eager", first_round_seconds=first,
                                        steps_to_pay_back_compile=payback | {"eager": None})}, ns.out)


if __name__ == "__main__":
    main()
