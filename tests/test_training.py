import json
from pathlib import Path

import pytest
import torch

from pricetune.cli import main
from pricetune.config import resolve_config
from pricetune.modeling import build_lora_config, load_adapter, load_base_model
from pricetune.training import completion_loss, prepare_trainer

from .conftest import tiny_overrides, train_cli_args


def _batch(tokenizer, rows, max_length=128):
    from pricetune.data import encode_example

    enc = [encode_example(tokenizer, r["prompt"], r["completion"], max_length) for r in rows]
    width = max(len(e["input_ids"]) for e in enc)
    pad = tokenizer.pad_token_id
    return {
        "input_ids": torch.tensor([e["input_ids"] + [pad] * (width - len(e["input_ids"])) for e in enc]),
        "attention_mask": torch.tensor([[1] * len(e["input_ids"]) + [0] * (width - len(e["input_ids"])) for e in enc]),
        "labels": torch.tensor([e["labels"] + [-100] * (width - len(e["labels"])) for e in enc]),
    }


def test_tiny_llama_4bit_trains_lora_only_and_reloads(tiny_model_dir, small_dataset_dir, tmp_path, tokenizer,
                                                      demo_splits):
    from peft import PeftModel

    # step 1 is warm-up (lr 0) and B starts at 0, so A first moves at step 3
    cfg = resolve_config("demo", overrides=tiny_overrides(tiny_model_dir, small_dataset_dir, tmp_path / "run",
                                                         max_steps=3))
    trainer, ctx = prepare_trainer(cfg, log=lambda _: None)
    model = trainer.model
    assert any("Linear4bit" in type(m).__name__ for m in model.modules()), "base is not 4-bit"
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer.train()
    after = dict(model.named_parameters())
    lora = [n for n in before if "lora_" in n]
    base = [n for n in before if "lora_" not in n]
    assert lora and base
    assert any(not torch.equal(before[n], after[n].detach()) for n in lora if "lora_B" in n), "LoRA B did not move"
    assert any(not torch.equal(before[n], after[n].detach()) for n in lora if "lora_A" in n), "LoRA A did not move"
    changed_base = [n for n in base if not torch.equal(before[n], after[n].detach())]
    assert changed_base == [], f"base weights changed: {changed_base[:3]}"
    assert all(not after[n].requires_grad for n in base)

    batch = _batch(tokenizer, demo_splits["test"][:4])
    model.eval()
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    trainer.save_model(str(ctx["run_dir"]))
    assert (ctx["run_dir"] / "adapter_model.safetensors").is_file()

    fresh = load_base_model(str(tiny_model_dir), "4bit", "fp32")
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        base_logits = fresh(**inputs).logits
        reloaded = load_adapter(fresh, str(ctx["run_dir"]), quantized=True).eval()
        assert isinstance(reloaded, PeftModel)
        again = reloaded(**inputs).logits
    # The adapter computes in bf16 (QLoRA), and TRL's patched forward in the trained model sums in
    # another order, so "the same" is judged against the size of what the adapter adds.
    effect = (logits - base_logits).abs().max()
    gap = (again - logits).abs().max()
    assert effect > 0.05, f"adapter has no visible effect ({effect})"
    assert gap < 0.02 * effect, f"reloaded logits differ by {gap}, adapter effect {effect}"


def test_train_cli_writes_the_run_directory(tiny_model_dir, small_dataset_dir, tmp_path, capsys):
    out = tmp_path / "cli-run"
    args = train_cli_args(tiny_overrides(tiny_model_dir, small_dataset_dir, out, quantization="none"))
    assert main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"run: {out}"
    for name in ["adapter_config.json", "adapter_model.safetensors", "config.yaml", "metrics.jsonl", "README.md",
                 "summary.json", "tokenizer.json", "checkpoint-2"]:
        assert (out / name).exists(), name
    summary = json.loads((out / "summary.json").read_text())
    for key in ["run_dir", "adapter_dir", "base_model", "steps", "initial_eval_loss", "final_eval_loss",
                "train_tokens_per_second", "train_seconds"]:
        assert summary[key] is not None, key
    assert summary["steps"] == 2
    assert 0 < summary["val_seconds"] < summary["train_seconds"]  # three val passes within the training time
    records = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("loss" in r for r in records) and any("eval_loss" in r for r in records)
    assert all(r["time"] > 1.7e9 for r in records)  # when each was logged: a run trained in parts shows its pace
    closing = [r for r in records if "eval_loss" in r and r["step"] == 2]  # eval_steps 1: logged at the last step
    assert len(closing) == 1 and closing[0]["eval_loss"] == summary["final_eval_loss"]  # and not evaluated again
    assert "lora_r: 8" in (out / "config.yaml").read_text()
    assert "validation loss before training" in (out / "README.md").read_text()
    # the run is not silently overwritten
    assert main(args) == 2

    # and it is usable: the Python API, predict on a file, evaluate on its own test split
    from pricetune.inference import Pricer

    pricer = Pricer.from_run(str(out))
    prices = pricer.price_many(["Title: 1.00 carat Ideal cut round diamond", "Title: a pen"])
    assert len(prices) == 2 and all(isinstance(p, float) for p in prices)
    items = tmp_path / "items.jsonl"
    items.write_text(json.dumps({"description": "Title: a pen"}) + "\n" + json.dumps({"prompt": "Title: a cup"}) + "\n")
    assert main(["predict", "--run", str(out), "--file", str(items), "--out", str(tmp_path / "p.jsonl")]) == 0
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 2
    (tmp_path / "items.csv").write_text("sku,description\n7,Title: a pen\n")  # a CSV too, as the page takes
    assert main(["predict", "--run", str(out), "--file", str(tmp_path / "items.csv"), "--out", str(tmp_path / "c.jsonl")]) == 0
    (row,) = [json.loads(line) for line in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert row["sku"] == "7" and row["description"] == "Title: a pen" and "price_predicted" in row
    assert main(["evaluate", str(out), "--limit", "8"]) == 0
    eval_dir = Path(capsys.readouterr().out.strip().splitlines()[-1].removeprefix("eval: "))
    assert eval_dir.parent == out and json.loads((eval_dir / "metrics.json").read_text())["n"] == 8
    assert eval_dir.name.startswith("eval-test-greedy-")  # a generate run's folder names its decoding
    for name in ["predictions.jsonl", "scatter.png", "error_trend.png", "report.html"]:
        assert (eval_dir / name).is_file()


def test_the_closing_eval_loss_is_evaluated_only_when_the_last_step_logged_none():
    from types import SimpleNamespace

    from pricetune.training.run import closing_eval_loss

    class Trainer:
        def __init__(self, history):
            self.state, self.calls = SimpleNamespace(log_history=history, global_step=30), 0

        def evaluate(self):
            self.calls += 1
            return {"eval_loss": 0.5}

    logged = Trainer([{"step": 20, "eval_loss": 0.9}, {"step": 30, "loss": 0.7}, {"step": 30, "eval_loss": 0.6}])
    assert closing_eval_loss(logged) == 0.6 and logged.calls == 0
    stale = Trainer([{"step": 20, "eval_loss": 0.9}, {"step": 30, "loss": 0.7}])  # eval_steps 20 of 30 steps
    assert closing_eval_loss(stale) == 0.5 and stale.calls == 1


def _lora_model(tiny_model_dir, seed=0):
    from peft import get_peft_model

    torch.manual_seed(seed)
    base = load_base_model(str(tiny_model_dir), "none", "fp32")
    cfg = build_lora_config(8, 16, 0.0, ["q_proj", "v_proj"])
    cfg.init_lora_weights = False  # non-zero B, so gradients reach A as well
    return get_peft_model(base, cfg)


def test_fast_loss_equals_reference_loss_and_gradients(tiny_model_dir, tokenizer, demo_splits):
    batch = _batch(tokenizer, demo_splits["train"][:6])
    model = _lora_model(tiny_model_dir)
    model.train()
    reference = model(**batch).loss  # transformers' own causal-LM loss over the labelled tokens
    reference.backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    fast, n_tokens = completion_loss(model, batch)
    fast.backward()
    assert n_tokens == int((batch["labels"][:, 1:] != -100).sum())
    torch.testing.assert_close(fast, reference, rtol=1e-4, atol=1e-4)
    for n, p in model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, ref_grads[n], rtol=1e-4, atol=1e-6, msg=n)


@pytest.fixture
def handful(tmp_path, demo_splits):
    """12 diamonds that are both the train and the val split: a model that learns must fit them."""
    from .conftest import write_jsonl

    rows = demo_splits["train"][:12]
    for split in ("train", "val", "test"):
        write_jsonl(tmp_path / "handful" / f"{split}.jsonl", rows)
    return tmp_path / "handful"


@pytest.mark.integration
@pytest.mark.parametrize("objective", ["regress"])
def test_demo_path_on_embedded_smollm2_learns(tmp_path, handful, objective):
    """The default path (the demo's settings: SmolLM2, mean pooling, bf16 where the CPU has it)
    overfits a handful of rows: a drop no machine's rounding can erase (24 steps reach 0.15x of the
    first val loss on an AVX2 CPU; mean pooling needs more steps than last-token pooling did)."""
    from pricetune.training import train

    # regress: the demo's own learning rates; generate: the previous demo's 1e-4 (higher rates diverge
    # in nf4 here), over more steps
    regress = objective == "regress"
    cfg = resolve_config("demo", overrides=dict(
        dataset=str(handful), objective=objective, max_steps=24 if regress else 30, batch_size=6, val_size=12,
        warmup_ratio=0.0, learning_rate=3e-3 if regress else 1e-4, head_learning_rate=1e-2,
        max_length=64 if regress else 128, eval_steps=30, save_steps=30, logging_steps=1,
        output_dir=str(tmp_path / "demo")))
    summary = train(cfg, log=lambda _: None)
    assert summary["steps"] == cfg.max_steps
    assert summary["final_eval_loss"] < (0.5 if regress else 0.7) * summary["initial_eval_loss"], summary


def test_a_compiled_run_trains_as_the_eager_run_and_saves_plain_weights(tiny_model_dir, small_dataset_dir, tmp_path,
                                                                        demo_splits, monkeypatch):
    """torch_compile: the same seed gives the eager run's losses and weights (inductor reorders float
    sums, so close, not equal), the adapter is saved under PEFT's own names (no compile wrapper's
    prefix), the compiled kernels are cached inside the run directory, and the run loads and prices
    like any other."""
    from safetensors.torch import load_file

    from pricetune.inference import load_model

    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)  # restored after the test
    runs = {}
    for compiled in (False, True):
        out = tmp_path / ("compiled" if compiled else "eager")
        cfg = resolve_config("demo", overrides=tiny_overrides(
            tiny_model_dir, small_dataset_dir, out, objective="regress", quantization="none", max_steps=3,
            max_length=64, torch_compile=compiled))
        trainer, _ = prepare_trainer(cfg, log=lambda _: None)
        trainer.train()
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        runs[compiled] = losses, load_file(str(out / "checkpoint-3" / "adapter_model.safetensors")), out
    assert any((tmp_path / "compiled" / ".cache" / "inductor").iterdir())
    assert not (tmp_path / "eager" / ".cache").exists()
    (eager_losses, eager_weights, _), (losses, weights, out) = runs[False], runs[True]
    assert len(losses) == 3 and losses == pytest.approx(eager_losses, rel=1e-3)
    assert weights.keys() == eager_weights.keys()
    for name, w in weights.items():
        torch.testing.assert_close(w, eager_weights[name], rtol=1e-2, atol=1e-4)
    prompts = [r["prompt"] for r in demo_splits["test"][:3]]
    assert len(load_model(run=str(out / "checkpoint-3"), precision="fp32", merge=False).price(prompts, batch_size=3)) == 3


def test_torch_compile_on_a_cpu_without_a_compiler_is_refused_before_loading(monkeypatch):
    from pricetune.errors import PricetuneError
    from pricetune.training.common import check_compiler

    monkeypatch.setenv("PATH", "")
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(PricetuneError, match="needs a C\\+\\+ compiler.*--no-torch-compile"):
        check_compiler(True, "cpu")
    check_compiler(False, "cpu")  # off: nothing to build
