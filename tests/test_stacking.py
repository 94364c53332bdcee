"""Stacked ensembles (`pricetune ensemble --combine stack`) and the cross-validated val MAE that
compares ways of combining. Classical members only: no model is loaded."""

import csv
import importlib.util
import json
import math
import random

import pytest

from pricetune.errors import PricetuneError

from .conftest import write_jsonl
from .test_regress import _ensemble_data, _synthetic


def test_a_stack_recovers_a_known_relation_in_log_price():
    from pricetune.ensemble import combine, fit_stack

    rng = random.Random(0)
    a = [rng.uniform(5, 900) for _ in range(60)]
    b = [rng.uniform(5, 900) for _ in range(60)]
    truths = [math.expm1(0.3 + 0.8 * math.log1p(x) + 0.4 * math.log1p(y)) for x, y in zip(a, b)]
    weights, intercept, mae = fit_stack(truths, [a, b])
    assert weights == pytest.approx([0.8, 0.4], abs=1e-6) and intercept == pytest.approx(0.3, abs=1e-5)
    assert mae == pytest.approx(0.0, abs=1e-3)
    assert combine(weights, [a, b], intercept) == pytest.approx(truths, rel=1e-5)


def test_combine_adds_the_intercept_and_a_mean_hands_a_missing_members_weight_to_the_others():
    from pricetune.ensemble import combine

    x = 40.0
    # a weighted mean of two members: the second has no price, so the first carries all the weight
    assert combine([0.5, 0.5], [[x], [None]]) == [pytest.approx(x)]
    # a stack (an intercept): no price rather than a rescaled one
    assert combine([0.6, 0.6], [[x], [None]], 0.1) == [None]
    assert combine([0.6, 0.6], [[x], [9.0]], 0.1) == [pytest.approx(math.expm1(0.1 + 0.6 * math.log1p(x)
                                                                                 + 0.6 * math.log1p(9.0)))]
    assert combine([0.5, 0.5], [[None], [None]]) == [None]


def test_cross_validation_sees_through_a_fit_to_noise():
    from pricetune.ensemble import cross_validated_mae, fit_combination

    rng = random.Random(3)
    truths = [rng.uniform(5, 500) for _ in range(40)]
    noise = [[rng.uniform(5, 500) for _ in truths] for _ in range(6)]  # members that know nothing
    _, _, in_sample = fit_combination(truths, noise, "stack")
    held_out = cross_validated_mae(truths, noise, "stack", repeats=3)
    assert held_out > in_sample * 1.1  # seven free parameters fit the noise of 40 items; held out, they do not
    assert cross_validated_mae(truths, noise, "stack", repeats=3) == held_out  # seeded: the same cuts
    # a relation the members really carry holds on held-out items too; both members price too high, so
    # no mean of them can undo it, and a stack can
    over = [[math.expm1(0.5 + math.log1p(t)) for t in truths], [math.expm1(0.2 + 1.2 * math.log1p(t)) for t in truths]]
    assert cross_validated_mae(truths, over, "stack", repeats=2) < 1e-3
    assert cross_validated_mae(truths, over, "weights", repeats=2) > 50


def test_a_stacked_ensemble_fits_on_val_only_saves_prices_and_refits(tmp_path):
    from pricetune.cli import main
    from pricetune.ensemble import Ensemble, Member, combine, fit_ensemble, refit_ensemble
    from pricetune.inference import Pricer

    data = _ensemble_data(tmp_path)
    members = [Member("tfidf"), Member("tfidf-knn")]
    first = fit_ensemble(str(data), members, tmp_path / "ens1", log=lambda _: None, combination="stack", cv_repeats=2)
    assert first["method"] == "stack" and first["intercept"] != 0 and "median regression" in first["combination"]
    assert first["val_mae_cv"] >= first["val_mae"] > 0
    write_jsonl(data / "test.jsonl", _synthetic(40, 4)[:10])  # other test rows: the same fit
    second = fit_ensemble(str(data), members, tmp_path / "ens2", log=lambda _: None, combination="stack", cv_repeats=2)
    assert (second["weights"], second["intercept"], second["val_mae_cv"]) == \
        (first["weights"], first["intercept"], first["val_mae_cv"])
    # the saved folder prices as the combination says, without the data
    ens = Ensemble.load(tmp_path / "ens1")
    prompts = [r["prompt"] for r in _synthetic(5, 7)]
    by_member = [p.predict(prompts) if p is not None else [None] * len(prompts) for p in ens.predictors()]
    assert Pricer.from_ensemble(str(tmp_path / "ens1")).price_many(prompts) == \
        pytest.approx(combine(first["weights"], by_member, first["intercept"]))
    # a refit keeps val's weights and intercept
    refit = refit_ensemble(tmp_path / "ens1", {}, tmp_path / "refit", log=lambda _: None)
    kept = [w for w in first["weights"] if w != 0]
    assert refit["weights"] == kept and refit["intercept"] == first["intercept"] and refit["method"] == "stack"
    # from the command line: fit, then scored like any model
    assert main(["ensemble", "--dataset", str(data), "--member", "tfidf", "--member", "tfidf-knn", "--combine", "stack",
                 "--cv-repeats", "1", "--out", str(tmp_path / "cli")]) == 0
    saved = json.loads((tmp_path / "cli" / "ensemble.json").read_text())
    assert saved["method"] == "stack" and "val_mae_cv" in saved
    assert main(["evaluate", "--ensemble", str(tmp_path / "cli"), "--limit", "0",
                 "--output-dir", str(tmp_path / "eval")]) == 0
    assert "intercept" in json.loads((tmp_path / "eval" / "settings.json").read_text())["members"]


def test_ensemble_refuses_a_bad_combination(tmp_path, capsys):
    from pricetune.cli import main

    data = _ensemble_data(tmp_path)
    base = ["ensemble", "--dataset", str(data), "--member", "tfidf", "--member", "median"]
    with pytest.raises(SystemExit):
        main([*base, "--combine", "vote", "--out", str(tmp_path / "a")])
    with pytest.raises(SystemExit):
        main([*base, "--cv-repeats", "-1", "--out", str(tmp_path / "b")])
    assert "argument --cv-repeats: must be >= 0 (got -1)" in capsys.readouterr().err
    # a constant member is what the stack's intercept already is
    assert main([*base, "--combine", "stack", "--out", str(tmp_path / "c")]) == 2
    assert "intercept" in capsys.readouterr().err
    # a mistyped run is named before TF-IDF, listed first, is fitted
    assert main([*base[:-2], "--member", str(tmp_path / "runs" / "nope"), "--out", str(tmp_path / "d")]) == 2
    out, err = capsys.readouterr()
    assert "runs/nope: no such run folder here, and not a classical member (tfidf, tfidf-knn, mlp" in err
    assert "pricing" not in out
    # a mistyped classical member is named with the one meant (it was "mpl is not a pricetune run directory")
    assert main([*base[:-2], "--member", "mpl", "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert "--member mpl: no such run folder here" in err and "(did you mean mlp?)" in err
    # a folder that is there but holds no run still says so
    (tmp_path / "empty").mkdir()
    assert main([*base[:-2], "--member", str(tmp_path / "empty"), "--out", str(tmp_path / "f")]) == 2
    assert "is not a pricetune run directory (no config.yaml)" in capsys.readouterr().err
    assert not any((tmp_path / p).exists() for p in "bcdef")


def test_a_stack_gives_no_price_where_a_weighted_member_gave_none():
    from pricetune.ensemble import combine

    # weights of both signs: rescaling the priced member's weight would be a wrong price (or an overflow)
    assert combine([1.5, -0.5], [[100.0, 100.0], [None, 80.0]], 0.1) == \
        [None, pytest.approx(math.expm1(0.1 + 1.5 * math.log1p(100.0) - 0.5 * math.log1p(80.0)))]
    assert combine([1.5, 0.0], [[100.0], [None]], 0.1) == [pytest.approx(math.expm1(0.1 + 1.5 * math.log1p(100.0)))]


def test_a_saved_ensemble_finds_its_runs_from_any_directory(tmp_path, monkeypatch):
    from pricetune.ensemble import Ensemble, Member

    (tmp_path / "work" / "runs" / "x").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "work")
    ens_dir = tmp_path / "work" / "ens"
    ens_dir.mkdir()
    record = {"members": [Member("runs/x").describe(ens_dir), Member("tfidf").describe(ens_dir)],
              "weights": [0.5, 0.5], "dataset": "d"}
    assert record["members"][0]["path"] == "../runs/x" and "path" not in record["members"][1]
    (ens_dir / "ensemble.json").write_text(json.dumps(record))
    (tmp_path / "srv").mkdir()
    monkeypatch.chdir(tmp_path / "srv")  # as `serve --ensemble /srv/ens` started elsewhere
    loaded = Ensemble.load(ens_dir)
    assert loaded.members[0].spec == str((tmp_path / "work" / "runs" / "x").resolve())
    assert loaded.members[1].spec == "tfidf"
    # its run moved away: said as that, with what to do (it was "... is not a pricetune run directory")
    (tmp_path / "work" / "runs" / "x").rename(tmp_path / "work" / "runs" / "y")
    with pytest.raises(PricetuneError, match=r"ens: its member run .*runs/x is not there \(moved or deleted\?\)"):
        Ensemble.load(ens_dir).predictors()


def test_a_failed_fit_keeps_its_priced_members_and_the_same_command_continues(tmp_path, monkeypatch):
    """Pricing val with each member is the long part (minutes for each run): a failure after it, or an
    interruption, keeps what was priced, and the next try prices only what changed."""
    from pricetune.ensemble import Member, fit_ensemble
    from pricetune.ensemble import fit as fitting
    from pricetune.errors import PricetuneError

    data = _ensemble_data(tmp_path)
    members = [Member("tfidf"), Member("tfidf-knn")]
    original = fitting.combination_record
    monkeypatch.setattr(fitting, "combination_record", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    said = []
    with pytest.raises(KeyboardInterrupt):
        fit_ensemble(str(data), members, tmp_path / "ens", log=said.append, cv_repeats=0)
    assert len(list((tmp_path / "ens" / ".priced").glob("*.json"))) == 2 and "kept the val prices" in said[-1]

    monkeypatch.setattr(fitting, "combination_record", original)
    said.clear()
    record = fit_ensemble(str(data), members, tmp_path / "ens", log=said.append, cv_repeats=0)
    assert sum("kept from an earlier try" in s for s in said) == 2 and not any("pricing" in s for s in said)
    assert not (tmp_path / "ens" / ".priced").exists()  # a finished folder holds the ensemble alone
    fresh = fit_ensemble(str(data), members, tmp_path / "fresh", log=lambda _: None, cv_repeats=0)
    assert record["weights"] == fresh["weights"] and record["member_val_mae"] == fresh["member_val_mae"]
    with pytest.raises(PricetuneError, match="not empty"):  # finished: no longer continued
        fit_ensemble(str(data), members, tmp_path / "ens", log=lambda _: None, cv_repeats=0)

    # another train size is other prices; a member left out leaves its saved baseline behind
    monkeypatch.setattr(fitting, "combination_record", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("x")))
    with pytest.raises(RuntimeError):
        fit_ensemble(str(data), members, tmp_path / "again", log=lambda _: None, cv_repeats=0)
    monkeypatch.setattr(fitting, "combination_record", original)
    said.clear()
    fit_ensemble(str(data), [Member("tfidf"), Member("median")], tmp_path / "again", log=said.append, cv_repeats=0,
                 train_size=30)
    assert sum("pricing" in s for s in said) == 2
    assert sorted(f.name for f in (tmp_path / "again").iterdir()) == ["ensemble.json", "tfidf.joblib"]


def test_a_file_priced_into_out_keeps_its_prices_and_the_same_command_continues(tmp_path, capsys, monkeypatch):
    """`predict --file F --out OUT` priced every item before writing a line: Ctrl-C or a failure after hours of
    pricing lost them all. The prices are kept in OUT.partial as they come; the same command prices only the
    rest and writes what one uninterrupted run writes; another model prices everything again."""
    from pricetune.cli import main
    from pricetune.ensemble import Member, fit_ensemble
    from pricetune.inference import Pricer, kept

    data = _ensemble_data(tmp_path)
    ens, other = str(tmp_path / "ens"), str(tmp_path / "other")
    fit_ensemble(str(data), [Member("tfidf"), Member("median")], ens, log=lambda _: None, cv_repeats=0)
    fit_ensemble(str(data), [Member("tfidf"), Member("mean")], other, log=lambda _: None, cv_repeats=0)
    prompts = [r["prompt"] for r in _synthetic(7, 11)]
    write_jsonl(tmp_path / "items.jsonl", [{"sku": i, "prompt": p} for i, p in enumerate(prompts + prompts[:2])])
    whole = tmp_path / "new" / "whole.csv"  # in a folder --out makes
    assert main(["predict", "--ensemble", ens, "--file", str(tmp_path / "items.jsonl"), "--out", str(whole)]) == 0
    assert not (tmp_path / "new" / "whole.csv.partial").exists()  # written: nothing left beside it

    monkeypatch.setattr(kept, "PART", 3)
    priced, stock = [], Pricer.price_items

    def interrupted(self, texts, progress=False):
        priced.append(len(texts))
        if interrupt and len(priced) == 2:  # Ctrl-C in the second part
            raise KeyboardInterrupt
        return stock(self, texts, progress)

    def run(*options, stopped=False):
        nonlocal interrupt
        interrupt = stopped
        priced.clear()
        return main([*options, "--file", str(tmp_path / "items.jsonl"), "--out", str(out)])

    monkeypatch.setattr(Pricer, "price_items", interrupted)
    interrupt, out = False, tmp_path / "priced.csv"
    assert run("predict", "--ensemble", ens, stopped=True) == 130 and not out.exists()
    assert f"kept the prices of 3 item(s) in {out}.partial" in capsys.readouterr().err
    with open(f"{out}.partial", "a") as f:
        f.write('{"text": "3fa')  # a line a kill cut short
    assert run("predict", "--ensemble", ens) == 0
    assert "3 item(s) priced by an earlier try, 4 to go" in capsys.readouterr().err
    assert priced == [3, 1]  # the 7 distinct texts less the 3 kept, in parts of 3
    assert out.read_text() == whole.read_text() and not (tmp_path / "priced.csv.partial").exists()
    # kept prices serve only the model that made them
    assert run("predict", "--ensemble", ens, stopped=True) == 130 and (tmp_path / "priced.csv.partial").is_file()
    assert run("predict", "--ensemble", other) == 0
    assert priced == [3, 3, 1]


def test_predict_prices_a_file_with_an_ensemble_and_refuses_the_options_of_one_model(tmp_path, capsys):
    """`pricetune predict --ensemble DIR`: select's picks priced from the command line, as `serve --ensemble`
    and `Pricer.from_ensemble` price them."""
    from pricetune.cli import main
    from pricetune.ensemble import Member, fit_ensemble
    from pricetune.inference import Pricer

    data = _ensemble_data(tmp_path)
    ens = str(tmp_path / "ens")
    fit_ensemble(str(data), [Member("tfidf"), Member("median")], ens, log=lambda _: None, cv_repeats=0)
    prompts = [r["prompt"] for r in _synthetic(5, 7)]
    write_jsonl(tmp_path / "items.jsonl", [{"sku": i, "prompt": p} for i, p in enumerate(prompts)])
    out = tmp_path / "priced.jsonl"
    assert main(["predict", "--ensemble", ens, "--file", str(tmp_path / "items.jsonl"), "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["sku"] for r in rows] == list(range(5)) and "prediction" not in rows[0]
    assert [r["price_predicted"] for r in rows] == pytest.approx(Pricer.from_ensemble(ens).price_items(prompts))
    assert {m.batch_size for m in Pricer.from_ensemble(ens, batch_size=4).ensemble.members} == {4}  # --batch-size
    # --out names the format: a spreadsheet's file comes back as one (it was JSON Lines whatever the name)
    for name, sep in (("priced.csv", ","), ("priced.tsv", "\t")):
        assert main(["predict", "--ensemble", ens, "--file", str(tmp_path / "items.jsonl"), "--out", str(tmp_path / name)]) == 0
        table = list(csv.DictReader((tmp_path / name).open(newline=""), delimiter=sep))
        assert list(table[0]) == ["sku", "prompt", "price_predicted"] and [r["sku"] for r in table] == list("01234")
        assert [float(r["price_predicted"]) for r in table] == pytest.approx([r["price_predicted"] for r in rows])
    assert main(["predict", "--ensemble", ens, "--file", str(tmp_path / "items.jsonl"), "--out", str(tmp_path / "p.json")]) == 0
    assert json.loads((tmp_path / "p.json").read_text()) == rows
    # a row without a text (a product's variant row in a shop's export) refused the whole file: it is
    # written back in its place, without a price, with an error, and said
    write_jsonl(tmp_path / "variants.jsonl", [{"sku": 0, "prompt": prompts[0]}, {"sku": 1, "size": "M"},
                                              {"sku": 2, "prompt": prompts[2]}])
    capsys.readouterr()
    assert main(["predict", "--ensemble", ens, "--file", str(tmp_path / "variants.jsonl"), "--out", str(tmp_path / "v.csv")]) == 0
    assert "1 row(s) without a text to price (the first: " in capsys.readouterr().err
    table = list(csv.DictReader((tmp_path / "v.csv").open(newline="")))
    assert [(r["sku"], r["error"]) for r in table] == [("0", ""), ("1", "no text to price"), ("2", "")]
    assert [r["price_predicted"] for r in table] == [str(rows[0]["price_predicted"]), "", str(rows[2]["price_predicted"])]
    if importlib.util.find_spec("openpyxl"):  # the excel extra; and an .xlsx file of items reads as its rows
        xlsx = tmp_path / "priced.xlsx"
        assert main(["predict", "--ensemble", ens, "--file", str(tmp_path / "items.jsonl"), "--out", str(xlsx)]) == 0
        assert main(["predict", "--ensemble", ens, "--file", str(xlsx), "--out", str(tmp_path / "again.jsonl")]) == 0
        again = [json.loads(line) for line in (tmp_path / "again.jsonl").read_text().splitlines()]
        assert [{k: r[k] for k in ("sku", "prompt")} for r in again] == [{k: r[k] for k in ("sku", "prompt")} for r in rows]
        assert [r["price_predicted"] for r in again] == pytest.approx([r["price_predicted"] for r in rows])
    capsys.readouterr()
    assert main(["predict", "--ensemble", ens, "--interval", "0.8", prompts[0]]) == 2
    assert f"pricetune calibrate --ensemble {ens}" in capsys.readouterr().err
    assert main(["calibrate", "--ensemble", ens]) == 0
    capsys.readouterr()
    assert main(["predict", "--ensemble", ens, "--interval", "0.8", "--similar", "2", prompts[0]]) == 0
    said = capsys.readouterr().out
    assert said.startswith(f"${rows[0]['price_predicted']:,.2f} (80%: $") and "similar training items:" in said
    for options in (["--decode", "median"], ["--run", ens], ["--quantization", "none"]):
        assert main(["predict", "--ensemble", ens, *options, prompts[0]]) == 2
        assert f"{options[0]} chooses one model" in capsys.readouterr().err
