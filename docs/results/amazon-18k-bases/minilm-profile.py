"""Where MiniLM's training step goes: six steps of configs/amazon-18k-minilm.yaml (after three to warm up)
under torch's profiler, with the base's dropout and adamw_torch (the first config) and without dropout with
the fused AdamW (the config now); each op's share of the profiled CPU time. Run it with AVX2 kernels only, as
minilm-dropout-speed.sh does:

    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python \
        docs/results/amazon-18k-bases/minilm-profile.py > docs/results/amazon-18k-bases/minilm-profile.json
"""

import json
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

from pricetune.config import resolve_config
from pricetune.training.run import prepare_trainer

VARIANTS = {"dropout 0.1, adamw_torch": dict(base_dropout=0.1, optim="adamw_torch"),
            "no dropout, adamw_torch_fused": dict(base_dropout=0.0, optim="adamw_torch_fused")}


def profile_variant(options: dict) -> dict:
    cfg = resolve_config(yaml_path="amazon-18k-minilm", overrides=dict(
        precision="fp32", train_size=512, val_size=16, max_steps=20, output_dir="runs/minilm-profile", **options))
    trainer, _ = prepare_trainer(cfg, log=lambda _: None, overwrite=True)
    trainer.create_optimizer_and_scheduler(num_training_steps=20)
    batches = [b for _, b in zip(range(9), trainer.get_train_dataloader())]
    model = trainer.model.train()

    def step(batch):
        trainer.compute_loss(model, batch).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        trainer.optimizer.step()
        trainer.optimizer.zero_grad()

    for b in batches[:3]:
        step(b)
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for b in batches[3:]:
            step(b)
    seconds = (time.perf_counter() - start) / 6
    ops = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in ops)
    top = sorted(ops, key=lambda e: -e.self_cpu_time_total)[:12]
    return {"s_per_step_profiled": round(seconds, 3), "tokens_per_batch": [list(b["input_ids"].shape) for b in batches[3:]],
            "self_cpu_share": {e.key: round(e.self_cpu_time_total / total, 3) for e in top}}


out = {"machine": open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip("\t :"),
       "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
       "variants": {name: profile_variant(options) for name, options in VARIANTS.items()}}
json.dump(out, sys.stdout, indent=2)
