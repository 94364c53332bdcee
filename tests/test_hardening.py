"""Defects a review found in training, ensembles, pushes and data; each test failed before its fix."""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from tests.conftest import tiny_overrides, train_cli_args, write_jsonl


def test_a_checkpoint_push_carries_the_neighbours_and_the_public_config(tmp_path, monkeypatch):
    from pricetune import hub
    from pricetune.training.callbacks import CheckpointPusher

    run = tmp_path / "run"
    (run / "checkpoint-4").mkdir(parents=True)
    (run / "checkpoint-4" / "adapter_config.json").write_text("{}")
    (run / "neighbours.json").write_text('{"texts": [], "prices": []}')
    (run / "config.yaml").write_text(f"dataset: {tmp_path}/secret-folder/data\nbase_model: smollm2-135m\n")
    pushed = {}

    def fake_push(folder, repo_id, private, token, retries, log):
        pushed["files"] = sorted(p.name for p in Path(folder).iterdir())
        pushed["config"] = (Path(folder) / hub.CONFIG_NAME).read_text()

    monkeypatch.setattr(hub, "push_folder", fake_push)
    monkeypatch.setattr(hub, "get_token", lambda: None)
    cfg = SimpleNamespace(run_name="r", hub_model_id="someone/r", hub_user=None, hub_private=True)
    pusher = CheckpointPusher(cfg, log=lambda _: None)
    pusher.on_save(SimpleNamespace(output_dir=str(run)), SimpleNamespace(global_step=4), None)
    pusher.wait()
    assert "neighbours.json" in pushed["files"] and "adapter_config.json" in pushed["files"]
    assert "secret-folder" not in pushed["config"] and str(tmp_path) not in pushed["config"]


def test_the_model_card_names_no_local_folder(tmp_path):
    from pricetune.config import resolve_config
    from pricetune.training.card import write_model_card

    data = tmp_path / "alice-private" / "catalog"
    cfg = resolve_config("demo", overrides=dict(dataset=str(data), output_dir=str(tmp_path / "alice-private" / "run")))
    write_model_card(tmp_path, cfg, dict(train_rows=5, val_rows=2, steps=1, initial_eval_loss=None,
                                         final_eval_loss=None, precision="fp32", device="cpu"))
    card = (tmp_path / "README.md").read_text()
    assert "alice-private" not in card and str(tmp_path) not in card and "<local: catalog>" in card
    # the front matter is YAML the Hub can read, also for a local base
    local = cfg.model_copy(update=dict(base_model=str(tmp_path / "alice-private" / "my-base")))
    write_model_card(tmp_path, local, dict(train_rows=5, val_rows=2, steps=1, initial_eval_loss=None,
                                           final_eval_loss=None, precision="fp32", device="cpu"))
    front = yaml.safe_load((tmp_path / "README.md").read_text().split("---\n")[1])
    # ... with no base_model: the Hub refuses a push whose card names one that is no Hub model id
    assert "base_model" not in front and front["library_name"] == "peft"
    assert "<local: my-base>" in (tmp_path / "README.md").read_text()  # the text still says what it was
    # a base known by name is the Hub model its package's weights copy; a Hub id is itself
    for base, named in (("smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct"), ("gemma-3-270m", "google/gemma-3-270m"),
                        ("minilm-l6", "sentence-transformers/all-MiniLM-L6-v2"),
                        ("meta-llama/Llama-3.2-3B", "meta-llama/Llama-3.2-3B")):
        write_model_card(tmp_path, cfg.model_copy(update=dict(base_model=base)),
                         dict(train_rows=5, val_rows=2, steps=1, initial_eval_loss=None, final_eval_loss=None,
                              precision="fp32", device="cpu"))
        assert yaml.safe_load((tmp_path / "README.md").read_text().split("---\n")[1])["base_model"] == named


def test_metrics_of_steps_after_the_checkpoint_leave_on_resume(tmp_path):
    from pricetune.training.callbacks import MetricsLogger

    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "loss": 1.0 / (s + 1)}) + "\n" for s in range(0, 11)))
    MetricsLogger(path).drop_after(6)
    assert [json.loads(l)["step"] for l in path.read_text().splitlines()] == list(range(0, 7))
    # a run killed mid-write leaves a cut last line: resuming drops it instead of failing
    with open(path, "a") as f:
        f.write('{"step": 7, "lo')
    MetricsLogger(path).drop_after(6)
    assert [json.loads(l)["step"] for l in path.read_text().splitlines()] == list(range(0, 7))


def test_the_tokenized_cache_is_keyed_on_the_price_scale(tmp_path):
    from pricetune.config import resolve_config
    from pricetune.regress import PriceScale
    from pricetune.training.run import cached

    from datasets import Dataset

    cfg = resolve_config("demo", overrides=dict(objective="regress"))
    rows = [{"prompt": "p", "price": 10.0}]

    def tokenize_with(scale):
        return lambda rs: Dataset.from_list([{"target": scale.center} for _ in rs])

    before, after = PriceScale(center=1.0, scale=1.0), PriceScale(center=2.5, scale=1.0)  # a resumed run's saved scale
    assert cached(tmp_path, "train", tokenize_with(before), rows, cfg, before)[0]["target"] == 1.0
    # a resumed run, with its saved scale, gets targets standardised with that scale
    assert cached(tmp_path, "train", tokenize_with(after), rows, cfg, after)[0]["target"] == 2.5


# A SIGTERM arrives while the closing validation pass runs (patched in to fire there)
SIGNAL_IN_FINAL_EVAL = """
import os, signal, sys
import pricetune.training.run as run
real = run.closing_eval_loss
def closing(trainer):
    os.kill(os.getpid(), signal.SIGTERM)
    return real(trainer)
run.closing_eval_loss = closing
from pricetune.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_signal_during_the_closing_evaluation_keeps_the_finished_run(tmp_path, tiny_model_dir, small_dataset_dir):
    overrides = tiny_overrides(tiny_model_dir, small_dataset_dir, tmp_path / "run", quantization="none",
                               save_steps=2, eval_steps=2)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-c", SIGNAL_IN_FINAL_EVAL, *train_cli_args(overrides)], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["final_eval_loss"] is not None and (tmp_path / "run" / "adapter_model.safetensors").is_file()


def test_the_rows_an_epoch_repeats_under_several_processes_are_counted():
    from pricetune.distributed import repeated_rows

    assert repeated_rows(100, 8, 1) == 0
    assert repeated_rows(96, 8, 2) == 0  # 6 rounds of 2 x 8
    assert repeated_rows(100, 8, 2) == 12  # the 7th round of 16 holds 4 new rows and 12 from the start


def test_a_training_row_never_sees_its_exact_twins_price():
    from pricetune.baselines.neighbours import NeighbourIndex

    rows = [{"prompt": f"What does this cost to the nearest dollar?\n\nTitle: {t}\n\nPrice is $", "price": p}
            for t, p in [("red kettle steel", 10.0), ("red kettle steel", 99.0), ("red kettle iron", 20.0),
                         ("blue mug", 5.0), ("green lamp", 40.0)]]
    index = NeighbourIndex.build(rows, 1)
    found = index.neighbours([index.texts[i] for i in range(5)], exclude_self=True)
    assert found[0] == [2] and found[1] == [2]  # not each other: the same text, the other's price
    # a new item that matches a training item may see it: that is a lookup, not a leak
    assert index.neighbours(["red kettle steel"])[0][0] in (0, 1)


def test_train_help_says_which_defaults_belong_to_the_demo_data(capsys):
    from pricetune.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for shown in ("1920 on the demo data; all rows with another --dataset",
                  "64 on the demo data; 500 with another --dataset", "64 on the demo data; 128 with another --dataset"):
        assert shown in text


def test_a_refusal_of_every_row_names_the_option_that_keeps_them(tmp_path):
    from pricetune.errors import DataError
    from pricetune.prepare import PrepareSettings, prepare

    rows = [{"price": 10 + i, "title": f"house {i}", "city": "Abilene"} for i in range(30)]  # "Title: house 0": 14 chars
    src = write_jsonl(tmp_path / "catalog.jsonl", rows)
    with pytest.raises(DataError) as err:
        prepare(PrepareSettings(str(src), str(tmp_path / "out")), log=lambda _: None)
    assert "--min-chars 14 keeps every item" in str(err.value) and not (tmp_path / "out").exists()


def test_two_items_the_token_cut_makes_one_prompt_are_one_item(tmp_path):
    from pricetune.prepare import Funnel, dedupe_prompts

    funnel = Funnel()
    items = [{"text": "Title: A kettle", "price": 10.0, "where": "a:1"},
             {"text": "title: a kettle", "price": 12.0, "where": "a:2"}, {"text": "Title: A mug", "price": 5.0}]
    assert [it["price"] for it in dedupe_prompts(items, funnel)] == [10.0, 5.0]
    assert funnel.dropped["duplicate after the token cut"] == 1


def test_a_hub_dataset_takes_its_configuration_and_split(monkeypatch):
    import datasets

    from pricetune.cli import build_parser
    from pricetune.prepare import read_source

    asked = {}

    def fake_load(path, name=None, split=None, streaming=False, **kw):
        asked.update(path=path, name=name, split=split, streaming=streaming)
        return iter([{"title": "a kettle", "price": 12.0}])

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    monkeypatch.setattr("pricetune.data.hub_offline", lambda: False)
    # docs/DATA.md's example, as the command line parses it
    parser, _ = build_parser()
    ns = parser.parse_args(["prepare", "McAuley-Lab/Amazon-Reviews-2023", "--hub-config", "raw_meta_Appliances",
                            "--hub-split", "full", "--out", "data/appliances"])
    rows = list(read_source(ns.source, ns.hub_config, ns.hub_split))
    assert asked == dict(path="McAuley-Lab/Amazon-Reviews-2023", name="raw_meta_Appliances", split="full",
                         streaming=True)
    assert rows[0][1]["title"] == "a kettle"


def test_readers_take_a_byte_order_mark_and_keep_u2028_inside_a_field(tmp_path):
    from pricetune.data.rows import read_rows

    prompt = "What does this cost to the nearest dollar?\\n\\nTitle: a\u2028b\\n\\nPrice is $"
    csv_file = tmp_path / "train.csv"
    csv_file.write_bytes(("\ufeffprompt,completion\n" + f'"{prompt}",12.00\n').encode("utf-8").replace(b"\\n", b"\n"))
    rows = read_rows(csv_file)
    assert len(rows) == 1 and rows[0]["price"] == 12.0 and "a\u2028b" in rows[0]["prompt"]
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_bytes(b"\xef\xbb\xbf" + json.dumps({"prompt": prompt.replace("\\n", "\n"), "completion": "3.00"},
                                                   ensure_ascii=False).encode("utf-8") + b"\n")
    assert read_rows(jsonl)[0]["price"] == 3.0


def test_the_fast_path_and_compiling_stay_off_where_they_were_never_measured():
    from pricetune.config import resolve_config
    from pricetune.training.common import resolve_fast

    auto = resolve_config("demo", overrides=dict(torch_compile=True))
    assert resolve_fast(auto, "cpu")[:2] == (True, True)
    fast, compiled, why = resolve_fast(auto, "cuda")
    assert (fast, compiled) == (False, False) and "not yet measured on cuda" in why and "--fast" in why
    asked = resolve_config("demo", overrides=dict(torch_compile=True, fast=True))
    assert resolve_fast(asked, "cuda")[:2] == (True, True)
    assert resolve_fast(resolve_config("demo", overrides=dict(fast=False)), "cpu")[0] is False


def test_the_dry_run_plan_names_the_path(monkeypatch):
    import pricetune.training.run as run
    from pricetune.config import resolve_config

    cfg = resolve_config("lite")
    assert "path:      fast (auto: measured on CPUs" in run.plan(cfg)
    monkeypatch.setattr(run, "detect_device", lambda: "cuda")
    monkeypatch.setattr(run, "describe_device", lambda: "cuda (faked)")
    monkeypatch.setattr(run, "pick_precision", lambda p: "bf16")
    assert "path:      stock (auto: not yet measured on cuda" in run.plan(cfg)


def test_the_cli_hides_peft_s_deprecation_warning_and_no_other(tiny_model_dir):
    """PEFT reads transformers' deprecated `is_gradient_checkpointing` whenever it wraps a model."""
    import warnings

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from pricetune.quiet import quiet_third_party

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_third_party()
        get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"]))
        warnings.warn("a library's own future change", FutureWarning)
    messages = [str(w.message) for w in caught]
    assert not any("is_gradient_checkpointing" in m for m in messages)
    assert "a library's own future change" in messages


def test_pricer_in_a_fresh_interpreter_shows_no_third_party_noise(tiny_model_dir, small_dataset_dir, tmp_path):
    """`Pricer.from_run` in a user's Python printed what the command line hides: PEFT's FutureWarning
    and, on CPUs with AVX-512 BF16, bitsandbytes' 'Failed to load CPU gemm_4bit_forward' (PEFT imports
    it), both before the model was asked anything."""
    import subprocess
    import sys

    from pricetune.config import resolve_config
    from pricetune.training import train

    from .conftest import tiny_overrides

    run = tmp_path / "run"
    train(resolve_config("demo", overrides=tiny_overrides(tiny_model_dir, small_dataset_dir, run, quantization="none",
                                                          max_steps=1)), log=lambda _: None)
    code = f"from pricetune.inference import Pricer; print(Pricer.from_run({str(run)!r}).price('Title: a pen'))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "default"})
    assert done.returncode == 0, done.stderr
    assert "is_gradient_checkpointing" not in done.stderr and "gemm_4bit_forward" not in done.stderr, done.stderr


def test_saving_an_adapter_of_a_base_known_by_name_asks_no_hub_and_warns_nothing(tiny_model_dir, tmp_path):
    """Such an adapter records the base's name (`smollm2-135m`), which PEFT looks up on the Hub at every
    save; the command line hides that lookup's warnings for the names pricetune knows, and only those."""
    import warnings

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from pricetune.quiet import quiet_third_party

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=2, target_modules=["q_proj"]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_third_party()
        for name in ("smollm2-135m", "someone/their-model"):
            model.peft_config["default"].base_model_name_or_path = name
            model.save_pretrained(tmp_path / name.replace("/", "_"))
    messages = [str(w.message) for w in caught]
    assert not any("smollm2-135m" in m for m in messages), messages
    assert any("someone/their-model" in m for m in messages), messages  # offline: PEFT cannot tell, and says so


def test_a_calibration_applies_only_to_the_model_and_decoding_it_was_made_for(tmp_path, capsys):
    from pricetune import intervals
    from pricetune.cli import main
    from pricetune.errors import PricetuneError

    run = tmp_path / "run"
    (run / "checkpoint-5").mkdir(parents=True)
    (run / "config.yaml").write_text("base_model: smollm2-135m\n")
    intervals.save(run, {**intervals.fit([10.0] * 20, [11.0] * 20), "decode": "greedy"})
    # a checkpoint has its own calibration: the final model's is not used for it
    assert main(["predict", "--run", str(run / "checkpoint-5"), "--interval", "0.8", "Title: a pen"]) == 2
    assert f"pricetune calibrate {run / 'checkpoint-5'}" in capsys.readouterr().err
    # ranges made from greedy prices do not fit another decoding: refused with the command that makes them
    assert intervals.load(run, "greedy") is not None
    with pytest.raises(PricetuneError, match=f"pricetune calibrate {run} --decode median"):
        intervals.load(run, "median")
    assert intervals.applies_to({"val_fingerprint": "a"}, "a") and not intervals.applies_to({"val_fingerprint": "a"}, "b")


def test_ranges_calibrated_on_another_val_split_are_not_scored(tmp_path, capsys):
    from pricetune.cli import main
    from pricetune.ensemble import Member, fit_ensemble

    from .conftest import write_jsonl
    from .test_regress import _ensemble_data, _synthetic

    data = _ensemble_data(tmp_path)
    fit_ensemble(str(data), [Member("tfidf"), Member("median")], tmp_path / "ens", log=lambda _: None, cv_repeats=0)
    assert main(["calibrate", "--ensemble", str(tmp_path / "ens")]) == 0
    other = tmp_path / "other"
    for split, seed in (("train", 1), ("val", 5), ("test", 3)):
        write_jsonl(other / f"{split}.jsonl", _synthetic(40, seed))
    capsys.readouterr()
    assert main(["evaluate", "--ensemble", str(tmp_path / "ens"), "--dataset", str(other), "--limit", "0",
                 "--output-dir", str(tmp_path / "eval")]) == 0
    assert "made on another val split" in capsys.readouterr().err
    assert "interval" not in json.loads((tmp_path / "eval" / "metrics.json").read_text())
    # a coverage asked as a percentage is refused before anything is priced
    assert main(["evaluate", "--ensemble", str(tmp_path / "ens"), "--interval", "80", "--limit", "0"]) == 2
    assert "0.8, not 80" in capsys.readouterr().err


def test_no_item_priced_and_unbounded_ranges_still_report(tmp_path):
    from pricetune import intervals
    from pricetune.evaluation.report import _interval_section

    calibration = intervals.fit([10.0] * 10, [11.0] * 10)
    none = intervals.coverage_report([10.0, 20.0], [None, None], calibration, 0.8)
    assert none["items"] == 0 and none["covered"] is None and _interval_section(none) == ""
    wide = intervals.coverage_report([10.0, 20.0], [11.0, 19.0], calibration, 0.95)  # too few errors for 95%
    assert wide["unbounded"] == 2 and wide["mean_width"] is None
    json.loads(json.dumps(wide, allow_nan=False))  # valid JSON: no Infinity
    assert "2 unbounded" in _interval_section(wide)


def test_the_ledger_numbers_its_looks_and_names_a_corrupt_line(tmp_path):
    from pricetune.errors import PricetuneError
    from pricetune.evaluation import ledger

    path = tmp_path / "test-ledger.jsonl"
    assert ledger.record(path, ("abc", "ABC"), "d", "first", 10, 1.0)["look"] == 1
    assert ledger.record(path, ("abc", "ABC"), "d", "second", 10, 1.0)["look"] == 2
    assert ledger.record(path, ("xyz", "XYZ"), "d", "other split", 10, 1.0)["look"] == 1
    # the same rows in another order: another in-order fingerprint, the same split
    assert ledger.record(path, ("cba", "ABC"), "d", "reshuffled", 10, 1.0)["look"] == 3
    with open(path, "a") as f:
        f.write('{"fingerprint": "abc", "sco\n')
    with pytest.raises(PricetuneError, match=f"{path}:5: .*not JSON"):
        ledger.looks(path, ("abc", "ABC"))


def test_a_reshuffled_test_file_counts_the_looks_at_its_rows(tmp_path, small_dataset_dir, capsys):
    from pricetune.cli import main

    base = ["evaluate", "--baseline", "median", "--limit", "0"]
    assert main([*base, "--dataset", str(small_dataset_dir), "--output-dir", str(tmp_path / "a")]) == 0
    assert "scored 0 time(s) before" in capsys.readouterr().err
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    for name in ("train", "val", "test"):
        lines = (small_dataset_dir / f"{name}.jsonl").read_text().splitlines()
        (shuffled / f"{name}.jsonl").write_text("\n".join(reversed(lines) if name == "test" else lines) + "\n")
    assert main([*base, "--dataset", str(shuffled), "--output-dir", str(tmp_path / "b")]) == 0
    assert "scored 1 time(s) before" in capsys.readouterr().err


def test_leaderboard_rows_of_other_splits_never_replace_each_other(tmp_path):
    from pricetune.evaluation.cli import record_leaderboard

    board = tmp_path / "leaderboard.json"
    metrics = dict(n=10, mae=5.0, median_ae=4.0, rmsle=0.5)
    record_leaderboard(board, "tfidf", "val", metrics, False, "data/a")
    record_leaderboard(board, "tfidf", "test", {**metrics, "mae": 6.0}, False, "data/a")
    record_leaderboard(board, "tfidf", "test", {**metrics, "mae": 7.0}, False, "data/a")
    rows = json.loads(board.read_text())
    assert sorted((r["split"], r["mae"]) for r in rows) == [("test", 7.0), ("val", 5.0)]


@pytest.mark.parametrize("content", ["{not json", '{"rows": []}', None])
def test_a_leaderboard_that_is_not_one_is_refused_before_anything_is_scored(tmp_path, capsys, content):
    from pricetune.cli import main

    from .test_regress import _ensemble_data

    data = _ensemble_data(tmp_path)
    board = tmp_path / "board.json"
    board.write_text(content) if content is not None else board.mkdir()  # None: a folder of that name
    out = tmp_path / "eval"
    assert main(["evaluate", "--baseline", "median", "--dataset", str(data), "--split", "val",
                 "--leaderboard", str(board), "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--leaderboard {board} is" in err and "Traceback" not in err
    assert not out.exists()  # refused before the scoring, which once ran and then crashed on the file


def test_out_naming_a_file_is_refused_in_one_line(tmp_path, capsys):
    from pricetune.cli import main

    from .test_regress import _ensemble_data

    data = _ensemble_data(tmp_path)
    (tmp_path / "afile").write_text("x")
    assert main(["ensemble", "--dataset", str(data), "--member", "tfidf", "--member", "median",
                 "--out", str(tmp_path / "afile")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_predictions_scored_on_a_named_test_split_are_counted_and_others_refused(tmp_path, capsys):
    from pricetune.cli import main

    from .test_regress import _ensemble_data

    data = _ensemble_data(tmp_path)
    test = [json.loads(line) for line in (data / "test.jsonl").read_text().splitlines()]
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"prediction": r["price"] * 1.1, "price": r["price"]}) + "\n" for r in test))
    board = tmp_path / "board" / "leaderboard.json"
    # a leaderboard row must say which split it scored
    assert main(["evaluate", "--predictions", str(preds), "--leaderboard", str(board)]) == 2
    assert "--dataset" in capsys.readouterr().err
    assert main(["evaluate", "--predictions", str(preds), "--dataset", str(data), "--leaderboard", str(board),
                 "--output-dir", str(tmp_path / "e")]) == 0
    (line,) = (tmp_path / "board" / "test-ledger.jsonl").read_text().splitlines()
    assert json.loads(line)["look"] == 1 and json.loads(board.read_text())[0]["split"] == "test"
    # predictions made for other items are not scored as this split's
    assert main(["evaluate", "--predictions", str(preds), "--dataset", str(data), "--split", "val"]) == 2
    assert "not those of" in capsys.readouterr().err


def test_an_ensembles_scored_members_are_named_without_this_machines_paths(tmp_path, monkeypatch):
    from pricetune.evaluation.sources import shown

    monkeypatch.chdir(tmp_path)
    assert shown(str(tmp_path / "runs" / "r1")) == "runs/r1"  # a run under the working directory
    assert shown("/elsewhere/runs/r2") == "r2"  # anywhere else: by its name
    assert shown("mlp") == "mlp" and shown("runs/r3") == "runs/r3"


def test_a_missing_source_is_refused_before_any_row_is_read(tmp_path):
    from pricetune.errors import DataError
    from pricetune.prepare import read_source

    # the call itself refuses, so `prepare` shows no progress bar for a file that is not there
    with pytest.raises(DataError, match="source not found"):
        read_source(str(tmp_path / "catalog.csv"))
    with pytest.raises(DataError, match="no .jsonl"):
        read_source(str(tmp_path))


def test_push_without_a_token_stops_before_the_network_and_says_how(tmp_path, monkeypatch, capsys):
    from pricetune import hub
    from pricetune.cli import main
    from pricetune.config import resolve_config

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(resolve_config("demo").to_yaml())
    (run / "adapter_config.json").write_text("{}")
    monkeypatch.setattr(hub, "get_token", lambda: None)

    def no_network(*args, **kwargs):
        raise AssertionError("pushed without a token")

    monkeypatch.setattr(hub, "push_folder", no_network)
    # a repo id does not make a token unnecessary: it used to be offered as the way out
    assert main(["push", str(run), "--repo-id", "someone/price-x"]) == 2
    err = capsys.readouterr().err
    assert "no Hugging Face token" in err and f"pricetune push {run} --repo-id someone/price-x" in err


def test_a_run_member_trained_on_other_data_is_noted_before_pricing(tmp_path):
    from pricetune.config import resolve_config
    from pricetune.ensemble.fit import check_members
    from pricetune.inference.members import Member

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(resolve_config(overrides={"dataset": "demo"}).to_yaml())
    said = []
    check_members([Member(str(run)), Member("tfidf")], "demo", log=said.append)
    assert said == []
    check_members([Member(str(run)), Member("tfidf")], str(tmp_path / "mine"), log=said.append)
    assert said == [f"note: {run} trained on demo, not {tmp_path / 'mine'}: if the two share items, this val "
                    "split holds some it learnt, and its val figures read low"]


def test_calibrate_shows_its_pass_over_val(tmp_path, small_dataset_dir, monkeypatch, capsys):
    """Calibrating prices the whole val split (minutes for an LLM run): with a progress bar, as evaluate has."""
    from pricetune.cli import main
    from pricetune.inference import Pricer

    class Fake(Pricer):
        def __init__(self):
            super().__init__(None)

        def price_items(self, descriptions, progress=False):
            return [10.0 + i % 7 for i in range(len(descriptions))]

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(f"base_model: smollm2-135m\nobjective: regress\ndataset: {small_dataset_dir}\n")
    monkeypatch.setattr(Pricer, "from_run", classmethod(lambda cls, *a, **k: Fake()))
    assert main(["calibrate", str(run)]) == 0
    assert "pricing: 100%" in capsys.readouterr().err  # the bar over the 16 val items
    assert (run / "calibration.json").is_file()
