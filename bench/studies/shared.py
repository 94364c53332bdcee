"""Helpers the studies share: a trainer on the amazon-regress recipe, interleaved step timing, the
profiler's table, and the per-change ablation. Not part of the installed package; run a study from the
repository root, e.g. `python bench/studies/compile.py bench/results/compile-cpu.json`."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

from pricetune.bench.harness import _run_side


def report_json(result: dict, out: str | None) -> None:
    """Print a study's result, and write it to `out` when one is given."""
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        Path(out).write_text(text + "\n")


def regress_trainer(out_dir: str, dataset: str, **overrides):
    """A Trainer on configs/amazon-regress.yaml as `pricetune train` prepares it (256 train rows, no
    val), in train mode: the interleaved benchmarks time its model's steps. Eager unless `overrides`
    say torch_compile=True: a benchmark compiles the variants it compares itself."""
    from pricetune.config import config_path, resolve_config
    from pricetune.training import prepare_trainer

    cfg = resolve_config(yaml_path=config_path("amazon-regress"), overrides=dict(
        dataset=dataset, output_dir=out_dir, train_size=256, val_size=0, push_to_hub=False,
        **{"torch_compile": False, **overrides}))
    trainer, _ = prepare_trainer(cfg, log=lambda _: None)
    trainer.model.train()
    return trainer


def step_times(times: dict[str, list[float]], first: str, **extra: dict) -> dict:
    """The interleaved benchmarks' figures: each variant's median step time and its speed against
    `first`, with `extra` fields per variant ({field: {variant: value}})."""
    base = statistics.median(times[first])
    return {name: {"median_step_seconds": statistics.median(t), "step_seconds": t,
                   "speedup_over_first": base / statistics.median(t),
                   **{field: values[name] for field, values in extra.items()}} for name, t in times.items()}


def backward_step(model, loss_of, batch: dict, dtype) -> None:
    """One forward + backward pass under the training autocast (`dtype` None: none), the gradients
    then dropped: the interleaved benchmarks time the passes, not the optimizer update."""
    import torch

    with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
        loss = loss_of(model, batch)
    loss.backward()
    model.zero_grad(set_to_none=True)


def profile_table(run, rows: int = 25) -> str:
    """torch.profiler's table of what `run()` spent its CPU time on, by self time."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def ablation(opts: dict, variants: dict[str, dict]) -> dict:
    """tokens/s of pricetune's trainer with single changes switched off, for PERFORMANCE.md."""
    import tempfile

    from pricetune.modeling import pick_precision

    opts = dict(opts, precision=pick_precision(opts.get("precision", "auto")))
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, variant) in enumerate(variants.items()):
            overrides = dict(variant)
            fastpath = overrides.pop("fastpath", None)
            r = _run_side("pricetune", dict(opts, tmp=os.path.join(tmp, str(i)), pricetune_overrides=overrides,
                                            fastpath=fastpath))
            out[name] = {k: r[k] for k in ("tokens_per_second", "peak_rss_mb", "train_rss_growth_mb", "losses")}
            out[name].update(variant)
    return out
