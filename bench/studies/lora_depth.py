"""Step time of the amazon-regress recipe with LoRA in all decoder layers against LoRA in the top N
only (`lora_layers: N`), measured interleaved in one process so the machine's drift hits every variant
alike. The option lost on val and left pricetune: run this at commit 6403d8b, the last that has it.

    python bench/studies/lora_depth.py bench/results/lora-depth-cpu.json --layers 30 20 15 [--repeats 3]
    python bench/studies/lora_depth.py --layers 30 --repeats 0 --profile   # torch.profiler table of a step

One model per variant, built by `pricetune train`'s own preparation from configs/amazon-regress.yaml
(the amazon items when ../shared/data/amazon-items is there, else the demo data); the same batches of
16 for every variant, bf16 autocast as training runs on this CPU. A step is forward + backward (the
optimizer update, over fewer weights with fewer layers, is left out). Below the lowest adapted layer nothing needs
a gradient, so autograd stops there: the layers below run forward only. Reports the median step time
per variant and its speed against the first.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from pricetune.bench.harness import bench_dataset
from shared import backward_step, profile_table, regress_trainer, report_json, step_times
from pricetune.modeling import pick_precision


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", help="JSON file to write")
    ap.add_argument("--layers", type=int, nargs="+", default=[30, 20, 15],
                    help="LoRA in the top N decoder layers, one variant per N (the base has 30: all of them).")
    ap.add_argument("--batches", type=int, default=3, help="Batches of 16 timed per round.")
    ap.add_argument("--repeats", type=int, default=3, help="Timed rounds (after one warm-up round).")
    ap.add_argument("--profile", action="store_true",
                    help="Print torch.profiler's table for 2 steps of the first variant.")
    ns = ap.parse_args()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(pick_precision("auto"))
    dataset = bench_dataset()
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {n: regress_trainer(f"{tmp}/{n}", dataset, lora_layers=n) for n in ns.layers}
        first = next(iter(trainers.values()))
        batches = [b for _, b in zip(range(ns.batches), first.get_train_dataloader())]
        tokens = sum(int(b["attention_mask"].sum()) for b in batches)
        times = {n: [] for n in ns.layers}
        for rep in range(ns.repeats + 1):  # the first round warms up
            for n, trainer in trainers.items():
                model = trainer.model
                start = time.perf_counter()
                for b in batches:
                    backward_step(model, trainer.compute_loss, b, dtype)
                if rep:
                    times[n].append((time.perf_counter() - start) / len(batches))
        if ns.profile:
            print(profile_table(lambda: [backward_step(first.model, first.compute_loss, b, dtype)
                                         for b in batches[:2]]))
    if ns.repeats:
        names = {n: f"lora_layers {n}" for n in ns.layers}
        trainable = {names[n]: sum(p.numel() for p in t.model.parameters() if p.requires_grad)
                     for n, t in trainers.items()}
        report_json({"dataset": dataset, "tokens_per_batch": tokens / len(batches),
                     "variants": step_times({names[n]: t for n, t in times.items()}, names[ns.layers[0]],
                                            trainable_parameters=trainable)}, ns.out)


if __name__ == "__main__":
    main()
