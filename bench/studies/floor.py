"""The matmul floor of a training config on this machine: the least time its training can take here.

    python bench/studies/floor.py bench/results/floor-cpu.json                      # configs/amazon-regress.yaml
    python bench/studies/floor.py --config amazon-regress --neighbours 3 floor.json

Model FLOPs per real token, counted as `pricetune bench train` counts them for its MFU (4 x the
decoder blocks' linear parameters: the forward and the frozen base's input gradients; 6 x the LoRA
parameters), times the real tokens the config trains on (its train split tokenized as `pricetune
train` tokenizes it, times its epochs), over the best square matmul this machine does in the
precision the config trains in here. Attention scores, the head, the optimizer and the data pipeline
are left out, so a real run is slower; a run's training time over this floor is one over its MFU.

Why: a 2-core CPU without native bf16 (AVX2 only) does fp32 matmuls only, several times slower than
the bf16 machines the training-time target was met on; this says whether a config can meet a time
target on a machine at all, before hours are spent finding out. A study, not part of the installed
package: run it from the repository root.
"""

from __future__ import annotations

import argparse
import tempfile

from pricetune.bench.harness import flops_per_token, gemm_peak_gflops
from shared import report_json


def training_floor(cfg, log=print) -> dict:
    """The floor of the run config `cfg` on this machine (its output_dir is not touched)."""
    from pricetune.modeling import pick_precision
    from pricetune.training import prepare_trainer

    if cfg.max_steps > 0:
        raise ValueError("the floor counts whole epochs; the config sets max_steps")
    with tempfile.TemporaryDirectory() as tmp:
        # compiling changes no FLOP count and would only cost minutes here
        trainer, _ = prepare_trainer(cfg.model_copy(update=dict(output_dir=tmp, push_to_hub=False,
                                                                torch_compile=False)), log=lambda _: None)
        tokens_per_epoch = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
        per_token = flops_per_token(trainer.model)
        rows = len(trainer.train_dataset)
    precision = pick_precision(cfg.precision)
    log(f"measuring the {precision} matmul peak")
    peak = gemm_peak_gflops(precision)
    tokens = round(tokens_per_epoch * cfg.epochs)  # a fractional last epoch: about that share of the tokens
    floor = per_token * tokens / (peak * 1e9)
    return {
        "what": "floor", "base_model": cfg.base_model, "neighbours": cfg.neighbours, "train_on_val": cfg.train_on_val,
        "objective": cfg.objective, "precision": precision, "train_rows": rows, "epochs": cfg.epochs,
        "tokens_per_epoch": tokens_per_epoch, "train_tokens": tokens, "flops_per_token": per_token,
        "train_pflop": per_token * tokens / 1e15, "gemm_peak_gflops": peak,
        "floor_seconds": floor, "floor_minutes": floor / 60,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("json", nargs="?", help="Also write the result JSON here.")
    p.add_argument("--config", default="amazon-regress", help="A shipped config's name or a YAML path.")
    p.add_argument("--neighbours", type=int, help="As `pricetune train --neighbours` (prompts a few tokens longer).")
    p.add_argument("--train-on-val", action="store_true", help="As `pricetune train --train-on-val` (more rows).")
    p.add_argument("--dataset", help="As `pricetune train --dataset`.")
    ns = p.parse_args(argv)
    from pricetune.config import config_path, resolve_config
    from pricetune.errors import PricetuneError

    overrides = dict(neighbours=ns.neighbours, dataset=ns.dataset, train_on_val=ns.train_on_val or None)
    try:
        cfg = resolve_config(yaml_path=config_path(ns.config), overrides=overrides)  # None: the config's value
        result = {"config": ns.config, **training_floor(cfg)}
    except (PricetuneError, ValueError) as e:
        p.error(str(e))
    report_json(result, ns.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
