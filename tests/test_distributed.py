"""Scale-out on this CPU: torchrun with 2 processes (DDP over gloo) against 1 process, tiny model.

Every process runs with one thread (two 2-thread processes on 2 cores spin-wait each other). Rank 1
starts 1.5 s after rank 0 (tests/launch_staggered.py), so ranks that named the run from their own
clocks would write two run directories.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from .conftest import tiny_overrides, train_cli_args

STAGGERED = Path(__file__).with_name("launch_staggered.py")
STEPS = 12  # 48 rows, global batch 8: two epochs


def _env() -> dict:
    """The environment as the test has it when it launches (its own test ledger included: a copy made
    at import would send the children's looks to the ledger of the directory the suite runs in)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _torchrun(args, **kw):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(STAGGERED), *args]
    return subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, **kw)


def _single(args, **kw):
    return subprocess.Popen([sys.executable, "-m", "pricetune", *args], env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def _finish(p, timeout=600):
    try:
        log, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_everything(p)
        raise AssertionError("the run hung") from None
    return log


def _args(model_dir, data_dir, out: Path | None, **extra):
    settings = dict(quantization="none", max_steps=STEPS, batch_size=8, save_steps=2, eval_steps=3, val_size=8)
    o = tiny_overrides(model_dir, data_dir, out or Path("unused"), **{**settings, **extra})
    if out is None:
        del o["output_dir"]
    return train_cli_args(o)


def _losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
            if "loss" in r and "eval_loss" not in r}


def _adapter(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "adapter_model.safetensors"))


@pytest.fixture(scope="module")
def runs(tiny_model_dir, small_dataset_dir, tmp_path_factory):
    """The same training (fp32, 4-bit base, global batch 8): one process with batch 8, and two
    processes with 4 each, the latter named by the launcher's ranks (no --output-dir)."""
    root = tmp_path_factory.mktemp("ddp")
    one = root / "one"
    p = _single(_args(tiny_model_dir, small_dataset_dir, one))
    log = _finish(p)
    assert p.returncode == 0, log
    two_cwd = root / "two"
    two_cwd.mkdir()
    p = _torchrun(_args(tiny_model_dir, small_dataset_dir, None), cwd=two_cwd)
    log = _finish(p)
    assert p.returncode == 0, log
    return one, two_cwd, log


def test_two_processes_train_as_one(runs):
    one, two_cwd, _ = runs
    dirs = list((two_cwd / "runs").iterdir())
    assert len(dirs) == 1, dirs  # both ranks used rank 0's run name
    two = dirs[0]
    a, b = _losses(one), _losses(two)
    assert sorted(a) == list(range(1, STEPS + 1)) and sorted(b) == sorted(a)
    for step in a:
        assert abs(a[step] - b[step]) < 1e-4, (step, a[step], b[step])
    wa, wb = _adapter(one), _adapter(two)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-5, rtol=1e-4), k
    assert any(not torch.equal(t, torch.zeros_like(t)) for t in wb.values())


def test_rank_zero_writes_one_run(runs):
    _, two_cwd, log = runs
    two = next((two_cwd / "runs").iterdir())
    summary = json.loads((two / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_batch_size"] == 8 and summary["per_device_batch_size"] == 4
    lines = (two / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len(set(lines)) and len(_losses(two)) == STEPS
    assert log.count("summary: {") == 1  # one voice
    checkpoints = sorted(two.glob("checkpoint-*"))
    assert sorted(int(c.name.split("-")[1]) for c in checkpoints) == list(range(2, STEPS + 1, 2))
    for c in checkpoints:
        assert {"rng_state_0.pth", "rng_state_1.pth", "trainer_state.json", "adapter_model.safetensors",
                "optimizer.pt"} <= {f.name for f in c.iterdir()}, c
    assert not (two / ".staging").exists()


def _wait_for(path: Path, proc, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists():
            return
        if proc.poll() is not None:
            raise AssertionError(proc.stdout.read())
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def _kill_everything(p) -> None:
    """SIGKILL to the launcher's group and to its workers (torchrun starts each worker in a session
    of its own): the whole job dies at once, as on a preempted machine."""
    import psutil

    workers = psutil.Process(p.pid).children(recursive=True)
    os.killpg(p.pid, signal.SIGKILL)
    for w in workers:
        try:
            w.kill()
        except psutil.NoSuchProcess:
            pass


def test_killed_two_process_run_resumes_exactly(runs, tiny_model_dir, small_dataset_dir, tmp_path):
    _, two_cwd, _ = runs
    uninterrupted = next((two_cwd / "runs").iterdir())
    out = tmp_path / "run"
    p = _torchrun(_args(tiny_model_dir, small_dataset_dir, out, save_steps=1))
    _wait_for(out / "checkpoint-4" / "trainer_state.json", p)  # in the first epoch: 8 steps still to go
    _kill_everything(p)
    p.wait()
    assert not (out / "summary.json").exists()
    r = _torchrun(["train", "--output-dir", str(out), "--resume"])
    log = _finish(r)
    assert r.returncode == 0, log
    assert "resuming from" in log
    a, b = _losses(uninterrupted), _losses(out)
    for step in a:
        assert abs(a[step] - b[step]) < 1e-6, (step, a, b)
    wa, wb = _adapter(uninterrupted), _adapter(out)
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-6, rtol=0), k


def test_sigterm_stops_both_ranks_at_one_step(tiny_model_dir, small_dataset_dir, tmp_path):
    out = tmp_path / "run"
    p = _torchrun(_args(tiny_model_dir, small_dataset_dir, out, save_steps=100, max_steps=40))
    _wait_for(out / "metrics.jsonl", p)
    time.sleep(1.0)
    p.send_signal(signal.SIGTERM)  # to the launcher alone: torchrun forwards it to the workers
    log = _finish(p, timeout=180)
    stops = re.findall(r"error \(rank (\d)\): stopped on .* at step (\d+)", log)
    assert sorted(r for r, _ in stops) == ["0", "1"], log
    step = stops[0][1]
    assert stops[1][1] == step, log
    assert {"rng_state_0.pth", "rng_state_1.pth"} <= {f.name for f in (out / f"checkpoint-{step}").iterdir()}
    r = _torchrun(["train", "--output-dir", str(out), "--resume"])
    log = _finish(r)
    assert r.returncode == 0, log
    assert json.loads((out / "summary.json").read_text())["steps"] == 40


def test_two_process_evaluate_equals_one(runs, tmp_path):
    one, _, _ = runs
    common = ["evaluate", str(one), "--limit", "16", "--batch-size", "1"]
    p = _single(common + ["--output-dir", str(tmp_path / "single")])
    log = _finish(p)
    assert p.returncode == 0, log
    p = _torchrun(common + ["--output-dir", str(tmp_path / "pair")])
    log = _finish(p)
    assert p.returncode == 0, log
    ma = json.loads((tmp_path / "single" / "metrics.json").read_text())
    mb = json.loads((tmp_path / "pair" / "metrics.json").read_text())
    assert ma["n"] == mb["n"] == 16
    assert ma == mb
    pa = (tmp_path / "single" / "predictions.jsonl").read_text()
    assert pa == (tmp_path / "pair" / "predictions.jsonl").read_text()
    # both looks at the test split counted in this test's ledger, not in the working directory's
    ledger = Path(os.environ["PRICETUNE_LEDGER"]).read_text().splitlines()
    assert [json.loads(line)["look"] for line in ledger] == [1, 2]


def test_two_process_predict_and_calibrate_equal_one(runs, small_dataset_dir, tmp_path):
    """`predict --file` and `calibrate` under a launcher: each process prices every 2nd item, rank 0 writes
    (each process priced every item and wrote the same files at once: the prices kept beside --out too)."""
    one, _, _ = runs
    rows = [json.loads(line) for line in (Path(small_dataset_dir) / "test.jsonl").read_text().splitlines()][:9]
    (tmp_path / "items.jsonl").write_text("".join(json.dumps({"sku": i, "prompt": r["prompt"]}) + "\n"
                                                  for i, r in enumerate(rows)))
    # "--": the launcher's own parser would read --run as an abbreviation of its --run-path
    for name, launch in (("single", _single), ("pair", lambda args: _torchrun(["--", *args]))):
        p = launch(["predict", "--run", str(one), "--batch-size", "1", "--file", str(tmp_path / "items.jsonl"),
                    "--out", str(tmp_path / f"{name}.csv")])
        log = _finish(p)
        assert p.returncode == 0, log
        assert log.count("wrote 9 prices") == 1, log
        assert not (tmp_path / f"{name}.csv.partial").exists()
    assert (tmp_path / "single.csv").read_text() == (tmp_path / "pair.csv").read_text()
    # calibrate alike: each process prices every 2nd val item, rank 0 writes calibration.json
    calibrations = []
    for launch in (_single, lambda args: _torchrun(["--", *args])):
        p = launch(["calibrate", str(one), "--batch-size", "1"])
        log = _finish(p)
        assert p.returncode == 0 and log.count("calibration: ") == 1, log
        calibrations.append(json.loads((one / "calibration.json").read_text()))
        (one / "calibration.json").unlink()  # the module's run stays as the other tests expect it
    assert calibrations[0] == calibrations[1] and calibrations[0]["items"] == 16


def test_a_command_that_does_not_share_its_work_runs_once_under_a_launcher(small_dataset_dir, tmp_path):
    """`ensemble` (as select, export, serve, ...) under torchrun: rank 0 does it and says so; two processes
    fitted the same folder at once, and the second was refused it ("already exists") or raced the first."""
    p = _torchrun(["ensemble", "--dataset", str(small_dataset_dir), "--member", "tfidf", "--member", "median",
                   "--cv-repeats", "0", "--out", str(tmp_path / "ens")])
    log = _finish(p)
    assert p.returncode == 0, log
    assert log.count("note: ensemble runs in one process: rank 0 does it, the other 1 process(es) stop here") == 1, log
    assert json.loads((tmp_path / "ens" / "ensemble.json").read_text())["members"]


def _one_and_two(model_dir, data_dir, root: Path, **settings) -> tuple[dict, dict]:
    """The same run in one process (root/one) and in two (root/two); their losses by step."""
    for name, launch in (("one", _single), ("two", _torchrun)):
        p = launch(_args(model_dir, data_dir, root / name, **settings))
        log = _finish(p)
        assert p.returncode == 0, log
    return _losses(root / "one"), _losses(root / "two")


def test_two_processes_train_a_4bit_base_as_one(tiny_model_dir, small_dataset_dir, tmp_path):
    """One whole 4-bit (nf4) model per process: the losses of one process, step by step. (The LoRA
    weights of a 4-bit run are bf16, so the adapters agree to bf16's rounding, not to fp32's.)"""
    a, b = _one_and_two(tiny_model_dir, small_dataset_dir, tmp_path, quantization="4bit", max_steps=6)
    assert sorted(a) == sorted(b) == list(range(1, 7))
    for step in a:
        assert abs(a[step] - b[step]) < 1e-4, (step, a[step], b[step])
    wa, wb = _adapter(tmp_path / "one"), _adapter(tmp_path / "two")
    for k in wa:
        relative = ((wa[k].float() - wb[k].float()).norm() / wa[k].float().norm()).item()
        assert relative < 0.02, (k, relative)


def test_sharded_runs_leave_placement_to_the_launcher():
    from pricetune.modeling import pick_device_map

    assert pick_device_map("cuda", {"WORLD_SIZE": "8", "LOCAL_RANK": "3"}) == {"": 3}  # DDP: a whole copy each
    assert pick_device_map("cuda", {"WORLD_SIZE": "8", "ACCELERATE_USE_FSDP": "true"}) is None
    assert pick_device_map("cuda", {"WORLD_SIZE": "8", "ACCELERATE_USE_DEEPSPEED": "true",
                                    "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"}) is None


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices (nccl)")
def test_two_gpus_train_a_4bit_base_as_one(tiny_model_dir, small_dataset_dir, tmp_path):
    """nccl, one 4-bit model per GPU, bf16: the losses of one GPU at the same global batch."""
    a, b = _one_and_two(tiny_model_dir, small_dataset_dir, tmp_path, quantization="4bit", precision="bf16",
                        max_steps=6)
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["device"] == "cuda"
    for step in a:
        assert abs(a[step] - b[step]) < 2e-2, (step, a[step], b[step])  # bf16 sums in another order
