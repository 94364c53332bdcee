"""Per-change ablation of pricetune's training path (same data, model, batch as `bench train`).

    python bench/ablation.py bench/results/ablation-cpu.json
"""

import json
import sys
from pathlib import Path

from bench.harness import ablation, bench_dataset

if __name__ == "__main__":
    opts = dict(model="smollm2-135m", dataset=bench_dataset(), steps=8, batch_size=16, max_length=128,
                quantization="4bit", precision="auto", seed=42)
    variants = {
        "stock loss, gradient checkpointing (as the reference, through pricetune's trainer)":
            dict(fast=False, gradient_checkpointing=True),
        "+ completion-only LM head (fast loss)": dict(fast=True, gradient_checkpointing=True),
        "+ no gradient checkpointing (pricetune train)": dict(fast=True, gradient_checkpointing=False),
    }
    text = json.dumps(ablation(opts, variants), indent=2)
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(text + "\n")
    print(text)
