"""Every kind of bad input gets a clear message naming where, a non-zero exit, and no traceback —
before any model weights are loaded."""

import errno
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pricetune.cli import main
from pricetune.config import resolve_config
from pricetune.data import load_rows, read_rows
from pricetune.errors import DataError, PricetuneError

GOOD = b'{"prompt": "What does this cost?\\n\\nTitle: ok\\n\\nPrice is $", "completion": "2.00"}\n'

BAD_DATA = {
    "malformed JSON": (b'{"prompt": "x Price is $", "completion": \n', "malformed JSON"),
    "missing prompt": (b'{"completion": "1.00"}\n', "missing prompt"),
    "empty prompt": (b'{"prompt": "", "completion": "1.00"}\n', "empty prompt"),
    "missing completion": (b'{"prompt": "x Price is $"}\n', "missing completion"),
    "not a price": (b'{"prompt": "x Price is $", "completion": "call us"}\n', "not a price"),
    "negative": (b'{"prompt": "x Price is $", "completion": "-3.00"}\n', "negative price"),
    "absurd": (b'{"prompt": "x Price is $", "completion": "123456789.00"}\n', "absurd price"),
    "non-UTF-8": (b'{"prompt": "\xff\xfe", "completion": "1.00"}\n', "not UTF-8"),
    "wrong columns": (b'{"text": "x", "price": 3}\n', "no 'prompt' column (columns: price, text)"),
}


def _data_dir(tmp_path, train_bytes: bytes, with_val=True):
    d = tmp_path / "data"
    d.mkdir()
    (d / "train.jsonl").write_bytes(GOOD + train_bytes)
    if with_val:
        (d / "val.jsonl").write_bytes(GOOD)
    (d / "test.jsonl").write_bytes(GOOD)
    return d


def _train(tmp_path, data, *extra):
    # a base model that does not exist: reaching it would fail differently, so passing
    # these tests proves the data was rejected first
    return main(["train", "--dataset", str(data), "--base-model", str(tmp_path / "no-model"),
                 "--output-dir", str(tmp_path / "run"), "--max-steps", "1", *extra])


@pytest.mark.parametrize("kind", list(BAD_DATA))
def test_train_rejects_bad_rows_before_loading(tmp_path, capsys, kind):
    content, needle = BAD_DATA[kind]
    data = _data_dir(tmp_path, content)
    assert _train(tmp_path, data) == 2
    err = capsys.readouterr().err
    assert needle in err and f"{data / 'train.jsonl'}:2" in err and "Traceback" not in err
    assert "--on-bad-rows skip" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("kind", ["not a price", "malformed JSON"])
def test_evaluate_rejects_bad_rows_before_loading(tmp_path, capsys, kind):
    content, needle = BAD_DATA[kind]
    data = _data_dir(tmp_path, b"")
    (data / "test.jsonl").write_bytes(GOOD + content)
    assert main(["evaluate", "--dataset", str(data), "--base-model", str(tmp_path / "no-model"),
                 "--no-adapter"]) == 2
    err = capsys.readouterr().err
    assert needle in err and "test.jsonl:2" in err and "Traceback" not in err


def test_skip_reports_counts_then_goes_on(tmp_path, capsys):
    data = _data_dir(tmp_path, BAD_DATA["negative"][0] + BAD_DATA["malformed JSON"][0])
    assert _train(tmp_path, data, "--on-bad-rows", "skip") == 2  # goes on, then fails at the model
    captured = capsys.readouterr()
    assert "skipped 2 invalid row(s): 1 bad completion, 1 malformed JSON" in captured.out
    assert "no-model" in captured.err and "not found" in captured.err


def test_missing_split_empty_file_and_missing_dataset(tmp_path, capsys):
    data = _data_dir(tmp_path, b"", with_val=False)
    assert _train(tmp_path, data) == 2
    assert "missing split(s) val" in capsys.readouterr().err
    (data / "val.jsonl").write_bytes(b"")
    assert _train(tmp_path, data) == 2
    assert "no usable rows" in capsys.readouterr().err
    capsys.readouterr()
    assert main(["train", "--dataset", str(tmp_path / "nope"), "--dry-run"]) == 0  # dry run loads nothing
    assert "is not on this machine" in capsys.readouterr().out  # but says the path is wrong
    assert _train(tmp_path, tmp_path / "nope.jsonl") == 2
    assert "dataset not found" in capsys.readouterr().err


def test_bad_model_path_and_bad_config(tmp_path, capsys, small_dataset_dir):
    assert main(["train", "--dataset", str(small_dataset_dir), "--base-model", str(tmp_path / "nope"),
                 "--output-dir", str(tmp_path / "run")]) == 2
    assert "not found" in capsys.readouterr().err
    cfg = tmp_path / "c.yaml"
    cfg.write_text("batch_size: many\nlearning_rat: 1\n")
    assert main(["train", "--config", str(cfg), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "batch_size" in err and "learning_rat" in err and "Traceback" not in err
    assert main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    assert main(["train", "--config", "amazon-18k-regres", "--dry-run"]) == 2
    assert "did you mean amazon-18k-regress?" in capsys.readouterr().err


def test_evaluate_a_mistyped_run_directory_says_so(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "runs" / "nope"), "--output-dir", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert "nope is not a run directory here" in err and "--dataset" in err
    assert not (tmp_path / "e").exists()
    assert main(["evaluate", "--output-dir", str(tmp_path / "e")]) == 2  # nothing named at all
    assert "which items?" in capsys.readouterr().err


@pytest.mark.parametrize("form", ["parent exists", "absolute", "three parts"])
def test_a_missing_local_adapter_is_refused_without_asking_the_hub(tmp_path, capsys, monkeypatch, form):
    import huggingface_hub

    def no_hub(*args, **kwargs):
        raise AssertionError("asked the Hub for a local path")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_hub)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    adapter = {"parent exists": "runs/nope", "absolute": str(tmp_path / "nope"), "three parts": "a/b/c"}[form]
    assert main(["predict", "--adapter", adapter, "Title: a lamp"]) == 2
    err = capsys.readouterr().err
    assert f"adapter {adapter!r} not found" in err and "Traceback" not in err
    assert ("runs/ is a folder here" in err) == (form == "parent exists")


def refused_by_the_parser(argv, capsys) -> str:
    """What argparse says as it refuses `argv` (exit 2), before any command code runs."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    return capsys.readouterr().err


def test_bad_generation_options_stop_before_loading(tmp_path, capsys, small_dataset_dir):
    err = refused_by_the_parser(["evaluate", "--base-model", str(tmp_path / "nope"), "--no-adapter", "--dataset",
                                 str(small_dataset_dir), "--decode", "median", "--samples", "0"], capsys)
    assert "argument --samples: must be >= 1 (got 0)" in err
    err = refused_by_the_parser(["predict", "--run", str(tmp_path), "--samples", "-3", "a red kettle"], capsys)
    assert "argument --samples: must be >= 1 (got -3)" in err


# Each once crashed after minutes of work (a zero batch: range() with step 0 once the model had loaded;
# port 99999: an OverflowError traceback) or was taken silently (a negative count)
OUT_OF_RANGE = {
    "serve port": (["serve", "--run", "R", "--port", "99999"], "--port: must be >= 0 and <= 65535 (got 99999)"),
    "serve timeout": (["serve", "--run", "R", "--timeout", "0"], "--timeout: must be > 0 (got 0)"),
    "evaluate batch": (["evaluate", "R", "--batch-size", "0"], "--batch-size: must be >= 1 (got 0)"),
    "calibrate batch": (["calibrate", "R", "--batch-size", "0"], "--batch-size: must be >= 1 (got 0)"),
    "bench steps": (["bench", "train", "--steps", "0"], "--steps: must be >= 1 (got 0)"),
    "export check": (["export", "R", "--out", "O", "--check", "-1"], "--check: must be >= 0 (got -1)"),
    "prepare val": (["prepare", "c.csv", "--out", "O", "--val", "-5"], "--val: must be >= 0 (got -5)"),
    "not a number": (["serve", "--run", "R", "--max-queue", "lots"], "--max-queue: invalid int value: 'lots'"),
}


@pytest.mark.parametrize("case", list(OUT_OF_RANGE))
def test_a_number_out_of_range_is_refused_by_the_parser_naming_the_option(capsys, case):
    argv, message = OUT_OF_RANGE[case]
    assert message in refused_by_the_parser(argv, capsys)


def test_a_run_directory_where_a_command_takes_it_as_run_says_so(tiny_model_dir, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(resolve_config(overrides={"base_model": str(tiny_model_dir)}).to_yaml())
    assert f"(a run directory goes after --run: --run {run})" in refused_by_the_parser(["serve", str(run)], capsys)
    assert main(["predict", str(run)]) == 2
    assert f"{run} is a run directory: give it as --run {run}" in capsys.readouterr().err
    assert main(["predict", "--file", "items.jsonl", "a red kettle"]) == 2
    assert "give a description or --file items.jsonl, not both" in capsys.readouterr().err
    # a description longer than a file name may be is a description, not a folder to look into
    long = "Title: a red kettle, " + "with a whistle " * 30
    assert main(["predict", "--no-adapter", "--base-model", str(tmp_path / "nope"), long]) == 2
    assert "not found: not a local directory" in capsys.readouterr().err  # its own error, not OSError's


def test_decoding_options_on_a_regress_run_are_refused_before_loading(tmp_path, capsys, small_dataset_dir):
    run = tmp_path / "run"
    run.mkdir()
    # a base that does not exist: reaching it would fail differently
    cfg = resolve_config("demo", overrides={"output_dir": str(run), "base_model": str(tmp_path / "no-model")})
    assert cfg.objective == "regress"
    (run / "config.yaml").write_text(cfg.to_yaml())
    assert main(["evaluate", str(run), "--dataset", str(small_dataset_dir), "--split", "val", "--decode", "median"]) == 2
    err = capsys.readouterr().err
    assert "--decode median" in err and "regress run" in err and "Traceback" not in err
    assert main(["predict", "--run", str(run), "--samples", "8", "a red kettle"]) == 2
    assert "--samples 8" in capsys.readouterr().err
    assert main(["calibrate", str(run), "--decode", "median"]) == 2  # no adapter: loading it would say so instead
    assert "--decode median" in capsys.readouterr().err
    # without them loading is reached (and here, finds no adapter)
    assert main(["predict", "--run", str(run), "a red kettle"]) == 2
    assert "has no adapter yet (adapter_config.json): its training has not finished, nor saved a checkpoint" in \
        capsys.readouterr().err
    # an interrupted run: its newest complete checkpoint is offered, and --resume (it asked "did training finish?")
    for step in (2, 10, 4):
        (run / f"checkpoint-{step}").mkdir()
        (run / f"checkpoint-{step}" / "adapter_config.json").write_text("{}")
    (run / "checkpoint-12").mkdir()  # a half-written one holds no adapter yet
    assert main(["predict", "--run", str(run), "a red kettle"]) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert f"as the model was at step 10 (give {run / 'checkpoint-10'})" in err
    assert f"`pricetune train --output-dir {run} --resume` finishes it" in err
    assert main(["export", str(run), "--out", str(tmp_path / "merged")]) == 2  # export takes a checkpoint too
    assert f"(give {run / 'checkpoint-10'})" in capsys.readouterr().err.replace("\n", " ")
    assert main(["export", str(run / "checkpoint-12"), "--out", str(tmp_path / "merged")]) == 2
    assert "checkpoint-12 has no adapter_config.json: not a complete checkpoint" in capsys.readouterr().err


# --- property test: loaders either load valid rows or raise DataError, nothing else ------------------

row_values = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                       st.text(max_size=20), st.lists(st.integers(), max_size=3))
rows = st.one_of(
    st.dictionaries(st.sampled_from(["prompt", "completion", "price", "text", "x"]), row_values, max_size=4),
    row_values,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(rows.map(lambda r: json.dumps(r).encode()), st.binary(max_size=40)), max_size=8),
       st.sampled_from([".jsonl", ".json", ".csv"]))
def test_loaders_load_valid_rows_or_raise_their_own_error(tmp_path_factory, lines, suffix):
    f = tmp_path_factory.mktemp("prop") / f"train{suffix}"
    f.write_bytes(b"\n".join(lines))
    for mode in ("error", "skip"):
        try:
            loaded = read_rows(f, mode)
        except DataError:
            continue
        for r in loaded:
            assert isinstance(r["prompt"], str) and r["prompt"].strip()
            assert 0 <= r["price"] <= 1_000_000


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200))
def test_directory_loader_on_random_bytes(tmp_path_factory, blob):
    d = tmp_path_factory.mktemp("propdir")
    (d / "train.jsonl").write_bytes(blob)
    try:
        load_rows(str(d), "skip")
    except DataError:
        pass


# --- disk full and CUDA out of memory ------------------------------------------------------------


def test_disk_full_during_a_checkpoint_keeps_the_previous(tiny_model_dir, small_dataset_dir, tmp_path, monkeypatch):
    from pricetune.training import prepare_trainer

    from .conftest import tiny_overrides

    cfg = resolve_config("demo", overrides=tiny_overrides(tiny_model_dir, small_dataset_dir, tmp_path / "r",
                                                          quantization="none", max_steps=3, eval_steps=100))
    trainer, ctx = prepare_trainer(cfg, log=lambda _: None)
    original = type(trainer)._save_optimizer_and_scheduler

    def full_disk_at_step_2(self, output_dir):
        if self.state.global_step == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, output_dir)

    monkeypatch.setattr(type(trainer), "_save_optimizer_and_scheduler", full_disk_at_step_2)
    with pytest.raises(PricetuneError) as e:
        trainer.train()
    msg = str(e.value)
    assert "not enough disk space" in msg and "checkpoint-1 is kept" in msg and "--resume" in msg
    run = ctx["run_dir"]
    assert (run / "checkpoint-1" / "trainer_state.json").is_file()
    assert not (run / "checkpoint-2").exists() and not (run / ".staging").exists()


def test_oom_advice_keeps_the_effective_batch():
    from pricetune.training import oom_advice

    msg = oom_advice(resolve_config("lite", overrides={"gradient_checkpointing": False}))
    assert "--batch-size 16 --grad-accum 2 (same effective batch of 32)" in msg
    assert "--gradient-checkpointing" in msg
    msg = oom_advice(resolve_config("demo", overrides={"quantization": "none"}))
    assert "--quantization 8bit or 4bit" in msg


def test_resume_refuses_a_setting_it_would_ignore(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(resolve_config("demo", overrides={"output_dir": str(run), "max_steps": 5}).to_yaml())
    resume = ["--output-dir", str(run), "--resume", "--dry-run"]
    # the command that started the run, plus --resume, is welcome; so is --resume alone
    assert main(["train", "--max-steps", "5", *resume]) == 0
    assert main(["train", *resume]) == 0
    capsys.readouterr()
    # a changed setting would not apply: refused, naming it with both values
    assert main(["train", "--max-steps", "6", "--lora-r", "8", *resume]) == 2
    err = capsys.readouterr().err
    assert "max_steps (5 in the run, 6 given)" in err and "lora_r (" in err and "Traceback" not in err
    assert main(["train", "--overwrite", *resume]) == 2
    assert "--overwrite would delete it" in capsys.readouterr().err
    assert (run / "config.yaml").is_file()


def test_resume_with_the_starting_command_after_training_resolved_its_auto_settings(tmp_path, capsys):
    # training saves `fast` and `torch_compile` resolved (choose_device_and_path), not as the user left them
    run = tmp_path / "run"
    run.mkdir()
    cfg = resolve_config("demo", overrides={"output_dir": str(run), "max_steps": 5})
    assert cfg.fast is None
    (run / "config.yaml").write_text(cfg.model_copy(update=dict(fast=True)).to_yaml())
    resume = ["--output-dir", str(run), "--resume", "--dry-run"]
    assert main(["train", "--preset", "demo", "--max-steps", "5", *resume]) == 0
    capsys.readouterr()
    # a value the user does give is still compared
    assert main(["train", "--preset", "demo", "--max-steps", "5", "--no-fast", *resume]) == 2
    assert "fast (True in the run, False given)" in capsys.readouterr().err


def test_an_output_file_naming_a_folder_is_refused_before_the_work(tmp_path, capsys):
    items = tmp_path / "items.jsonl"
    items.write_text('{"description": "a red kettle"}\n')
    # no model exists at --run: the refusal has to come first (it once came after pricing every item;
    # bench, after the benchmark)
    assert main(["predict", "--run", str(tmp_path / "no-run"), "--file", str(items), "--out", str(tmp_path)]) == 2
    assert f"--out {tmp_path} is a folder" in capsys.readouterr().err
    assert main(["bench", "train", "--json", str(tmp_path)]) == 2
    assert f"--json {tmp_path} is a folder" in capsys.readouterr().err


def test_data_without_a_val_split_is_refused_in_the_words_of_the_command(tmp_path, capsys, small_dataset_dir):
    data = tmp_path / "train-only"
    data.mkdir()
    (data / "train.jsonl").write_bytes((small_dataset_dir / "train.jsonl").read_bytes())
    run = tmp_path / "run"
    run.mkdir()
    cfg = resolve_config(overrides={"dataset": str(data), "base_model": str(tmp_path / "no-model")})
    (run / "config.yaml").write_text(cfg.to_yaml())
    # calibrate looked at the data only after loading the model (here: "base model ... not found")
    assert main(["calibrate", str(run)]) == 2
    assert f"dataset {data} has no val split (found: train)" in capsys.readouterr().err
    # select said "missing split(s) val, val" and how to train without one
    assert main(["select", "--dataset", str(data), "--member", "mlp", "--member", "median", "--out",
                 str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "missing split(s) val (found: train); add the file (e.g. val.jsonl)" in err and "--val-size" not in err


def test_predict_names_the_unreadable_rows_of_its_file_before_loading(tmp_path, capsys):
    items = tmp_path / "items.jsonl"
    items.write_text('{"description": "a red kettle"}\n{"description": "a pen"\n')
    assert main(["predict", "--run", str(tmp_path / "no-run"), "--file", str(items)]) == 2
    assert f"{items}: unreadable rows (1 malformed JSON):\n  {items}:2: malformed JSON" in capsys.readouterr().err


def test_a_catalog_row_is_priced_as_prepare_writes_its_text_and_a_text_beside_a_title_is_said(tmp_path, capsys):
    """A catalog's title beside its description was left out (only the description was priced): its
    columns are now one text, as `pricetune prepare` writes it; a 'text' column is the whole text."""
    from pricetune.data.rows import item_text_of

    row = {"Title": "Dewalt 20V drill", "description": "Cordless, two batteries", "brand": "DEWALT", "sku": "7"}
    assert item_text_of(row) == "Title: Dewalt 20V drill\nBrand: DEWALT\nDescription: Cordless, two batteries"
    assert item_text_of({"description": "a pen", "sku": "7"}) == "a pen"  # a description alone, as before
    assert item_text_of({"Description": "a pen"}) == "a pen" and item_text_of({"TEXT": "a cup"}) == "a cup"  # any case
    assert item_text_of({"text": "a cup", "title": "Cup"}) == "a cup" and item_text_of({"sku": "7"}) is None
    items = tmp_path / "items.csv"
    items.write_text("title,description,sku\nDewalt 20V drill,Cordless with two batteries,7\n")
    assert main(["predict", "--run", str(tmp_path / "no-run"), "--file", str(items)]) == 2
    assert "note:" not in capsys.readouterr().err  # nothing left out
    items.write_text("text,title\nA cordless drill,Dewalt 20V drill\n")
    assert main(["predict", "--run", str(tmp_path / "no-run"), "--file", str(items)]) == 2
    assert f"note: {items}: each row's 'text' is priced, its title not" in capsys.readouterr().err
    items.write_text("sku,colour\n7,red\n")
    assert main(["predict", "--run", str(tmp_path / "no-run"), "--file", str(items)]) == 2
    assert "needs a non-empty 'prompt', 'text' or 'description', or catalog columns such as title" in capsys.readouterr().err


def test_a_blank_description_or_an_empty_file_is_refused_before_loading(tmp_path, capsys):
    """A blank description was priced (the model answers the bare question with some price), an empty
    file crashed in the tokenizer once the model had loaded: both are refused first (no run is read)."""
    assert main(["predict", "--run", str(tmp_path / "no-run"), "   "]) == 2
    assert "the description is blank" in capsys.readouterr().err
    empty = tmp_path / "items.jsonl"
    empty.write_text("\n")
    assert main(["predict", "--run", str(tmp_path / "no-run"), "--file", str(empty)]) == 2
    assert f"{empty} holds no items to price" in capsys.readouterr().err


def test_the_python_api_refuses_what_it_cannot_price_before_the_model():
    from pricetune.inference import Pricer

    pricer = Pricer(None)  # no model: each refusal comes before one would be used
    assert pricer.price_items([]) == [] and pricer.price_many([]) == []
    with pytest.raises(PricetuneError, match="the first at index 1: '  '"):
        pricer.price_many(["Title: a kettle", "  "])
    with pytest.raises(PricetuneError, match="non-empty text"):
        pricer.price(None)
    with pytest.raises(PricetuneError, match="use price"):
        pricer.price_items("Title: a kettle")  # a string is not a list of one-letter descriptions
    with pytest.raises(PricetuneError, match=r"index 0: \{'sku': '7'\}; a catalog row needs a non-empty 'prompt'"):
        pricer.price({"sku": "7"})


def test_the_python_api_prices_a_catalog_row_as_predict_file_reads_it():
    from pricetune.inference import Pricer

    class Loaded:  # the model's part of Pricer: a price per text, here its length
        def price(self, texts, decode, batch_size, samples, progress):
            return [(None, float(len(t))) for t in texts]

    pricer = Pricer(Loaded())
    row = {"title": "Dewalt 20V drill", "description": "Cordless", "sku": "DCD771C2X"}
    assert pricer.price(row) == len("Title: Dewalt 20V drill\nDescription: Cordless")
    assert pricer.price_many([row, "a pen"]) == [pricer.price(row), 5.0]
