"""Faults: killed and resumed training, signals, half-written checkpoints, Hub failures, the token."""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from pricetune.config import resolve_config

from .conftest import tiny_overrides

MARKER = "hf_MARKERtokenDoNotLeak1234567890abcdef"
STEPS = 9  # 48 rows, batch 8: 1.5 epochs, so a kill can land in either epoch


def _cli(args, env_extra=None, **kw):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-m", "pricetune.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def _train_args(tiny_model_dir, data_dir, out):
    args = ["train"]
    o = tiny_overrides(tiny_model_dir, data_dir, out, quantization="none", max_steps=STEPS, save_steps=1,
                       eval_steps=100, val_size=4, lora_dropout=0.1)
    for k, v in o.items():
        flag = "--" + k.replace("_", "-")
        args += [flag] if v is True else [f"--no-{flag[2:]}"] if v is False else [flag, str(v)]
    return args


def _adapter(run):
    return load_file(str(Path(run) / "adapter_model.safetensors"))


@pytest.fixture(scope="module")
def uninterrupted(tiny_model_dir, small_dataset_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "run"
    p = _cli(_train_args(tiny_model_dir, small_dataset_dir, out))
    log, _ = p.communicate(timeout=600)
    assert p.returncode == 0, log
    return out


def _wait_for_checkpoint(out: Path, step: int, proc, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (out / f"checkpoint-{step}" / "trainer_state.json").is_file():
            return
        if proc.poll() is not None:
            raise AssertionError(proc.stdout.read())
        time.sleep(0.05)
    raise AssertionError("no checkpoint appeared")


@pytest.mark.parametrize("when", ["first epoch", "second epoch"])
def test_sigkill_then_resume_equals_uninterrupted(uninterrupted, tiny_model_dir, small_dataset_dir, tmp_path, when):
    out = tmp_path / "run"
    # a random step, in each epoch (6 steps per epoch): the resumed order must be the epoch's own
    kill_after = random.Random().randint(1, 5) if when == "first epoch" else random.Random().randint(6, STEPS - 2)
    p = _cli(_train_args(tiny_model_dir, small_dataset_dir, out))
    _wait_for_checkpoint(out, kill_after, p)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (out / "summary.json").exists()
    r = _cli(["train", "--output-dir", str(out), "--resume"])
    log, _ = r.communicate(timeout=600)
    assert r.returncode == 0, log
    assert "resuming from" in log
    a, b = _adapter(uninterrupted), _adapter(out)
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] == b[k]).all(), f"{k} differs after kill at step >= {kill_after} and resume"
    # resuming a finished run does nothing
    again = _cli(["train", "--output-dir", str(out), "--resume"])
    log, _ = again.communicate(timeout=300)
    assert again.returncode == 0 and "already finished" in log


def test_sigterm_saves_and_says_how_to_resume(tiny_model_dir, small_dataset_dir, tmp_path):
    out = tmp_path / "run"
    p = _cli(_train_args(tiny_model_dir, small_dataset_dir, out))
    _wait_for_checkpoint(out, 1, p)
    p.send_signal(signal.SIGTERM)
    log, _ = p.communicate(timeout=300)
    assert p.returncode == 2, log
    assert "Traceback" not in log
    assert f"pricetune train --output-dir {out} --resume" in log
    assert not (out / "summary.json").exists()
    steps = sorted(int(d.name.split("-")[1]) for d in out.glob("checkpoint-*"))
    assert steps and steps[-1] < STEPS


KILL_IN_SAVE = """
import os, signal, sys
from transformers import Trainer
import pricetune.cli

original = Trainer._save_rng_state

def die_midway(self, output_dir):
    # adapter, optimizer and scheduler of checkpoint-{step} are on disk, RNG and state are not yet
    if self.state.global_step == {step}:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, output_dir)

Trainer._save_rng_state = die_midway
sys.exit(pricetune.cli.main(sys.argv[1:]))
"""


def test_killed_during_a_save_then_resumed(uninterrupted, tiny_model_dir, small_dataset_dir, tmp_path):
    out, step = tmp_path / "run", 3
    script = tmp_path / "die_in_save.py"
    script.write_text(KILL_IN_SAVE.replace("{step}", str(step)))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    p = subprocess.run([sys.executable, str(script), *_train_args(tiny_model_dir, small_dataset_dir, out)],
                       env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == -signal.SIGKILL, p.stdout + p.stderr
    assert (out / ".staging" / f"checkpoint-{step}").is_dir()  # the half-written save
    assert not (out / f"checkpoint-{step}").exists()
    r = _cli(["train", "--output-dir", str(out), "--resume"])
    log, _ = r.communicate(timeout=600)
    assert r.returncode == 0, log
    assert f"resuming from {out / f'checkpoint-{step - 1}'}" in log
    a, b = _adapter(uninterrupted), _adapter(out)
    for k in a:
        assert (a[k] == b[k]).all(), k


def test_resume_ignores_a_half_written_checkpoint(tmp_path):
    from pricetune.training import find_checkpoint

    run = tmp_path / "run"
    (run / "checkpoint-2").mkdir(parents=True)
    (run / "checkpoint-2" / "trainer_state.json").write_text("{}")
    # a save killed midway leaves its files in .staging/, never under a checkpoint-N name
    (run / ".staging" / "checkpoint-3").mkdir(parents=True)
    (run / ".staging" / "checkpoint-3" / "adapter_model.safetensors").write_bytes(b"partial")
    assert find_checkpoint(run, "latest") == str(run / "checkpoint-2")


def test_save_total_limit_keeps_the_newest(tiny_model_dir, small_dataset_dir, tmp_path):
    from pricetune.training import prepare_trainer

    cfg = resolve_config("demo", overrides=tiny_overrides(tiny_model_dir, small_dataset_dir, tmp_path / "r",
                                                          quantization="none", max_steps=4, save_total_limit=2,
                                                          eval_steps=100))
    trainer, ctx = prepare_trainer(cfg, log=lambda _: None)
    trainer.train()
    assert sorted(d.name for d in ctx["run_dir"].glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-4"]
    assert not (ctx["run_dir"] / ".staging").exists()


# --- Hub failures and the token ---------------------------------------------------------------------


class FakeHub(BaseHTTPRequestHandler):
    """Answers every call with `status`; repo creation with `create_status` when set."""

    status = 401
    create_status = None
    seen_auth: list = []

    def _reply(self):
        FakeHub.seen_auth.append(self.headers.get("authorization", ""))
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        status = self.create_status if self.create_status and "repos/create" in self.path else self.status
        # the real Hub names the existing repo in its 409 answer
        body = json.dumps({"error": f"fake hub says {status}", "url": "http://127.0.0.1/someone/x"}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_HEAD = _reply

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_hub():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


def _fake_run(tmp_path) -> Path:
    run = tmp_path / "price-2026-01-01_00.00.00-demo"
    run.mkdir()
    cfg = resolve_config("demo", overrides={"run_name": run.name, "output_dir": str(run)})
    (run / "config.yaml").write_text(cfg.to_yaml())
    (run / "adapter_config.json").write_text("{}")
    (run / "adapter_model.safetensors").write_bytes(b"x" * 100)
    return run


# A taken name: creation answers 409 (exists), then the upload is refused (403: not yours)
@pytest.mark.parametrize("create,status,needle", [(None, 401, "401"), (None, 403, "403"), (409, 403, "name")])
def test_push_failures_keep_the_adapter_and_never_leak_the_token(fake_hub, tmp_path, create, status, needle):
    FakeHub.status, FakeHub.create_status = status, create
    run = _fake_run(tmp_path)
    env = {"HF_ENDPOINT": f"http://127.0.0.1:{fake_hub.server_port}", "HF_TOKEN": MARKER, "HF_HUB_OFFLINE": "0",
           "HF_HOME": str(tmp_path / "hf-home")}
    p = _cli(["push", str(run), "--repo-id", "someone/price-test"], env)
    log, _ = p.communicate(timeout=120)
    assert p.returncode == 2, log
    assert needle in log and f"pricetune push {run} --repo-id someone/price-test" in log
    assert "Traceback" not in log
    assert (run / "adapter_model.safetensors").stat().st_size == 100
    assert any(MARKER in a for a in FakeHub.seen_auth), "the token was not used for the push"
    assert MARKER not in log
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert MARKER.encode() not in f.read_bytes(), f"token written to {f}"


def test_transient_push_errors_are_retried(fake_hub, tmp_path, monkeypatch):
    import huggingface_hub.constants as hc

    from pricetune import hub

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{fake_hub.server_port}")
    FakeHub.status, FakeHub.create_status = 503, None
    FakeHub.seen_auth = []
    logs = []
    with pytest.raises(Exception):
        hub.push_folder(_fake_run(tmp_path), "someone/x", token=MARKER, retries=2, backoff=0.01, log=logs.append)
    assert len([l for l in logs if "retrying" in l]) == 2
    assert all(MARKER not in l for l in logs)


def test_training_with_push_on_and_no_hub_finishes_locally(tiny_model_dir, small_dataset_dir, tmp_path, fake_hub):
    FakeHub.status, FakeHub.create_status = 401, None
    out = tmp_path / "run"
    args = _train_args(tiny_model_dir, small_dataset_dir, out)
    args[args.index("--no-push-to-hub")] = "--push-to-hub"
    args += ["--hub-model-id", "someone/price-x", "--max-steps", "2"]
    env = {"HF_ENDPOINT": f"http://127.0.0.1:{fake_hub.server_port}", "HF_TOKEN": MARKER, "HF_HUB_OFFLINE": "0",
           "HF_HOME": str(tmp_path / "hf-home")}
    p = _cli(args, env)
    log, _ = p.communicate(timeout=600)
    assert p.returncode == 0, log
    assert "push to someone/price-x failed" in log and f"pricetune push {out}" in log
    assert (out / "adapter_model.safetensors").is_file()
    assert json.loads((out / "summary.json").read_text())["pushed_to"] is None
    assert MARKER not in log
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert MARKER.encode() not in f.read_bytes(), f"token written to {f}"
    assert "token" not in yaml.safe_load((out / "config.yaml").read_text())


class PublicRepoHub(BaseHTTPRequestHandler):
    """A Hub where the repo exists already, public; records every request."""

    paths: list = []

    def _reply(self):
        PublicRepoHub.paths.append((self.command, self.path))
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        if "repos/create" in self.path:
            status, body = 409, {"error": "You already created this model repo", "url": "http://127.0.0.1/someone/x"}
        else:
            status, body = 200, {"id": "someone/x", "private": False, "sha": "0" * 40, "siblings": []}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_HEAD = _reply

    def log_message(self, *args):
        pass


def test_a_private_push_never_lands_in_an_existing_public_repo(tmp_path, monkeypatch):
    import huggingface_hub.constants as hc

    from pricetune import hub
    from pricetune.errors import PricetuneError

    server = ThreadingHTTPServer(("127.0.0.1", 0), PublicRepoHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    PublicRepoHub.paths = []
    try:
        with pytest.raises(PricetuneError, match="public"):
            hub.push_folder(_fake_run(tmp_path), "someone/x", private=True, token=MARKER, log=lambda _: None)
    finally:
        server.shutdown()
    assert not any("commit" in p or "preupload" in p for _, p in PublicRepoHub.paths), PublicRepoHub.paths


def test_push_uploads_an_allowlist_and_a_config_without_local_paths(tmp_path):
    from pricetune import hub

    run = _fake_run(tmp_path)
    for extra in ("optimizer.pt", "metrics.jsonl", "notes-with-secrets.txt", "checkpoint-5/adapter_model.safetensors"):
        (run / extra).parent.mkdir(parents=True, exist_ok=True)
        (run / extra).write_text("x")
    staging = tmp_path / "staging"
    staging.mkdir()
    names = hub.stage_upload(run, staging)
    assert sorted(p.name for p in staging.iterdir()) == sorted(names)
    assert set(names) == {"adapter_config.json", "adapter_model.safetensors", hub.CONFIG_NAME}
    config = yaml.safe_load((staging / hub.CONFIG_NAME).read_text())
    assert config["output_dir"] is None and str(tmp_path) not in (staging / hub.CONFIG_NAME).read_text()


def test_a_push_names_a_local_base_by_no_path_and_its_card_by_no_base_the_hub_would_refuse(tmp_path):
    """A run of a base on its trainer's disk: the adapter config named the base's full path (a folder of that
    machine, on the Hub), and the card's metadata said `base_model: <local: my-base>`, which the Hub's
    metadata check refuses, so the push failed after the repo was made."""
    from pricetune import hub

    run = _fake_run(tmp_path)
    base = tmp_path / "alice" / "my-base"
    base.mkdir(parents=True)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump({**cfg, "base_model": str(base)}))
    (run / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base), "r": 8}))
    (run / "README.md").write_text("---\nbase_model: '<local: my-base>'\nlibrary_name: peft\n---\n# card\n")
    staging = tmp_path / "staging"
    staging.mkdir()
    hub.stage_upload(run, staging)
    for name in ("adapter_config.json", "README.md", hub.CONFIG_NAME):
        assert str(tmp_path) not in (staging / name).read_text(), name
    assert json.loads((staging / "adapter_config.json").read_text()) == {"base_model_name_or_path": "<local: my-base>",
                                                                         "r": 8}
    front = yaml.safe_load((staging / "README.md").read_text().split("---\n")[1])
    assert front == {"library_name": "peft"} and (staging / "README.md").read_text().endswith("# card\n")
    # a checkpoint's card is PEFT's, which names the base's path in its metadata and tags
    (run / "checkpoint-2").mkdir()
    (run / "checkpoint-2" / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base)}))
    (run / "checkpoint-2" / "README.md").write_text(f"---\nbase_model: {base}\nlibrary_name: peft\ntags:\n"
                                                    f"- base_model:adapter:{base}\n- lora\n---\n# Model Card\n")
    checkpoint = tmp_path / "checkpoint-staging"
    checkpoint.mkdir()
    hub.stage_upload(run / "checkpoint-2", checkpoint)
    assert not [p.name for p in checkpoint.iterdir() if str(tmp_path) in p.read_text(errors="replace")]
    assert yaml.safe_load((checkpoint / "README.md").read_text().split("---\n")[1])["tags"] == ["lora"]
    # the embedded base's card names the Hub model its weights copy
    (run / "config.yaml").write_text(yaml.safe_dump({**cfg, "base_model": "smollm2-135m"}))
    hub.stage_upload(run, staging)
    assert yaml.safe_load((staging / "README.md").read_text().split("---\n")[1])["base_model"] == \
        "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_an_exported_folder_pushes_as_it_is_to_its_run_name_without_local_paths(tmp_path, monkeypatch):
    """`pricetune push merged/`: it said "merged is not a pricetune run directory"; an exported model (the
    merge vLLM serves, or a GGUF) goes as it is, to HF_USER/<run name>-merged, private."""
    import huggingface_hub

    from pricetune import hub

    run, out = _fake_run(tmp_path), tmp_path / "merged"
    out.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "regression_head.json"):
        (out / name).write_text("{}")
    (out / "pricetune_export.json").write_text(json.dumps({"run": str(run), "objective": "regress",
                                                           "dataset": str(tmp_path / "data"), "base_model": "smollm2-135m"}))
    staging = tmp_path / "staging"
    staging.mkdir()
    names = hub.stage_upload(out, staging)
    assert sorted(names) == sorted(p.name for p in out.iterdir()) == sorted(p.name for p in staging.iterdir())
    assert str(tmp_path) not in (staging / "pricetune_export.json").read_text()  # the run's and data's places stay here
    pushed = []
    monkeypatch.setattr(hub, "get_token", lambda: "a-token")
    monkeypatch.setattr(huggingface_hub.HfApi, "whoami", lambda self, token=None: {"name": "me"})
    monkeypatch.setattr(hub, "push_folder", lambda folder, target, private, *a: pushed.append((folder, target, private)))
    hub.push_run(out)
    assert pushed == [(out, f"me/{run.name}-merged", True)]


@pytest.mark.integration
@pytest.mark.parametrize("objective", ["regress", "generate"])
def test_resume_is_exact_on_the_default_path(tmp_path, objective):
    """The default path in nf4 (the demo preset trains unquantized; 4-bit is the harder case to resume):
    the embedded SmolLM2, bf16 where the CPU has it, LoRA dropout through the fused dropout, the
    length-grouped order, a train_size subset. Killed once checkpoint-4 exists (in the second epoch),
    resumed: the same losses and the same adapter. (The resumed run skips the opening evaluation;
    bitsandbytes would have repacked its 4-bit weights there, see modeling.keep_one_4bit_layout.)"""
    args = ["train", "--preset", "demo", "--quantization", "4bit", "--objective", objective, "--max-steps", "6",
            "--save-steps", "2", "--eval-steps", "6", "--train-size", "40", "--val-size", "8", "--logging-steps", "1",
            "--batch-size", "16", "--max-length", "64"]
    env = {"OMP_NUM_THREADS": "2"}
    full = _cli(args + ["--output-dir", str(tmp_path / "full")], env)
    log, _ = full.communicate(timeout=900)
    assert full.returncode == 0, log
    out = tmp_path / "killed"
    p = _cli(args + ["--output-dir", str(out)], env)
    _wait_for_checkpoint(out, 4, p, timeout=900)
    p.send_signal(signal.SIGKILL)
    p.wait()
    r = _cli(["train", "--output-dir", str(out), "--resume"], env)
    log, _ = r.communicate(timeout=900)
    assert r.returncode == 0, log

    def losses(run):
        return {r["step"]: r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
                if "loss" in r and "eval_loss" not in r}

    a, b = losses(tmp_path / "full"), losses(out)
    assert a[5] == b[5] and a[6] == b[6], (a, b)
    wa, wb = _adapter(tmp_path / "full"), _adapter(out)
    for k in wa:
        assert (wa[k] == wb[k]).all(), k


# ------------------------------------------------------------------------------------------------
# Pricing a split: an interrupted evaluate or calibrate keeps what it priced


def _interrupt_pricing(monkeypatch, cls, name: str) -> list:
    """Patch cls.name to count the items of each call and raise KeyboardInterrupt in the second call
    while `calls.stop` is set, as a Ctrl-C in the middle of pricing would."""
    stock = getattr(cls, name)
    calls = []

    def interrupted(self, texts, *args, **kw):
        calls.append(len(texts))
        if interrupted.stop and len(calls) == 2:
            raise KeyboardInterrupt
        return stock(self, texts, *args, **kw)

    interrupted.stop = False
    monkeypatch.setattr(cls, name, interrupted)
    return calls, interrupted


def test_an_interrupted_evaluate_or_calibrate_of_an_ensemble_continues_where_it_stopped(tmp_path, capsys, monkeypatch):
    """`evaluate` and `calibrate` priced every item before writing anything: a Ctrl-C or a failure after
    minutes of pricing a generate run's split lost it all. Their prices are kept as they come; the same
    command prices only the rest and writes what an uninterrupted one writes, then the kept file goes."""
    from pricetune.cli import main
    from pricetune.ensemble import Ensemble, Member, fit_ensemble
    from pricetune.inference import kept

    from .test_regress import _ensemble_data

    data = _ensemble_data(tmp_path)
    ens = tmp_path / "ens"
    fit_ensemble(str(data), [Member("tfidf"), Member("median")], ens, log=lambda _: None, cv_repeats=0)
    evaluate = ["evaluate", "--ensemble", str(ens), "--split", "val", "--limit", "0", "--output-dir"]
    assert main([*evaluate, str(tmp_path / "whole")]) == 0
    assert main(["calibrate", "--ensemble", str(ens)]) == 0
    whole_calibration = (ens / "calibration.json").read_text()
    (ens / "calibration.json").unlink()

    monkeypatch.setattr(kept, "PART", 7)
    calls, interrupted = _interrupt_pricing(monkeypatch, Ensemble, "predict")
    n = len((data / "val.jsonl").read_text().splitlines())
    for command, partial in ((evaluate + [str(tmp_path / "again")], tmp_path / "again.partial"),
                             (["calibrate", "--ensemble", str(ens)], ens / "calibration.json.partial")):
        calls.clear()
        interrupted.stop = True
        assert main(command) == 130 and partial.is_file()
        assert f"kept the prices of 7 item(s) in {partial}" in capsys.readouterr().err
        interrupted.stop = False
        assert main(command) == 0
        assert f"7 item(s) priced by an earlier try, {n - 7} to go" in capsys.readouterr().err
        assert sum(calls) == 7 + 7 + n - 7  # the first part, the part interrupted, then only the rest
        assert not partial.exists()  # written: the kept prices have served
    whole, again = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("whole", "again"))
    assert again == whole
    assert (ens / "calibration.json").read_text() == whole_calibration
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")  # an empty folder, the results written into it
    assert main([*evaluate, "."]) == 0
    assert {k: v for k, v in json.loads(Path("metrics.json").read_text()).items() if k != "interval"} == whole
    assert not (tmp_path / "here.partial").exists()


def test_an_interrupted_evaluate_of_a_run_continues_and_counts_one_look(tiny_model_dir, small_dataset_dir, tmp_path,
                                                                         capsys, monkeypatch):
    """A run's evaluation keeps its prices beside its eval folders (RUN/eval-test.partial): writing them
    there does not make the run look changed, so the same command takes them; the test split's look is
    counted once, when its figure is shown, not for the try that was stopped."""
    from pricetune.cli import main
    from pricetune.inference import kept
    from pricetune.inference.load import LoadedModel
    from pricetune.training import train

    run = tmp_path / "run"
    train(resolve_config("demo", overrides=tiny_overrides(tiny_model_dir, small_dataset_dir, run, objective="regress",
                                                          quantization="none", max_steps=2, max_length=64)),
          log=lambda _: None)
    evaluate = ["evaluate", str(run), "--limit", "0", "--batch-size", "4"]
    assert main([*evaluate, "--split", "val"]) == 0
    whole = json.loads(next(run.glob("eval-val-*/metrics.json")).read_text())

    monkeypatch.setattr(kept, "PART", 5)
    calls, interrupted = _interrupt_pricing(monkeypatch, LoadedModel, "price")
    interrupted.stop = True
    assert main([*evaluate, "--split", "val"]) == 130 and (run / "eval-val.partial").is_file()
    interrupted.stop = False
    assert main([*evaluate, "--split", "val"]) == 0
    assert "5 item(s) priced by an earlier try, 11 to go" in capsys.readouterr().err
    assert calls == [5, 5, 5, 5, 1] and not (run / "eval-val.partial").exists()
    assert [json.loads(p.read_text()) for p in sorted(run.glob("eval-val-*/metrics.json"))][-1] == whole

    ledger = Path(os.environ["PRICETUNE_LEDGER"])
    interrupted.stop = True
    calls.clear()
    assert main(evaluate) == 130 and not ledger.exists()  # stopped before a figure: no look
    interrupted.stop = False
    assert main(evaluate) == 0
    assert len(ledger.read_text().splitlines()) == 1


def test_kept_prices_belong_to_the_model_files_not_to_what_pricing_writes_beside_them(tmp_path):
    """The key kept prices are taken by: a run (or an ensemble's member run) whose weights change prices
    anew; the kept prices and a calibration written into a run folder are no change to it."""
    from types import SimpleNamespace

    from pricetune.inference.kept import model_key

    run, ens = tmp_path / "run", tmp_path / "ens"
    run.mkdir()
    ens.mkdir()
    (run / "adapter_model.safetensors").write_bytes(b"weights")
    (ens / "ensemble.json").write_text(json.dumps({"members": [{"spec": "run", "path": "../run"}, {"spec": "tfidf"}],
                                                   "weights": [0.5, 0.5]}))
    keys = lambda: (model_key(SimpleNamespace(run=str(run))), model_key(SimpleNamespace(ensemble=str(ens))))  # noqa: E731
    before = keys()
    for name in ("eval-test.partial", "calibration.json", "calibration.json.partial"):
        (run / name).write_text("{}")
        (ens / name).write_text("{}")
    assert keys() == before
    os.utime(run / "adapter_model.safetensors", ns=(time.time_ns() + 10**9,) * 2)  # trained further
    assert all(a != b for a, b in zip(keys(), before))
