"""The defects a review found (issue #10), each with the test that would have caught it."""

import json

import pytest

from pricetune.cli import build_parser, main
from pricetune.config import resolve_config
from pricetune.errors import ConfigError, DataError

from .conftest import write_jsonl

PROMPT = "What does this cost to the nearest dollar?\n\nTitle: a pen\n\nPrice is $"


def test_every_subcommand_help_works(capsys):
    parser, _ = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert {"train", "evaluate", "predict", "serve", "export", "push", "ensemble", "bench"} <= set(commands)
    for name in [None, *commands]:
        with pytest.raises(SystemExit) as exit_:
            main(([name] if name else []) + ["--help"])
        assert exit_.value.code == 0, name
        assert "usage:" in capsys.readouterr().out, name


def test_train_help_shows_the_demo_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--base-model" in out and "[default: smollm2-135m]" in out and "~30% more compute" in out


def test_completions_are_canonical_and_prompts_follow_the_template(tmp_path):
    from pricetune.data import read_rows

    f = write_jsonl(tmp_path / "rows.jsonl", [
        {"prompt": PROMPT, "completion": "$1,299.00"},
        {"prompt": PROMPT, "completion": 64.4},
        {"prompt": PROMPT.replace("Price is $", "Cost: $"), "completion": "5.00"},
    ])
    with pytest.raises(DataError, match="prompt template"):
        read_rows(f)
    rows = read_rows(f, on_bad_rows="skip")
    assert [r["completion"] for r in rows] == ["1299.00", "64.00"]


def test_the_prompt_cut_does_not_depend_on_the_label(tokenizer):
    from pricetune.data import COMPLETION_RESERVE, encode_example, encode_prompt

    long_prompt = PROMPT.replace("a pen", "a pen " + "with many words " * 60)
    cheap = encode_example(tokenizer, long_prompt, "5.00", 128)
    dear = encode_example(tokenizer, long_prompt, "123456.00", 128)
    n_cheap = cheap["labels"].count(-100)
    assert cheap["input_ids"][:n_cheap] == dear["input_ids"][:n_cheap] == encode_prompt(tokenizer, long_prompt, 128)
    assert n_cheap == dear["labels"].count(-100) == 128 - COMPLETION_RESERVE
    assert len(dear["input_ids"]) <= 128


def test_a_run_directory_is_never_mixed_into(tiny_model_dir, small_dataset_dir, tmp_path, capsys, monkeypatch):
    from .conftest import tiny_overrides, train_cli_args

    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("preset: demo\n")  # an interrupted run
    (out / "checkpoint-7").mkdir()
    args = train_cli_args(tiny_overrides(tiny_model_dir, small_dataset_dir, out, max_steps=1, quantization="none"))
    # refused before the data is read and tokenized (minutes for a large set), as it once was after
    monkeypatch.setattr("pricetune.training.run.load_data", lambda *a: pytest.fail("the data was read first"))
    assert main(args) == 2
    monkeypatch.undo()
    assert "interrupted run" in capsys.readouterr().err and (out / "checkpoint-7").is_dir()
    assert main(args + ["--overwrite"]) == 0
    assert not (out / "checkpoint-7").exists() and (out / "summary.json").is_file()


def test_config_errors_come_together_with_suggestions(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("lora_rr: 3\nbatch_size: abc\nlearning_rate: -1\nlr_scheduler: cosin\n")
    with pytest.raises(ConfigError) as e:
        resolve_config(None, bad)
    text = str(e.value)
    for needle in ["lora_rr", "did you mean lora_r", "batch_size", "learning_rate: Input should be greater than 0",
                   "did you mean cosine"]:
        assert needle in text, needle


@pytest.mark.parametrize("flag,value,needle", [
    ("--target-modules", "foo", "foo not found"), ("--optim", "bogus", "optim 'bogus'"),
    ("--lr-scheduler", "bogus", "lr_scheduler 'bogus'"),
    ("--weight-decay", "-1", "weight_decay: Input should be greater than or equal to 0"),
])
def test_dry_run_catches_what_would_fail_after_loading(flag, value, needle, capsys):
    assert main(["train", "--dry-run", flag, value]) == 2
    assert needle in capsys.readouterr().err


def test_a_missing_local_dataset_is_not_found_at_once(tmp_path, monkeypatch):
    import time

    from pricetune.data import load_rows

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for source in ["data/nope", "./nope", "nope.jsonl", "a/b/c"]:
        start = time.monotonic()
        with pytest.raises(DataError, match="not found"):
            load_rows(source)
        assert time.monotonic() - start < 2, source


def test_the_demo_sizes_stay_with_the_demo_data():
    demo = resolve_config(None)
    assert (demo.train_size, demo.val_size, demo.max_length) == (1920, 64, 64)
    other = resolve_config(None, overrides={"dataset": "../shared/data/amazon-items"})
    assert (other.train_size, other.val_size, other.max_length) == (None, 500, 128)
    chosen = resolve_config(None, overrides={"dataset": "x/y", "val_size": 10})
    assert chosen.val_size == 10


def test_failures_are_red_and_names_are_shell_safe(tmp_path, capsys):
    from pricetune.evaluation import plain_text, safe_name, score

    _, rows = score(["a", "b"], [13.99, 13.99], ["", "14.00"], [None, 14.0])
    assert rows[0]["colour"] == "red" and rows[1]["colour"] == "green"
    assert safe_name("constant median ($55.99)") == "constant_median_55.99"
    assert plain_text("constant median $55.99: MAE $93.85") == r"constant median \$55.99: MAE \$93.85"
    preds = write_jsonl(tmp_path / "p.jsonl", [{"prediction": str(i), "price": 10.0} for i in range(10)])
    out = tmp_path / "eval"
    assert main(["evaluate", "--predictions", str(preds), "--limit", "4", "--output-dir", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text())["n"] == 4
    settings = json.loads((out / "settings.json").read_text())
    assert "decode" not in settings and "split" not in settings
    capsys.readouterr()
    assert main(["evaluate", "--predictions", str(preds), "--output-dir", str(out)]) == 2  # not overwritten
    assert "already exists" in capsys.readouterr().err


def test_python_dash_m_pricetune_works():
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "pricetune", "--help"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "usage: pricetune" in p.stdout


def test_help_loads_no_model_library():
    """Every parser is built without torch & co, so `pricetune X --help` answers at once."""
    import subprocess
    import sys

    code = ("import sys; from pricetune.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'transformers', 'bitsandbytes', 'peft', 'trl') if m in sys.modules))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == "[]", p.stdout + p.stderr
