"""The regress objective, the classical baselines and ensembles: quality's building blocks."""

import json
import math

import pytest
import torch

from pricetune.config import resolve_config
from pricetune.errors import PricetuneError

from .conftest import tiny_overrides, write_jsonl


def test_regress_trains_lora_and_head_only_on_a_4bit_base(tiny_model_dir, small_dataset_dir, tmp_path):
    from pricetune.training import prepare_trainer

    cfg = resolve_config("demo", overrides=tiny_overrides(tiny_model_dir, small_dataset_dir, tmp_path / "run",
                                                         objective="regress", max_steps=3, max_length=64))
    trainer, ctx = prepare_trainer(cfg, log=lambda _: None)
    model = trainer.model
    assert any("Linear4bit" in type(m).__name__ for m in model.modules()), "base is not 4-bit"
    assert type(model.get_base_model()).__name__ == "LlamaForSequenceClassification"
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer.train()
    after = dict(model.named_parameters())
    changed = {n for n in before if not torch.equal(before[n], after[n].detach())}
    head = {n for n in before if "modules_to_save" in n and "score" in n}
    lora_b = {n for n in before if "lora_B" in n}
    assert head and head <= changed, "the head did not train"
    assert lora_b & changed, "LoRA did not train"
    frozen = [n for n in changed if "lora_" not in n and "modules_to_save" not in n]
    assert frozen == [], f"base weights changed: {frozen[:3]}"


def test_regression_loss_is_l1_on_standardised_log_price(tiny_model_dir, tokenizer, demo_splits):
    from pricetune.modeling import build_lora_config, load_base_model
    from pricetune.regress import PriceScale, RegressionCollator, regression_loss, tokenize_regression_rows
    from pricetune.training import RegressionTrainer

    from peft import get_peft_model

    rows = demo_splits["train"][:3]
    scale = PriceScale.fit([r["price"] for r in demo_splits["train"][:50]])
    base = load_base_model(str(tiny_model_dir), "none", "fp32", objective="regress",
                           pad_token_id=tokenizer.pad_token_id)
    model = get_peft_model(base, build_lora_config(4, 8, 0.0, ["q_proj"], "regress")).eval()
    batch = RegressionCollator(tokenizer.pad_token_id)(list(tokenize_regression_rows(tokenizer, rows, 128, scale)))
    with torch.no_grad():
        # by hand: each prompt alone, the head's output at its last token, against (log1p(p) - c) / s
        by_hand = []
        for r, ids in zip(rows, batch["input_ids"]):
            real = ids[ids != tokenizer.pad_token_id]
            hidden = model.get_base_model().model(real[None]).last_hidden_state[0, -1]
            out = model.get_base_model().score(hidden)[0]
            by_hand.append(abs(float(out) - (math.log1p(r["price"]) - scale.center) / scale.scale))
        loss = RegressionTrainer.compute_loss(
            type("T", (), {"scale": scale})(), model, batch)
    assert float(loss) == pytest.approx(sum(by_hand) / 3, rel=1e-5)
    huber = regression_loss(torch.tensor([0.0, 3.0]), torch.tensor([0.5, 0.0]), "huber")
    assert float(huber) == pytest.approx((0.5 * 0.25 + (3.0 - 0.5)) / 2)
    # delta 2: the 3.0 miss is still linear beyond 2 spreads, a 1.5 miss now squared
    wide = regression_loss(torch.tensor([0.0, 3.0, 1.5]), torch.tensor([0.5, 0.0, 0.0]), "huber", delta=2.0)
    assert float(wide) == pytest.approx((0.5 * 0.25 + 2.0 * (3.0 - 1.0) + 0.5 * 2.25) / 3)


def test_mean_pooling_reads_the_mean_hidden_state_whatever_the_padding(tiny_model_dir, tokenizer, demo_splits):
    from pricetune.modeling import build_lora_config, load_base_model
    from pricetune.regress import PriceScale, RegressionCollator, head_outputs, tokenize_regression_rows

    from peft import get_peft_model

    rows = demo_splits["train"][:3]
    scale = PriceScale.fit([r["price"] for r in demo_splits["train"][:50]], pooling="mean")
    base = load_base_model(str(tiny_model_dir), "none", "fp32", objective="regress",
                           pad_token_id=tokenizer.pad_token_id)
    model = get_peft_model(base, build_lora_config(4, 8, 0.0, ["q_proj"], "regress")).eval()
    torch.nn.init.normal_(model.get_base_model().score.modules_to_save["default"].weight)
    batch = RegressionCollator(tokenizer.pad_token_id)(list(tokenize_regression_rows(tokenizer, rows, 128, scale)))
    assert len({int(m.sum()) for m in batch["attention_mask"]}) > 1, "the batch needs padding to test it"
    with torch.no_grad():
        by_hand = []
        for ids, mask in zip(batch["input_ids"], batch["attention_mask"]):
            hidden = model.get_base_model().model(ids[mask.bool()][None]).last_hidden_state[0]
            by_hand.append(float(model.get_base_model().score(hidden.mean(0))[0]))
        pooled = head_outputs(model, batch["input_ids"], batch["attention_mask"], "mean")
        last = head_outputs(model, batch["input_ids"], batch["attention_mask"], "last")
    assert pooled.tolist() == pytest.approx(by_hand, rel=1e-4, abs=1e-5)
    assert not torch.allclose(pooled, last), "mean pooling read the same state as the last token"


def test_the_huber_delta_is_checked_saved_and_read_back(tmp_path):
    from pricetune.regress import HEAD_FILE, HUBER_DELTA, PriceScale

    with pytest.raises(PricetuneError, match="regress_huber_delta"):
        resolve_config("demo", overrides=dict(objective="regress", regress_loss="huber", regress_huber_delta=0))
    with pytest.raises(PricetuneError, match="delta"):
        PriceScale.fit([5.0, 20.0, 50.0], loss="huber", delta=-1.0)
    assert PriceScale.fit([5.0, 20.0, 50.0], loss="l1", delta=2.0).delta is None  # only huber has one
    scale = PriceScale.fit([5.0, 20.0, 50.0], loss="huber", delta=2.5)
    scale.save(tmp_path)
    assert PriceScale.load(tmp_path) == scale
    # a head file written before the delta was saved trained with the default
    data = json.loads((tmp_path / HEAD_FILE).read_text())
    del data["delta"]
    (tmp_path / HEAD_FILE).write_text(json.dumps(data))
    assert PriceScale.load(tmp_path).delta == HUBER_DELTA
    # files from before the histogram heads and cut bases left: their plain values load, others are refused
    plain = {**data, "layers": None, "bins": 1, "low": None, "high": None, "sigma": None}
    (tmp_path / HEAD_FILE).write_text(json.dumps(plain))
    assert PriceScale.load(tmp_path).loss == "huber"
    for retired in (dict(bins=64, low=-3.0, high=3.0, sigma=0.75), dict(layers=15)):
        (tmp_path / HEAD_FILE).write_text(json.dumps({**plain, **retired}))
        with pytest.raises(PricetuneError, match="no longer builds"):
            PriceScale.load(tmp_path)


@pytest.mark.parametrize("pooling,loss", [("last", "l1"), ("mean", "l1"), ("mean", "huber")])
def test_regress_run_saves_loads_and_prices_identically(tiny_model_dir, small_dataset_dir, tmp_path, demo_splits,
                                                        pooling, loss, capsys):
    from pricetune.inference import Pricer
    from pricetune.regress import PriceScale
    from pricetune.training import train

    out = tmp_path / "regress-run"
    cfg = resolve_config("demo", overrides=tiny_overrides(tiny_model_dir, small_dataset_dir, out, objective="regress",
                                                         quantization="none", max_steps=4, max_length=64,
                                                         regress_pooling=pooling, regress_loss=loss,
                                                         regress_huber_delta=2.0))
    summary = train(cfg, log=lambda _: None)
    assert summary["objective"] == "regress" and (out / "regression_head.json").is_file()
    assert PriceScale.load(out).pooling == pooling and PriceScale.load(out).loss == loss
    assert PriceScale.load(out).delta == (2.0 if loss == "huber" else None)  # a resumed run trains as it began
    assert (out / "checkpoint-4" / "regression_head.json").is_file()  # a checkpoint prices on its own
    prompts = [r["prompt"] for r in demo_splits["test"][:6]]
    pricer = Pricer.from_run(str(out), batch_size=4)
    assert pricer.loaded.model.config.num_labels == 1
    first = pricer.price_many(prompts)
    again = Pricer.from_run(str(out), batch_size=1).price_many(prompts)
    assert first == pytest.approx(again, rel=1e-5)
    assert len(set(first)) > 1 and all(p > 0 for p in first)
    assert Pricer.from_run(str(out / "checkpoint-4")).price_many(prompts) == pytest.approx(first, rel=1e-5)
    if pooling == "last":  # look-alikes from the rows the run trained on, beside its price
        from pricetune.cli import main

        capsys.readouterr()
        assert main(["predict", "--run", str(out), "--similar", "2", prompts[0]]) == 0
        said = capsys.readouterr().out.splitlines()
        assert said[1] == "similar training items:" and len(said) == 4 and said[2].startswith("  $")
    # as an adapter (a pushed run's files): the head's scale and the run's prompt length come with it
    assert Pricer.from_hub(str(out), batch_size=4).price_many(prompts) == pytest.approx(first, rel=1e-5)


# ------------------------------------------------------------------------------------------------
# Baselines and ensembles (no model: fast)


def _synthetic(n: int, seed: int) -> list[dict]:
    """Items whose price is set by two words: 'steel' x10, 'large' x3, on a base of $5."""
    import random

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        steel, large = rng.random() < 0.5, rng.random() < 0.5
        words = ["steel" if steel else "plastic", "large" if large else "small", rng.choice(["red", "blue", "green"])]
        price = 5.0 * (10 if steel else 1) * (3 if large else 1) * math.exp(rng.gauss(0, 0.05))
        rows.append({"prompt": f"What does this cost to the nearest dollar?\n\nTitle: a {' '.join(words)} cup "
                               f"number {i}\n\nPrice is $", "completion": f"{round(price)}.00", "price": price})
    return rows


def test_tfidf_baseline_recovers_a_known_relation_and_picks_alpha_on_val():
    from pricetune.baselines import TfidfRidge

    train, val, test = _synthetic(300, 1), _synthetic(60, 2), _synthetic(60, 3)
    model = TfidfRidge.fit(train, val, alphas=(0.01, 1.0, 100.0))
    assert model.alpha == min(model.val_mae_by_alpha, key=model.val_mae_by_alpha.get)
    guesses = model.predict([r["prompt"] for r in test])
    ratio = [g / r["price"] for g, r in zip(guesses, test)]
    assert all(0.6 < x < 1.6 for x in ratio), ratio  # prices span 5..150: the words are read
    # val only chooses; the fit itself is train-only: another val with the same choice, same model
    other = TfidfRidge.fit(train, _synthetic(60, 9), alphas=(model.alpha,))
    assert other.predict([r["prompt"] for r in test]) == pytest.approx(guesses)


def test_a_refit_tfidf_keeps_the_val_chosen_alpha_and_learns_from_val_too():
    from pricetune.baselines import TfidfRidge

    train, val, test = _synthetic(200, 1), _synthetic(60, 2), _synthetic(40, 3)
    chosen = TfidfRidge.fit(train, val, alphas=(0.01, 1.0, 100.0))
    refit = TfidfRidge.fit(train, val, alphas=(0.01, 1.0, 100.0), refit=True)
    assert refit.alpha == chosen.alpha and refit.val_mae_by_alpha == chosen.val_mae_by_alpha
    prompts = [r["prompt"] for r in test]
    assert refit.predict(prompts) != pytest.approx(chosen.predict(prompts))
    # the refit is that alpha fit on train + val, nothing else
    both = TfidfRidge.fit(train + val, val, alphas=(chosen.alpha,))
    assert refit.predict(prompts) == pytest.approx(both.predict(prompts))


def test_the_tfidf_features_are_fit_once_for_every_setting_and_give_the_same_model(monkeypatch, capsys):
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline

    from pricetune.baselines import TfidfRidge, tfidf
    from pricetune.baselines.common import item_text

    train, val, test = _synthetic(300, 1), _synthetic(60, 2), _synthetic(60, 3)
    original, made = tfidf.tfidf_features, []
    monkeypatch.setattr(tfidf, "tfidf_features", lambda: made.append(1) or original())
    model = TfidfRidge.fit(train, val, alphas=(0.01, 1.0, 100.0), progress=True)
    assert len(made) == 1  # one TF-IDF fit for three alphas (it was three)
    assert "tfidf: each setting on val" in capsys.readouterr().err
    by_hand = make_pipeline(original(), Ridge(alpha=model.alpha))
    by_hand.fit([item_text(r["prompt"]) for r in train], [math.log1p(r["price"]) for r in train])
    prompts = [r["prompt"] for r in test]
    assert model.predict(prompts) == [max(0.0, math.expm1(v)) for v in by_hand.predict([item_text(p) for p in prompts])]


def test_tfidf_knn_prices_from_similar_items_and_picks_k_on_val():
    from pricetune.baselines import TfidfKnn

    train, val, test = _synthetic(300, 1), _synthetic(60, 2), _synthetic(60, 3)
    model = TfidfKnn.fit(train, val, ks=(1, 5, 299, 500))  # 500 > the 300 train rows: skipped
    assert set(model.val_mae_by_k) == {1, 5, 299} and model.k == min(model.val_mae_by_k, key=model.val_mae_by_k.get)
    guesses = model.predict([r["prompt"] for r in test])
    ratio = [g / r["price"] for g, r in zip(guesses, test)]
    assert sorted(ratio)[len(ratio) // 2] == pytest.approx(1.0, abs=0.4)  # prices span 5..150: the words are read
    assert model.val_mae_by_k[model.k] < model.val_mae_by_k[299]  # near neighbours beat the whole train split
    # an item seen in training costs what it cost there: distance 0 takes all the weight
    assert model.predict([train[7]["prompt"]])[0] == pytest.approx(train[7]["price"], rel=1e-6)
    # the refit: the k val chose, fit on train + val
    refit = TfidfKnn.fit(train, val, ks=(1, 5, 299), refit=True)
    seen = {r["prompt"] for r in train}
    new = next(r for r in val if r["prompt"] not in seen)  # a text only val has
    assert refit.k == model.k and refit.predict([new["prompt"]])[0] == pytest.approx(new["price"], rel=1e-6)


def test_an_ensemble_with_a_tfidf_knn_member_saves_and_refits_it(tmp_path):
    import json

    from pricetune.baselines import TfidfKnn
    from pricetune.cli import main
    from pricetune.ensemble import Member, fit_ensemble, refit_ensemble
    from pricetune.inference import Pricer

    data = _ensemble_data(tmp_path)
    rows = {s: [json.loads(line) for line in (data / f"{s}.jsonl").read_text().splitlines()] for s in ("train", "val")}
    record = fit_ensemble(str(data), [Member("tfidf-knn"), Member("median")], tmp_path / "ens", log=lambda _: None)
    assert record["members"][0] == {"spec": "tfidf-knn", "kind": "tfidf-knn"} and record["weights"][0] > 0
    chosen = TfidfKnn.load(tmp_path / "ens" / "tfidf-knn.joblib")
    assert Pricer.from_ensemble(str(tmp_path / "ens")).price_many([rows["train"][0]["prompt"]])[0] > 0
    refit_ensemble(tmp_path / "ens", {}, tmp_path / "refit", log=lambda _: None)
    refit = TfidfKnn.load(tmp_path / "refit" / "tfidf-knn.joblib")
    by_hand = TfidfKnn.fit(rows["train"] + rows["val"], rows["val"], ks=(chosen.k,))
    prompts = [r["prompt"] for r in _synthetic(20, 7)]
    assert refit.k == chosen.k and refit.predict(prompts) == pytest.approx(by_hand.predict(prompts))
    # and from the command line, scored like any model
    out = tmp_path / "eval"
    assert main(["evaluate", "--baseline", "tfidf-knn", "--dataset", str(data), "--limit", "0",
                 "--output-dir", str(out)]) == 0
    settings = json.loads((out / "settings.json").read_text())
    assert settings["baseline"] == "tfidf-knn" and settings["k"] == chosen.k
    assert json.loads((out / "metrics.json").read_text())["n"] == 40


def test_a_refit_run_trains_on_train_and_val_and_refuses_to_be_judged_on_val(tiny_model_dir, small_dataset_dir,
                                                                           tmp_path):
    from pricetune.cli import main
    from pricetune.config import ConfigError
    from pricetune.ensemble import Member, fit_ensemble
    from pricetune.training import prepare_trainer

    out = tmp_path / "refit"
    cfg = resolve_config("demo", overrides=tiny_overrides(tiny_model_dir, small_dataset_dir, out, objective="regress",
                                                         quantization="none", max_steps=1, max_length=64,
                                                         train_on_val=True))
    trainer, _ = prepare_trainer(cfg, log=lambda _: None)
    assert len(trainer.train_dataset) == 48 + 8 and trainer.eval_dataset is None  # train + the first val_size rows
    assert trainer.args.eval_strategy == "no"
    from pricetune.training.card import write_model_card

    write_model_card(out, cfg, dict(train_rows=56, val_rows=0, steps=1, initial_eval_loss=None, final_eval_loss=None,
                                    precision="fp32", device="cpu"))
    assert "56 rows of train + val: a refit" in (out / "README.md").read_text()
    assert main(["evaluate", str(out), "--split", "val"]) == 2  # judged on its own training rows: refused
    assert main(["evaluate", str(out), "--train-on-val"]) == 2  # a run is refit by training, not here
    assert main(["evaluate", "--baseline", "tfidf", "--train-on-val", "--split", "val",
                 "--dataset", str(small_dataset_dir)]) == 2
    with pytest.raises(ConfigError, match="trained on the val split"):
        fit_ensemble(str(small_dataset_dir), [Member(str(out)), Member("median")], tmp_path / "ens",
                     log=lambda _: None)
    assert not (tmp_path / "ens").exists()
    with pytest.raises(ConfigError, match="train_on_val"):
        resolve_config("demo", overrides=dict(objective="regress", train_on_val=True, val_size=0))


def _ensemble_data(tmp_path):
    data = tmp_path / "data"
    write_jsonl(data / "train.jsonl", _synthetic(200, 1))
    write_jsonl(data / "val.jsonl", _synthetic(40, 2))
    write_jsonl(data / "test.jsonl", _synthetic(40, 3))
    return data


def test_an_ensemble_naming_a_member_that_left_says_so(tmp_path):
    from pricetune.cli import main
    from pricetune.ensemble import Ensemble

    (tmp_path / "ens").mkdir()
    (tmp_path / "ens" / "ensemble.json").write_text(json.dumps({
        "dataset": "demo", "members": [{"spec": "tfidf-embed", "kind": "tfidf-embed"}, {"spec": "median"}],
        "weights": [0.5, 0.5]}))
    with pytest.raises(PricetuneError, match="the tfidf-embed member left pricetune: .* above mlp"):
        Ensemble.load(tmp_path / "ens")
    assert main(["select", "--dataset", "demo", "--member", "tfidf-embed", "--out", str(tmp_path / "sel")]) == 2
    assert not (tmp_path / "sel").exists()


def test_ensemble_weights_depend_on_val_only(tmp_path):
    from pricetune.ensemble import Member, combine, fit_ensemble, fit_weights
    from pricetune.inference import Pricer

    data = _ensemble_data(tmp_path)
    members = [Member("tfidf"), Member("median")]
    first = fit_ensemble(str(data), members, tmp_path / "ens1", log=lambda _: None)
    write_jsonl(data / "test.jsonl", _synthetic(40, 4)[:10])  # other test rows
    second = fit_ensemble(str(data), members, tmp_path / "ens2", log=lambda _: None)
    assert first["weights"] == second["weights"] and abs(sum(first["weights"]) - 1) < 1e-9
    assert first["weights"][0] > first["weights"][1]  # tfidf knows the words; the median does not
    write_jsonl(data / "val.jsonl", _synthetic(40, 5))
    assert fit_ensemble(str(data), members, tmp_path / "ens3", log=lambda _: None)["member_val_mae"] != \
        first["member_val_mae"]
    # the saved folder prices without the data, as fit
    pricer = Pricer.from_ensemble(str(tmp_path / "ens1"))
    assert len(pricer.price_many(["Title: a steel large red cup"])) == 1
    # weights are the grid point with the lowest MAE
    truths = [10.0, 20.0]
    weights, mae = fit_weights(truths, [[10.0, 20.0], [40.0, 40.0]])
    assert weights == [1.0, 0.0] and mae == pytest.approx(0.0, abs=1e-9)
    assert combine([0.5, 0.5], [[math.e - 1], [None]]) == [pytest.approx(math.e - 1)]


def test_a_refit_ensemble_keeps_the_weights_refits_its_members_and_is_scored_on_test_only(tmp_path):
    import json
    import statistics

    from pricetune.baselines import TfidfRidge
    from pricetune.cli import main
    from pricetune.ensemble import Ensemble, Member, fit_ensemble, refit_ensemble
    from pricetune.inference import Pricer

    data = _ensemble_data(tmp_path)
    rows = {s: [json.loads(line) for line in (data / f"{s}.jsonl").read_text().splitlines()] for s in ("train", "val")}
    source = fit_ensemble(str(data), [Member("tfidf"), Member("median"), Member("mean")], tmp_path / "ens",
                          log=lambda _: None)
    source["weights"] = [0.55, 0.45, 0.0]  # as if val had chosen these: a constant kept, one left out
    (tmp_path / "ens" / "ensemble.json").write_text(json.dumps(source))
    record = refit_ensemble(tmp_path / "ens", {}, tmp_path / "refit", log=lambda _: None)
    assert [(m["spec"], w) for m, w in zip(record["members"], record["weights"])] == [("tfidf", 0.55), ("median", 0.45)]
    assert record["train_on_val"] and record["source_val_mae"] == source["val_mae"]
    # each classical member fit again on train + val with the setting val chose
    chosen = TfidfRidge.load(tmp_path / "ens" / "tfidf.joblib")
    refit = TfidfRidge.load(tmp_path / "refit" / "tfidf.joblib")
    by_hand = TfidfRidge.fit(rows["train"] + rows["val"], rows["val"], alphas=(chosen.alpha,))
    prompts = [r["prompt"] for r in _synthetic(20, 7)]
    assert refit.alpha == chosen.alpha and refit.predict(prompts) == pytest.approx(by_hand.predict(prompts))
    both = [r["price"] for r in rows["train"] + rows["val"]]
    assert record["constants"] == {"median": pytest.approx(statistics.median(both))}
    assert record["constants"]["median"] != pytest.approx(source["constants"]["median"])
    # it prices, and it is scored on test only: its members trained on val
    ens = Ensemble.load(tmp_path / "refit")
    assert ens.train_on_val and Pricer.from_ensemble(str(tmp_path / "refit")).price_many(["Title: a steel cup"])[0] > 0
    assert main(["evaluate", "--ensemble", str(tmp_path / "refit"), "--split", "val", "--limit", "0",
                 "--output-dir", str(tmp_path / "eval-val")]) == 2
    assert main(["evaluate", "--ensemble", str(tmp_path / "refit"), "--limit", "0",
                 "--output-dir", str(tmp_path / "eval-test")]) == 0
    assert json.loads((tmp_path / "eval-test" / "metrics.json").read_text())["n"] == 40
    with pytest.raises(PricetuneError, match="already a refit"):
        refit_ensemble(tmp_path / "refit", {}, tmp_path / "refit2", log=lambda _: None)
    assert main(["ensemble", "--refit", str(tmp_path / "ens"), "--member", "tfidf", "--out", str(tmp_path / "x")]) == 2
    assert main(["ensemble", "--dataset", str(data), "--member", "tfidf", "--member", "median", "--swap", "a=b",
                 "--out", str(tmp_path / "x")]) == 2


def test_a_refit_ensemble_swaps_each_weighted_run_for_a_refit_of_its_recipe(tiny_model_dir, tmp_path):
    import json

    from pricetune.baselines import TfidfRidge
    from pricetune.cli import main
    from pricetune.ensemble import Ensemble, refit_ensemble

    data = _ensemble_data(tmp_path)

    def run(name, **extra):  # a run directory as far as the refit reads it: its saved config
        out = tmp_path / name
        out.mkdir()
        cfg = resolve_config("demo", overrides=tiny_overrides(tiny_model_dir, data, out, objective="regress",
                                                             quantization="none", **extra))
        (out / "config.yaml").write_text(cfg.to_yaml(), encoding="utf-8")
        return str(out)

    a, b = run("run-a"), run("run-b", seed=7)
    refit_a, other_seed = run("refit-a", train_on_val=True, save_steps=5), run("refit-a7", train_on_val=True, seed=7)
    not_refit, other_rank = run("again-a"), run("refit-r16", train_on_val=True, lora_r=16, lora_alpha=32)
    source = tmp_path / "ens"
    source.mkdir()
    TfidfRidge.fit(_synthetic(200, 1), _synthetic(40, 2), alphas=(1.0,)).save(source / "tfidf.joblib")
    (source / "ensemble.json").write_text(json.dumps({
        "dataset": str(data), "fit_on": "val split, 40 items", "val_mae": 3.0, "constants": {},
        "members": [{"spec": a, "kind": "run"}, {"spec": b, "kind": "run"}, {"spec": "tfidf", "kind": "tfidf"}],
        "weights": [0.6, 0.0, 0.4]}))

    def refit(swaps, out="refit"):
        return refit_ensemble(source, swaps, tmp_path / out, log=lambda _: None)

    with pytest.raises(PricetuneError, match="--swap"):
        refit({})  # the weighted run needs its refit
    with pytest.raises(PricetuneError, match="weight 0"):
        refit({a: refit_a, b: other_seed})  # b is left out: nothing to swap
    with pytest.raises(PricetuneError, match="did not train on the val split"):
        refit({a: not_refit})
    with pytest.raises(PricetuneError, match="lora_alpha, lora_r"):
        refit({a: other_rank})
    assert not (tmp_path / "refit").exists()
    record = refit({a: other_seed})  # another seed of the same recipe is still its refit
    assert record["members"][0] == {"spec": other_seed, "kind": "run", "decode": "greedy", "samples": 64,
                                    "refit_of": a, "path": "../refit-a7"}  # found from the ensemble's folder
    assert [m["spec"] for m in record["members"]] == [other_seed, "tfidf"] and record["weights"] == [0.6, 0.4]
    assert Ensemble.load(tmp_path / "refit").train_on_val
    assert main(["ensemble", "--refit", str(source), "--swap", f"{a}={refit_a}", "--out", str(tmp_path / "r2")]) == 0
    assert main(["ensemble", "--refit", str(source), "--swap", "no-equals-sign", "--out", str(tmp_path / "r3")]) == 2


def test_ensemble_fit_is_the_grid_point_combine_scores_best():
    import random
    import statistics

    from pricetune.ensemble import combine, fit_weights, simplex_grid

    rng = random.Random(0)
    truths = [rng.uniform(5, 500) for _ in range(30)]
    members = [[t * rng.uniform(0.5, 1.8) if rng.random() > 0.1 else None for t in truths] for _ in range(3)]
    members[2][0] = members[1][0] = members[0][0] = None  # an item no member prices counts as $0
    grid = simplex_grid(3)
    assert len(grid) == 231 and len(set(grid)) == 231 and all(abs(sum(w) - 1) < 1e-9 for w in grid)
    by_hand = [statistics.fmean(abs((g or 0.0) - t) for g, t in zip(combine(list(w), members), truths)) for w in grid]
    weights, mae = fit_weights(truths, members, chunk=50)
    assert mae == pytest.approx(min(by_hand)) and tuple(weights) == grid[by_hand.index(min(by_hand))]


def test_the_folds_fit_in_one_pass_as_each_would_alone():
    import random

    import numpy as np

    from pricetune.ensemble import combine, fit_weights
    from pricetune.ensemble.weights import fit_weights_each, out_of_fold

    rng = random.Random(1)
    truths = [rng.uniform(5, 500) for _ in range(40)]
    members = [[t * rng.uniform(0.5, 1.8) if rng.random() > 0.1 else None for t in truths] for _ in range(3)]
    subsets = [range(40), [0, 3, 5, 7, 11], list(range(1, 40, 2)), [39]]
    alone = [fit_weights([truths[i] for i in items], [[p[i] for i in items] for p in members]) for items in subsets]
    together = fit_weights_each(truths, members, subsets, chunk=50)
    assert [w for w, _ in together] == [w for w, _ in alone]
    assert [mae for _, mae in together] == pytest.approx([mae for _, mae in alone], rel=1e-12)
    # the out-of-fold guesses: each fold's items priced by the weights fit on the other folds alone
    cuts = np.random.RandomState(3)
    for guesses in out_of_fold(truths, members, "weights", folds=4, repeats=2, seed=3):
        for held in np.array_split(cuts.permutation(40), 4):
            kept = [j for j in range(40) if j not in held]
            weights, _ = fit_weights([truths[j] for j in kept], [[p[j] for j in kept] for p in members])
            assert [guesses[i] for i in held] == combine(weights, [[p[i] for i in held] for p in members])


@pytest.mark.parametrize("objective", ["regress", "generate"])
def test_an_unquantized_base_prices_the_same_with_its_adapter_merged(tiny_model_dir, small_dataset_dir, tmp_path,
                                                                    demo_splits, objective):
    from pricetune.inference import load_model
    from pricetune.training import train

    out = tmp_path / "run"
    train(resolve_config("demo", overrides=tiny_overrides(tiny_model_dir, small_dataset_dir, out, objective=objective,
                                                          quantization="none", max_steps=3, max_length=64)),
          log=lambda _: None)
    prompts = [r["prompt"] for r in demo_splits["test"][:6]]
    beside = load_model(run=str(out), precision="fp32", merge=False)
    merged = load_model(run=str(out), precision="fp32")
    assert hasattr(beside.model, "peft_config") and not hasattr(merged.model, "peft_config")
    assert merged.merged and not beside.merged
    assert not any("lora_" in n for n, _ in merged.model.named_parameters())
    a, b = beside.price(prompts, batch_size=3), merged.price(prompts, batch_size=3)
    if objective == "regress":  # fp32: the merged sum rounds as the separate one does, to ~1e-6
        assert [p for _, p in b] == pytest.approx([p for _, p in a], rel=1e-4)
        assert len({p for _, p in a}) > 1
    else:
        assert [t for t, _ in b] == [t for t, _ in a]
    # the run's own tokenizer, read from its directory, is the one the base's file gives
    from pricetune.modeling import load_tokenizer

    base = load_tokenizer(str(tiny_model_dir))
    assert merged.tokenizer(prompts).input_ids == base(prompts).input_ids
    assert merged.tokenizer.pad_token == base.pad_token and merged.tokenizer.padding_side == "left"


def test_a_4bit_base_keeps_its_adapter_beside_it(tiny_model_dir, small_dataset_dir, tmp_path):
    from pricetune.inference import load_model
    from pricetune.training import train

    out = tmp_path / "run"
    train(resolve_config("demo", overrides=tiny_overrides(tiny_model_dir, small_dataset_dir, out, objective="regress",
                                                          max_steps=1, max_length=64)), log=lambda _: None)
    loaded = load_model(run=str(out))  # merging would round the LoRA update to nf4
    assert hasattr(loaded.model, "peft_config") and not loaded.merged
    assert any("Linear4bit" in type(m).__name__ for m in loaded.model.modules())
