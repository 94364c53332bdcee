"""Step time of each fast-path change, measured interleaved in one process so machine drift hits all
variants alike (bench/studies/ablation.py runs them minutes apart, one process each, which suits peak memory
but lets a shared 2-core machine's speed drift blur changes of a few percent).

    python bench/studies/interleaved.py bench/results/interleaved-cpu.json [--repeats 4]
    python bench/studies/interleaved.py --only-final --repeats 0 --profile    # torch.profiler table of pricetune's step

One model per variant (the fast loss, no gradient checkpointing, fast-path changes switched on
cumulatively), the same 3 batches of 16 x <=128 tokens from the amazon items (or the demo data), bf16
autocast as `pricetune train` runs on this CPU; a step is forward + backward (the optimizer update is
the same for every variant and is left out). Reports the median step time per variant.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from pricetune.bench.harness import LITE_LORA, bench_dataset
from shared import backward_step, profile_table, report_json, step_times
from pricetune.config import resolve_config
from pricetune.modeling import pick_precision

from pricetune.training import completion_loss, prepare_trainer

STEPS = ["no_mask", "attention", "dropout", "rms_norm", "swiglu"]


def build(tmp: str, switches: dict, precision: str):
    torch.manual_seed(42)
    cfg = resolve_config("lite", overrides=dict(
        base_model="smollm2-135m", dataset=bench_dataset(), output_dir=tmp, max_steps=3, batch_size=16,
        max_length=128, val_size=0, precision=precision, quantization="4bit", push_to_hub=False,
        train_size=256, fast=True, gradient_checkpointing=False, **LITE_LORA))
    trainer, _ = prepare_trainer(cfg, log=lambda _: None, fastpath={k: switches[k] for k in STEPS})
    trainer.model.train()
    return trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", help="JSON file to write")
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--only-final", action="store_true", help="Build only the variant `pricetune train` runs.")
    ap.add_argument("--profile", action="store_true",
                    help="Print torch.profiler's table for 2 steps of the last variant.")
    ns = ap.parse_args()
    precision = pick_precision("auto")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    variants, switches = {}, {k: False for k in STEPS}
    names = ["fast loss, no checkpointing (all changes below off)"]
    specs = [dict(switches)]
    for k in STEPS:
        switches[k] = True
        names.append(f"+ {k}")
        specs.append(dict(switches))
    if ns.only_final:
        names, specs = names[-1:], specs[-1:]
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, spec) in enumerate(zip(names, specs)):
            variants[name] = (spec, build(f"{tmp}/{i}", spec, precision))
        batches = [b for _, b in zip(range(3), next(iter(variants.values()))[1].get_train_dataloader())]
        times = {name: [] for name in names}
        for rep in range(ns.repeats + 1):  # the first round warms up
            for name, (spec, trainer) in variants.items():
                model = trainer.model
                start = time.perf_counter()
                for b in batches:
                    backward_step(model, lambda m, x: completion_loss(m, x, drop_mask=spec["no_mask"])[0], b, dtype)
                if rep:
                    times[name].append((time.perf_counter() - start) / len(batches))
        if ns.profile:
            print(profile_table(lambda: [backward_step(trainer.model, lambda m, x: completion_loss(m, x)[0], b, dtype)
                                         for b in batches[:2]]))
    if ns.repeats:
        report_json(step_times(times, names[0]), ns.out)


if __name__ == "__main__":
    main()
