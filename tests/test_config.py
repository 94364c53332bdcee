from datetime import datetime
from pathlib import Path

import pytest
import yaml

from pricetune.cli import main
from pricetune.config import PRESETS, RunConfig, resolve_config
from pricetune.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
SHARED = dict(max_length=128, grad_accum=1, learning_rate=1e-4, warmup_ratio=0.01, lr_scheduler="cosine",
              weight_decay=0.001, optim="paged_adamw_32bit", max_grad_norm=0.3, group_by_length=True,
              save_total_limit=10, hub_strategy="every_save", hub_private=True, push_to_hub=True,
              base_model="meta-llama/Llama-3.2-3B", quantization="4bit", bnb_4bit_quant_type="nf4",
              double_quant=True)


def test_lite_preset_is_the_reference():
    cfg = resolve_config("lite", now=datetime(2026, 1, 2, 3, 4, 5))
    expected = dict(epochs=1, batch_size=32, lora_r=32, lora_alpha=64, lora_dropout=0.1, val_size=500,
                    logging_steps=5, save_steps=100, eval_steps=100, **SHARED)
    assert {k: getattr(cfg, k) for k in expected} == expected
    assert cfg.lora_targets == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert cfg.run_name == "price-2026-01-02_03.04.05-lite"


def test_full_preset_is_the_reference():
    cfg = resolve_config("full", now=datetime(2026, 1, 2, 3, 4, 5))
    expected = dict(epochs=3, batch_size=256, lora_r=256, lora_alpha=512, lora_dropout=0.1, val_size=1000,
                    logging_steps=10, save_steps=200, eval_steps=200, **SHARED)
    assert {k: getattr(cfg, k) for k in expected} == expected
    assert cfg.lora_targets == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert cfg.run_name == "price-2026-01-02_03.04.05"


def test_demo_is_the_default_and_offline():
    cfg = resolve_config()
    assert cfg.preset == "demo" and cfg.base_model == "smollm2-135m" and cfg.dataset == "demo"
    assert cfg.push_to_hub is False


def test_precedence_defaults_preset_yaml_cli(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("lora_r: 8\nbatch_size: 4\n")
    cfg = resolve_config("lite", y, {"batch_size": 2})
    assert cfg.lora_r == 8  # yaml over preset
    assert cfg.batch_size == 2  # command line over yaml
    assert cfg.lora_alpha == 64  # preset over default
    assert cfg.weight_decay == 0.001  # default


def test_unknown_keys_and_bad_values_in_one_message(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("lora_rank: 8\nlora_r: 0\nlora_dropout: 2\nquantization: 3bit\n")
    with pytest.raises(ConfigError) as e:
        resolve_config(None, y)
    msg = str(e.value)
    assert "lora_rank" in msg and "unknown key" in msg and "quantization" in msg


def test_cross_field_problems_listed_together():
    with pytest.raises(ConfigError) as e:
        resolve_config("demo", overrides={"lora_r": 0, "batch_size": -1, "warmup_ratio": 1.5})
    msg = str(e.value)
    assert "lora_r: Input should be greater than 0 (got 0)" in msg
    assert "batch_size: Input should be greater than 0 (got -1)" in msg and "warmup_ratio" in msg
    with pytest.raises(ConfigError) as e:  # field errors and a cross-field one, in one message
        resolve_config("demo", overrides={"regress_huber_delta": 0, "neighbours": -1, "max_steps": 0})
    msg = str(e.value)
    assert "regress_huber_delta: Input should be greater than 0" in msg
    assert "neighbours: Input should be greater than or equal to 0" in msg and "max_steps must be -1" in msg


def test_each_cross_field_problem_is_one_line_even_with_a_semicolon_in_it():
    """A problem's own wording may hold a semicolon: it stays one bullet, not two half-sentences."""
    with pytest.raises(ConfigError) as e:
        resolve_config("demo", overrides={"base_model": "minilm-l6", "objective": "generate", "max_steps": 0,
                                          "target_modules": "query,key,value"})
    bullets = [line for line in str(e.value).splitlines() if line.startswith("  - ")]
    assert any("is an encoder" in b and "use objective regress" in b for b in bullets), bullets
    assert any("max_steps must be -1" in b for b in bullets) and len(bullets) == 2, bullets


def test_the_encoder_with_the_decoders_lora_targets_is_refused_with_what_works():
    """`--base-model minilm-l6` on the demo preset: LoRA on "attention" (q_proj ...) failed once the
    weights had loaded, naming BERT's layers but not the full fine-tune that val chose."""
    with pytest.raises(ConfigError, match=r"use finetune full \(configs/amazon-18k-minilm.yaml"):
        resolve_config("demo", overrides={"base_model": "minilm-l6"})
    assert resolve_config("demo", overrides={"base_model": "minilm-l6", "target_modules": "query,value"}).lora_targets \
        == ["query", "value"]
    assert resolve_config(None, REPO / "configs" / "amazon-18k-minilm.yaml").finetune == "full"


def test_missing_and_malformed_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        resolve_config(None, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        resolve_config(None, bad)


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    cfg = resolve_config(None, path)
    assert isinstance(cfg, RunConfig)
    assert yaml.safe_load(cfg.to_yaml())["lora_r"] == cfg.lora_r


def test_shipped_preset_files_match_presets():
    for name in PRESETS:
        cfg = resolve_config(None, REPO / "configs" / f"{name}.yaml", now=datetime(2026, 1, 1))
        assert cfg.model_dump() == resolve_config(name, now=datetime(2026, 1, 1)).model_dump()


def test_dry_run_shows_every_reference_value(capsys):
    assert main(["train", "--preset", "lite", "--dry-run"]) == 0
    out = capsys.readouterr().out
    for needle in ["lora_r: 32", "lora_alpha: 64", "val_size: 500", "logging_steps: 5", "save_steps: 100",
                   "save_total_limit: 10", "max_grad_norm: 0.3", "group_by_length: true", "optim: paged_adamw_32bit",
                   "hub_strategy: every_save", "hub_private: true", "warmup_ratio: 0.01", "max_length: 128",
                   "lr_scheduler: cosine", "weight_decay: 0.001", "learning_rate: 0.0001", "push:      yes",
                   "-lite"]:
        assert needle in out, needle


def test_cli_reports_config_errors_without_traceback(capsys):
    assert main(["train", "--lora-r", "0", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "lora_r: Input should be greater than 0" in err and "Traceback" not in err


@pytest.mark.parametrize("path", sorted((REPO / "configs" / "accelerate").glob("*.yaml")), ids=lambda p: p.name)
def test_accelerate_configs_are_complete(path):
    """Each launcher recipe parses, says what it is for, and carries the settings its method needs."""
    text = path.read_text()
    cfg = yaml.safe_load(text)
    assert text.startswith("#") and "accelerate launch --config_file configs/accelerate/" in text
    assert cfg["distributed_type"] in {"MULTI_GPU", "FSDP", "DEEPSPEED"} and cfg["num_processes"] >= 2
    if cfg["distributed_type"] == "FSDP":
        assert cfg["fsdp_config"]["fsdp_cpu_ram_efficient_loading"] and not cfg["fsdp_config"]["fsdp_use_orig_params"]
        assert "--bnb-4bit-quant-storage bfloat16" in text
    if cfg["distributed_type"] == "DEEPSPEED" and cfg["deepspeed_config"]["zero_stage"] == 3:
        assert cfg["deepspeed_config"]["zero3_init_flag"] is True


@pytest.mark.parametrize("world,batch,accum,expect", [
    (1, 32, 1, (32, 1)), (8, 32, 1, (4, 1)), (2, 8, 1, (4, 1)), (8, 256, 1, (32, 1)), (4, 16, 2, (8, 1)),
    (16, 4, 8, (2, 1)), (3, 6, 1, (2, 1)), (1, 16, 2, (16, 2)), (2, 16, 4, (16, 2)),
])
def test_batch_split_keeps_the_global_batch(world, batch, accum, expect):
    from pricetune.distributed import split_batch

    per_device, steps = split_batch(batch, accum, world)
    assert (per_device, steps) == expect
    assert per_device * steps * world == batch * accum


def test_a_batch_that_cannot_be_split_is_refused():
    from pricetune.distributed import split_batch
    from pricetune.errors import PricetuneError

    with pytest.raises(PricetuneError, match="cannot be split evenly over 3 processes"):
        split_batch(32, 1, 3)


def test_the_plan_warns_when_lora_dropout_would_make_compiled_layers_slow_on_a_cpu(capsys, monkeypatch):
    monkeypatch.setattr("pricetune.training.run.detect_device", lambda: "cpu")
    assert main(["train", "--config", "amazon-regress", "--lora-dropout", "0.1", "--dry-run"]) == 0
    assert "LoRA dropout 0.1 with compiled layers" in capsys.readouterr().out
    for quiet in (["--lora-dropout", "0"], ["--lora-dropout", "0.1", "--no-torch-compile"]):
        assert main(["train", "--config", "amazon-regress", *quiet, "--dry-run"]) == 0
        assert "compiled layers:" not in capsys.readouterr().out


def test_dry_run_under_a_launcher_prints_the_distributed_plan(capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("RANK", "0")
    assert main(["train", "--preset", "full", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "processes: 8" in out and "batch:     global 256 = 32 per device x 1 accumulation step(s) x 8" in out
    monkeypatch.setenv("RANK", "3")
    assert main(["train", "--preset", "full", "--dry-run"]) == 0
    assert capsys.readouterr().out == ""  # one plan per launch, from rank 0
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("RANK", "0")
    assert main(["train", "--preset", "lite", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "sharded by FSDP" in out and "fast path is off" in out


def test_options_that_left_load_at_their_off_value_and_are_refused_otherwise(tmp_path):
    from pricetune.config import load_run_config

    run = tmp_path / "old-run"
    run.mkdir()
    saved = resolve_config("demo").model_dump()
    # a run saved before the options left names them all, at the values that changed nothing
    saved.update(regress_bins=64, regress_bin_sigma=0.75, regress_layers=None, regress_head_init="random")
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    assert load_run_config(run).objective == saved["objective"]
    (run / "config.yaml").write_text(yaml.safe_dump({**saved, "regress_layers": 15}))
    with pytest.raises(ConfigError, match="regress_layers: 15 is no longer offered"):
        load_run_config(run)
    mine = tmp_path / "mine.yaml"
    mine.write_text("regress_head_init: probe\n")
    with pytest.raises(ConfigError, match="regress_head_init: 'probe' is no longer offered.*RESULTS"):
        resolve_config(yaml_path=mine)
    with pytest.raises(ConfigError, match="regress_loss"):
        resolve_config("demo", overrides={"regress_loss": "bins"})
