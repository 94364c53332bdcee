"""Per-change ablation of pricetune's training path (same data, model, batch as `bench train`).

    python bench/studies/ablation.py bench/results/ablation-cpu.json
"""

import json
import sys
from pathlib import Path

from pricetune.bench.harness import bench_dataset
from shared import ablation

if __name__ == "__main__":
    opts = dict(model="smollm2-135m", dataset=bench_dataset(), steps=8, batch_size=16, max_length=128,
                quantization="4bit", precision="auto", seed=42)
    off = dict(no_mask=False, attention=False, dropout=False, rms_norm=False, swiglu=False)
    on = {k: True for k in off}
    steps = [  # (name, the fast-path switch it turns on), cumulative
        ("+ no attention mask on right-padded batches", "no_mask"),
        ("+ causal attention by batched matmuls (not CPU flash attention)", "attention"),
        ("+ LoRA dropout fused into A, mask redrawn in backward", "dropout"),
        ("+ RMSNorm keeping its bf16 input", "rms_norm"),
        ("+ SwiGLU keeping gate and up only (= pricetune train)", "swiglu"),
    ]
    variants = {
        "stock loss, gradient checkpointing (as the reference, through pricetune's trainer)":
            dict(fast=False, gradient_checkpointing=True, fastpath=off),
        "+ completion-only LM head (fast loss)": dict(fast=True, gradient_checkpointing=True, fastpath=off),
        "+ no gradient checkpointing": dict(fast=True, gradient_checkpointing=False, fastpath=off),
    }
    switches = dict(off)
    for name, switch in steps:
        switches[switch] = True
        variants[name] = dict(fast=True, gradient_checkpointing=False, fastpath=dict(switches))
    variants["pricetune train --gradient-checkpointing (the memory-lean setting)"] = dict(
        fast=True, gradient_checkpointing=True, fastpath=on)
    text = json.dumps(ablation(opts, variants), indent=2)
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(text + "\n")
    print(text)
