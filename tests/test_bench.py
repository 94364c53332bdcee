"""Smoke tests of the benchmark harness on the tiny model (no speed assertions: speed is measured by
`pricetune bench`, reported in docs/PERFORMANCE.md)."""

import json

from pricetune.cli import main


def test_bench_train_runs_both_sides(tiny_model_dir, small_dataset_dir, tmp_path, capsys):
    out = tmp_path / "train.json"
    assert main(["bench", "train", "--steps", "2", "--batch-size", "4", "--model", str(tiny_model_dir),
                 "--dataset", str(small_dataset_dir), "--quantization", "none", "--precision", "fp32",
                 "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["reference"]["trainer"] == "SFTTrainer" and r["pricetune"]["trainer"] == "PricetuneTrainer"
    for side in ("reference", "pricetune"):
        assert len(r[side]["losses"]) == 2 and r[side]["tokens_per_second"] > 0 and r[side]["peak_rss_mb"] > 0
    for key in ("speedup", "memory_ratio", "max_rel_loss_diff", "gemm_peak_gflops", "mfu"):
        assert r[key] is not None and r[key] >= 0, key
    # the same batches and maths on both sides: the first step's loss (before any update) agrees
    assert abs(r["reference"]["losses"][0] - r["pricetune"]["losses"][0]) < 1e-3 * r["reference"]["losses"][0]


def test_bench_eval_runs(tiny_model_dir, small_dataset_dir, tmp_path):
    out = tmp_path / "eval.json"
    assert main(["bench", "eval", "--limit", "6", "--model", str(tiny_model_dir), "--dataset",
                 str(small_dataset_dir), "--quantization", "none", "--precision", "fp32",
                 "--eval-batch-size", "3", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["items"] == 6 and r["agreement"] == 1.0  # fp32: batched greedy == one-by-one
    assert r["prefill_only"]["items_per_second"] > 0 and r["speedup_ceiling"] > 0
