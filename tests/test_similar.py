"""Look-alike items (`--similar K`): the training items most like a description, with their prices."""

import json

import pytest

from tests.conftest import write_jsonl
from tests.test_regress import _ensemble_data, _synthetic
from tests.test_serving import Running, _call


def test_look_alikes_are_the_most_similar_training_items_in_order():
    from pricetune.baselines.neighbours import NeighbourIndex
    from pricetune.errors import PricetuneError
    from pricetune.inference.similar import look_alikes

    rows = _synthetic(30, 1)
    index = NeighbourIndex.build(rows, k=1)
    query = rows[4]["prompt"].split("\n\n")[1]  # a training item's bare text
    found = look_alikes(index, [query, "Title: a plastic small blue cup"], 4)
    assert [len(f) for f in found] == [4, 4]
    first = found[0][0]
    assert first.price == rows[4]["price"] and first.similarity == pytest.approx(1.0) and "number 4" in first.text
    for f in found:
        assert all(a.similarity >= b.similarity for a, b in zip(f, f[1:])) and all(0 <= a.similarity <= 1 for a in f)
    assert "plastic small blue" in found[1][0].text and all("small blue" in a.text for a in found[1])
    assert look_alikes(index, [query], 0) == [[]]
    with pytest.raises(PricetuneError, match="between 0 and 20"):
        look_alikes(index, [query], 21)


def test_a_run_looks_in_the_rows_it_trained_on(tmp_path):
    from pricetune.baselines.neighbours import NeighbourIndex
    from pricetune.config import resolve_config
    from pricetune.inference.similar import index_of_run

    data = _ensemble_data(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    cfg = resolve_config("demo", overrides=dict(dataset=str(data), train_size=25, output_dir=str(run)))
    (run / "config.yaml").write_text(cfg.to_yaml())
    index = index_of_run(run)  # no weights needed: the config names the data and the rows
    train = [json.loads(line) for line in (data / "train.jsonl").read_text().splitlines()]
    assert len(index.texts) == 25 and [round(p, 6) for p in index.prices] == [round(r["price"], 6) for r in train[:25]]
    # a refit trained on train + val: its val rows are among its items
    refit = cfg.model_copy(update=dict(train_on_val=True, val_size=10))
    (run / "config.yaml").write_text(refit.to_yaml())
    assert len(index_of_run(run).texts) == 35
    # a run trained with neighbours' prices carries its items: neighbours.json is read, not the data
    NeighbourIndex.build(_synthetic(12, 9), k=2).save(run)
    assert len(index_of_run(run).texts) == 12


def test_an_ensemble_shows_look_alikes_from_train_only_in_python_and_over_http(tmp_path):
    from pricetune.ensemble import Member, fit_ensemble
    from pricetune.inference import Pricer
    from pricetune.serving.app import create_app

    data = _ensemble_data(tmp_path)
    fit_ensemble(str(data), [Member("tfidf"), Member("median")], tmp_path / "ens", log=lambda _: None, cv_repeats=0)
    train_texts = {r["prompt"].split("\n\n")[1] for r in _synthetic(200, 1)}
    pricer = Pricer.from_ensemble(str(tmp_path / "ens"))
    before = pricer.similar(["Title: a steel large red cup"], 3)[0]
    assert len(before) == 3 and all(a.text in train_texts for a in before)
    write_jsonl(data / "test.jsonl", _synthetic(40, 77))  # other test rows: the same look-alikes
    assert Pricer.from_ensemble(str(tmp_path / "ens")).similar(["Title: a steel large red cup"], 3)[0] == before

    with Running(create_app(pricer, "ens", similar=3)) as srv:
        status, body, _ = _call(srv.url + "/price", {"description": "Title: a steel large red cup", "similar": 2})
        assert status == 200 and body["price"] > 0 and len(body["similar"]) == 2
        assert body["similar"][0] == {"text": before[0].text, "price": before[0].price,
                                      "similarity": before[0].similarity}
        status, body, _ = _call(srv.url + "/price", {"descriptions": ["Title: a cup", "Title: a pan"], "similar": 1})
        assert status == 200 and [len(s) for s in body["similars"]] == [1, 1] and "similar" not in body
        status, body, _ = _call(srv.url + "/price", {"description": "Title: a cup", "similar": 4})
        assert status == 400 and "at most 3" in body["detail"]
        status, health, _ = _call(srv.url + "/health")
        assert health["similar"] == {"max": 3, "items": 200, "shows": "training data text"}
        page = urllib_text(srv.url + "/")
        assert "const SIMILAR = 3;" in page and "Similar training items" in page
    with Running(create_app(pricer, "ens")) as srv:
        status, body, _ = _call(srv.url + "/price", {"description": "Title: a cup", "similar": 2})
        assert status == 400 and "--similar" in body["detail"]
        assert _call(srv.url + "/health")[1]["similar"] is None


def test_predict_needs_a_run_for_look_alikes(tmp_path, capsys):
    from pricetune.cli import main

    assert main(["predict", "--no-adapter", "--base-model", "x", "--similar", "30", "Title: a pen"]) == 2
    assert "between 0 and 20" in capsys.readouterr().err
    # serve refuses it before loading anything: the run named here does not exist
    assert main(["serve", "--run", str(tmp_path / "no-run"), "--port", "0", "--similar", "30"]) == 2
    assert "between 0 and 20" in capsys.readouterr().err


def urllib_text(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read().decode()


def test_the_service_fits_its_look_alike_index_before_the_first_request(tmp_path):
    # lookups run in worker threads: an index fitted on first use was fitted by two at once (a 500)
    from pricetune.baselines.neighbours import NeighbourIndex
    from pricetune.serving.app import create_app

    class Pricer:
        items = None

        def training_items(self):
            return NeighbourIndex.build(_synthetic(30, 1), k=1)

        def price_items(self, texts):
            return [1.0] * len(texts)

    pricer = Pricer()
    create_app(pricer, "fake", similar=2)
    assert pricer.items is not None and pricer.items._search is not None


def test_a_pick_selected_on_n_train_rows_looks_in_those_rows_only(tmp_path):
    from pricetune.ensemble import Member
    from pricetune.ensemble.select import select
    from pricetune.inference import Pricer

    data = _ensemble_data(tmp_path)
    select(str(data), [Member("tfidf"), Member("median")], tmp_path / "sel", log=lambda _: None, cv_repeats=1,
           train_size=40)
    for kind in ("pipeline", "classical"):
        record = json.loads((tmp_path / "sel" / kind / "ensemble.json").read_text())
        assert record["classical_train_rows"] == 40
        assert len(Pricer.from_ensemble(str(tmp_path / "sel" / kind)).training_items().texts) == 40
