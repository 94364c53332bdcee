"""Choosing on val, looking at test once: the test ledger and `pricetune select`."""

import json
import os
import re
from pathlib import Path

import pytest

from tests.conftest import write_jsonl


def test_the_ledger_counts_looks_per_test_split_and_val_writes_none(tmp_path, small_dataset_dir, capsys):
    from pricetune.cli import main
    from pricetune.evaluation import ledger

    path = Path(os.environ["PRICETUNE_LEDGER"])
    base = ["evaluate", "--baseline", "median", "--dataset", str(small_dataset_dir), "--limit", "0"]
    assert main([*base, "--split", "val", "--output-dir", str(tmp_path / "v")]) == 0
    assert not path.exists()  # val is for choosing: no look counted
    assert main([*base, "--output-dir", str(tmp_path / "t1")]) == 0
    assert "scored 0 time(s) before" in capsys.readouterr().err
    assert main([*base, "--limit", "5", "--output-dir", str(tmp_path / "t2")]) == 0  # part of the split is a look too
    assert "scored 1 time(s) before" in capsys.readouterr().err
    lines = ledger.read(path)
    assert len(lines) == 2 and lines[0]["fingerprint"] == lines[1]["fingerprint"] and lines[1]["n"] == 5
    assert set(lines[0]) == {"time", "fingerprint", "rows_fingerprint", "look", "dataset", "scored", "n", "mae"}
    assert [line["look"] for line in lines] == [1, 2]
    # another test split (other rows) is counted apart, whatever its folder
    other = tmp_path / "other"
    for name in ("train", "val"):
        (other / name).parent.mkdir(parents=True, exist_ok=True)
        (other / f"{name}.jsonl").write_text((small_dataset_dir / f"{name}.jsonl").read_text())
    rows = [json.loads(l) for l in (small_dataset_dir / "test.jsonl").read_text().splitlines()]
    write_jsonl(other / "test.jsonl", rows[1:])
    assert main(["evaluate", "--baseline", "median", "--dataset", str(other), "--limit", "0",
                 "--output-dir", str(tmp_path / "t3")]) == 0
    assert "scored 0 time(s) before" in capsys.readouterr().err
    # with --leaderboard, the ledger is the one beside it
    board = tmp_path / "results" / "leaderboard.json"
    assert main([*base, "--output-dir", str(tmp_path / "t4"), "--leaderboard", str(board), "--name", "median"]) == 0
    assert len(ledger.read(board.parent / "test-ledger.jsonl")) == 1
    assert json.loads(board.read_text())[0]["dataset"] == small_dataset_dir.name


def test_select_chooses_on_val_only_lists_every_member_and_repeats_itself(tmp_path, capsys):
    from pricetune.cli import main
    from pricetune.ensemble import Ensemble, Member
    from pricetune.ensemble.select import select
    from pricetune.errors import PricetuneError

    from .test_regress import _ensemble_data, _synthetic

    data = _ensemble_data(tmp_path)
    members = [Member("tfidf"), Member("tfidf-knn"), Member("median")]
    first = select(str(data), members, tmp_path / "s1", log=lambda _: None, cv_repeats=2)
    assert re.search(r"candidates: 100%.* 7/7", capsys.readouterr().err)  # a bar over the 7 candidate sets
    # every member is a candidate alone, and every set of two or three, by weights (and stack without median)
    alone = [c for c in first["candidates"] if c["method"] == "alone"]
    assert [c["names"] for c in alone] == [["tfidf"], ["tfidf-knn"], ["median"]]
    methods = sorted((tuple(c["members"]), c["method"]) for c in first["candidates"] if c["method"] != "alone")
    assert methods == [((0, 1), "stack"), ((0, 1), "weights"), ((0, 1, 2), "weights"), ((0, 2), "weights"),
                       ((1, 2), "weights")]
    best = first["candidates"][first["picks"]["pipeline"]]
    assert best["val_mae_cv"] == min(c["val_mae_cv"] for c in first["candidates"] if "skipped" not in c)
    assert "llm_only" not in first["picks"]  # no fine-tuned run among the members
    assert (tmp_path / "s1" / "pipeline" / "ensemble.json").is_file()
    # the pick comes calibrated from the val prices select already has: what `calibrate` gets by pricing val again
    made = json.loads((tmp_path / "s1" / "pipeline" / "calibration.json").read_text())
    assert main(["calibrate", "--ensemble", str(tmp_path / "s1" / "pipeline")]) == 0
    again = json.loads((tmp_path / "s1" / "pipeline" / "calibration.json").read_text())
    assert made["val_fingerprint"] == again["val_fingerprint"] and made["edges"] == pytest.approx(again["edges"])
    assert [len(e) for e in made["errors"]] == [len(e) for e in again["errors"]]
    assert sum(made["errors"], []) == pytest.approx(sum(again["errors"], []), abs=1e-9)
    # other test rows: the same choice, the same figures
    write_jsonl(data / "test.jsonl", _synthetic(40, 99))
    second = select(str(data), members, tmp_path / "s2", log=lambda _: None, cv_repeats=2)
    assert second["candidates"] == first["candidates"] and second["picks"] == first["picks"]
    # the pick is scored on test like any ensemble
    assert main(["evaluate", "--ensemble", str(tmp_path / "s1" / "pipeline"), "--limit", "0",
                 "--output-dir", str(tmp_path / "eval")]) == 0
    # select's own folder is not an ensemble: the error names the picks inside it
    with pytest.raises(PricetuneError, match=re.escape(f"pass one of {tmp_path / 's1' / 'classical'}, ")):
        Ensemble.load(tmp_path / "s1")
    assert main(["select", "--dataset", str(data), "--member", "tfidf", "--member", "tfidf", "--out",
                 str(tmp_path / "s3")]) == 2  # listed twice
    # val items that are train rows too favour the members that remember them (tfidf-knn): said and counted
    def copies():
        train = {json.loads(line)["prompt"] for line in (data / "train.jsonl").read_text().splitlines()}
        return sum(json.loads(line)["prompt"] in train for line in (data / "val.jsonl").read_text().splitlines())

    assert first["val_prompts_in_train"] == copies() < 10  # the synthetic items repeat a few texts
    val = (data / "val.jsonl").read_text().splitlines()
    (data / "val.jsonl").write_text("\n".join((data / "train.jsonl").read_text().splitlines()[:10] + val[10:]) + "\n")
    said = []
    leaky = select(str(data), [Member("median")], tmp_path / "s4", log=said.append, cv_repeats=1)
    assert leaky["val_prompts_in_train"] == copies() >= 10
    assert any(f"note: {copies()} of the {len(val)} val items have a prompt found word for word among the" in s for s in said)


def test_what_a_member_does_to_the_error_reads_as_a_gain_or_a_loss():
    from pricetune.ensemble.cli import takes_off

    # a loss read "takes $-8.18 ± 42.58 off the best candidate without it"
    assert takes_off({"mae_diff": 8.18, "diff_ci95": 42.58}) == "adds $8.18 ± 42.58 to"
    assert takes_off({"mae_diff": -1.2, "diff_ci95": 0.9}) == "takes $1.20 ± 0.90 off"


def test_the_rule_prefers_the_lowest_cross_validated_figure_then_fewer_members():
    from pricetune.ensemble.select import PICKS, pick

    c = [dict(members=[0], val_mae=10.0, val_mae_cv=10.0, llm_only=True),
         dict(members=[1], val_mae=8.0, val_mae_cv=8.0, llm_only=False),
         dict(members=[0, 1], val_mae=6.0, val_mae_cv=8.0, llm_only=False),  # better in-sample, level held out
         dict(members=[0, 2], val_mae=5.0, val_mae_cv=9.0, llm_only=True),
         dict(members=[0, 1, 2], skipped="too few items", llm_only=False)]
    assert pick(c) is c[1]  # a tie on the held-out figure goes to fewer members
    assert pick(c, PICKS["llm_only"]) is c[3]


def test_the_error_is_broken_down_by_the_rows_own_category_field(tmp_path, demo_splits):
    from pricetune.cli import main

    data = tmp_path / "data"
    for name, rows in (("train", demo_splits["train"][:40]), ("val", demo_splits["val"][:10]),
                       ("test", demo_splits["test"][:10])):
        write_jsonl(data / f"{name}.jsonl", [{**r, "category": "Rings" if i % 2 else "Loose stones"}
                                             for i, r in enumerate(rows)])
    assert main(["evaluate", "--baseline", "median", "--dataset", str(data), "--limit", "0",
                 "--output-dir", str(tmp_path / "eval")]) == 0
    groups = {g["group"]: g["n"] for g in json.loads((tmp_path / "eval" / "breakdown.json").read_text())["by_category"]}
    assert groups == {"Rings": 5, "Loose stones": 5}
