"""The sparse MLP baseline (`mlp`), `select`'s classical pick and what the fine-tuned model adds, and the
shipped amazon-18k data."""

import json
import random

import pytest

from tests.conftest import write_jsonl
from tests.test_regress import _ensemble_data, _synthetic


@pytest.fixture(scope="module")
def fitted():
    from pricetune.baselines import SparseMlp

    train, val = _synthetic(300, 1), _synthetic(60, 2)
    return train, val, SparseMlp.fit(train, val, seeds=2)


def test_mlp_learns_the_words_that_set_the_price_and_chooses_its_epochs_on_val(fitted):
    from pricetune.baselines.common import constant, mae

    train, val, model = fitted
    test = _synthetic(60, 3)
    guesses = model.predict([r["prompt"] for r in test])
    truths = [r["price"] for r in test]
    # prices span $5 to $150, set by two words: a wide margin under the constant, on any machine
    assert mae(truths, guesses) < 0.5 * mae(truths, [constant(train, "median")] * len(test))
    assert model.epochs == min(model.val_mae_by_epochs, key=model.val_mae_by_epochs.get)
    assert len(model.states) == 2 and model.binary == [False, True]  # TF-IDF values, then 0/1 inputs


def test_mlp_saves_reloads_and_prices_identically_and_a_seed_gives_the_same_prices(fitted, tmp_path):
    from pricetune.baselines import SparseMlp

    train, val, model = fitted
    prompts = [r["prompt"] for r in _synthetic(20, 5)]
    before = model.predict(prompts)
    assert SparseMlp.load(model.save(tmp_path / "mlp.joblib")).predict(prompts) == before
    assert SparseMlp.fit(train, val, seeds=2).predict(prompts) == before
    # the train rows in another order: another model, within tolerance
    shuffled = train[:]
    random.Random(7).shuffle(shuffled)
    other = SparseMlp.fit(shuffled, val, seeds=2, epochs=model.epochs).predict(prompts)
    assert all(0.7 < a / b < 1.4 for a, b in zip(other, before)), list(zip(other, before))


def test_mlp_refit_keeps_the_epochs_val_chose_and_learns_val_too(fitted):
    from pricetune.baselines import SparseMlp

    train, val, model = fitted
    refit = SparseMlp.fit(train, val, seeds=2, epochs=model.epochs, refit=True)
    assert refit.epochs == model.epochs and refit.val_mae_by_epochs == {}
    with pytest.raises(Exception, match="val split"):
        SparseMlp.fit(train, [], seeds=1)


def test_evaluate_baseline_mlp_never_reads_test(tmp_path, capsys):
    from pricetune.cli import main

    data = _ensemble_data(tmp_path)
    args = ["evaluate", "--baseline", "mlp", "--dataset", str(data), "--split", "val", "--limit", "0"]
    assert main([*args, "--output-dir", str(tmp_path / "a")]) == 0
    write_jsonl(data / "test.jsonl", _synthetic(40, 77))  # other test rows: the same val prices
    assert main([*args, "--output-dir", str(tmp_path / "b")]) == 0
    first, second = (json.loads((tmp_path / x / "metrics.json").read_text()) for x in ("a", "b"))
    assert first["mae"] == second["mae"]
    settings = json.loads((tmp_path / "a" / "settings.json").read_text())
    assert settings["baseline"] == "mlp" and settings["epochs"] >= 1


def _select(tmp_path, name, members):
    from pricetune.ensemble import Member
    from pricetune.ensemble.select import select

    return select(str(tmp_path / "data"), [Member(m) for m in members], tmp_path / name, log=lambda _: None,
                  cv_repeats=2)


def test_select_writes_a_classical_pick_that_no_fine_tuned_model_is_in(tmp_path, monkeypatch):
    """A fine-tuned model stands in as a fitted "run": a member that is not classical."""
    from pricetune.inference.members import Member

    _ensemble_data(tmp_path)
    monkeypatch.setattr(Member, "classical", property(lambda self: self.spec in ("median", "mean", "tfidf-knn")))
    monkeypatch.setattr(Member, "llm_only", property(lambda self: self.spec == "tfidf"))
    monkeypatch.setattr("pricetune.ensemble.select.check_members", lambda *args: None)  # no run to read
    record = _select(tmp_path, "sel", ["tfidf", "tfidf-knn", "median"])
    cands = record["candidates"]
    assert set(record["picks"]) == {"pipeline", "llm_only", "classical"}
    classical = cands[record["picks"]["classical"]]
    assert "tfidf" not in classical["names"] and classical["classical"]
    assert all(c["val_mae_cv"] >= classical["val_mae_cv"] for c in cands if c["classical"] and "skipped" not in c)
    adds = record["llm_adds"]
    assert adds["classical"] and adds["cross_validated"]["n"] == 40 and adds["in_sample"]["n"] == 40
    # the pipeline is the lowest cross-validated candidate, so it is never worse than the classical pick there
    pipeline = cands[record["picks"]["pipeline"]]
    assert pipeline["val_mae_cv"] <= classical["val_mae_cv"]
    if adds["same_pick"]:
        assert adds["cross_validated"]["mae_diff"] == 0
    assert (tmp_path / "sel" / "classical" / "ensemble.json").is_file()
    # what each fine-tuned run adds: the pipeline against the best candidate without that run
    assert list(record["each_run_adds"]) == ["tfidf"]
    each = record["each_run_adds"]["tfidf"]
    assert "tfidf" not in [n.strip() for n in each["without"].split("(")[0].split("+")]
    assert "tfidf" in [n.strip() for n in each["with"].split("(")[0].split("+")]
    assert each["cross_validated"]["n"] == 40 and not each["same_pick"]
    assert each["with_is_pipeline"] == ("tfidf" in pipeline["names"])


def test_changing_test_rows_changes_no_pick(tmp_path):
    data = _ensemble_data(tmp_path)
    first = _select(tmp_path, "a", ["tfidf", "tfidf-knn", "median"])
    write_jsonl(data / "test.jsonl", _synthetic(40, 99))
    second = _select(tmp_path, "b", ["tfidf", "tfidf-knn", "median"])
    assert first["picks"] == second["picks"]
    assert [c.get("val_mae_cv") for c in first["candidates"]] == [c.get("val_mae_cv") for c in second["candidates"]]
    # no fine-tuned member: the pipeline is the classical pick, and the LLM adds nothing
    assert first["picks"]["pipeline"] == first["picks"]["classical"] and first["llm_adds"]["same_pick"]


def test_the_shipped_amazon_18k_resolves_by_name_without_shared_data(tmp_path, monkeypatch):
    from pricetune.data import load_rows
    from pricetune.data.sources import SHIPPED

    monkeypatch.chdir(tmp_path)  # a fresh clone's working directory: no ../shared beside it
    splits, _ = load_rows("amazon-18k")
    assert {k: len(v) for k, v in splits.items()} == {"train": 13494, "val": 1000, "test": 1000}
    assert all(r["prompt"].endswith("Price is $") and r["price"] > 0 for r in splits["val"])
    assert (SHIPPED["amazon-18k"] / "README.md").is_file()
    # a folder of that name in the working directory is the user's own data, read instead
    write_jsonl(tmp_path / "amazon-18k" / "train.jsonl", _synthetic(5, 1))
    assert {k: len(v) for k, v in load_rows("amazon-18k")[0].items()} == {"train": 5}


def test_an_ensemble_with_an_mlp_member_prices_without_the_data_and_refits_with_its_epochs(tmp_path):
    from pricetune.baselines import SparseMlp
    from pricetune.ensemble import Member, fit_ensemble, refit_ensemble
    from pricetune.inference import Pricer

    data = _ensemble_data(tmp_path)
    fit_ensemble(str(data), [Member("mlp"), Member("median")], tmp_path / "ens", log=lambda _: None, cv_repeats=0)
    chosen = SparseMlp.load(tmp_path / "ens" / "mlp.joblib")
    price = Pricer.from_ensemble(str(tmp_path / "ens")).price("Title: a steel large red cup")
    assert price > 0
    refit_ensemble(tmp_path / "ens", {}, tmp_path / "refit", log=lambda _: None)
    refit = SparseMlp.load(tmp_path / "refit" / "mlp.joblib")
    assert refit.epochs == chosen.epochs and len(refit.states) == len(chosen.states)
    assert refit.states[0]["first.weight"].shape != chosen.states[0]["first.weight"].shape or \
        not (refit.states[0]["first.weight"] == chosen.states[0]["first.weight"]).all()  # val rows learnt too
