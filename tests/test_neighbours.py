"""Similar items' prices in the prompt (`baselines.neighbours`): the line, the lookup, and a run that trains,
prices, travels and refuses export with it."""

import json

import pytest

from pricetune.config import ConfigError, resolve_config
from pricetune.data import format_completion, make_prompt
from pricetune.baselines.neighbours import INDEX_FILE, NeighbourIndex, insert_line, neighbour_line
from pricetune.errors import PricetuneError

from .conftest import tiny_overrides

KETTLES = ["Title: stainless steel electric kettle 1.7 litre", "Title: stainless steel electric kettle 1.5 litre",
           "Title: glass electric kettle 1.7 litre blue light"]
LAPTOPS = ["Title: gaming laptop 16GB RAM 1TB SSD RTX graphics", "Title: gaming laptop 32GB RAM 2TB SSD RTX graphics",
           "Title: thin gaming laptop 16GB RAM 512GB SSD"]
SOCKS = ["Title: cotton crew socks pack of 6", "Title: cotton ankle socks pack of 12", "Title: wool crew socks pack of 3"]


def priced(texts: list[str], price: float) -> list[dict]:
    return [{"prompt": make_prompt(t), "completion": format_completion(price + i), "price": price + i}
            for i, t in enumerate(texts)]


POOL = priced(KETTLES, 30.0) + priced(LAPTOPS, 1000.0) + priced(SOCKS, 10.0)


def test_the_line_goes_right_after_the_question_and_the_item_keeps_its_text():
    prompt = make_prompt("Title: a red kettle")
    out = insert_line(prompt, neighbour_line([24.4, 31.0, 1234.6]))
    assert out == ("What does this cost to the nearest dollar?\n\nSimilar items sold for: $24, $31, $1235\n\n"
                   "Title: a red kettle\n\nPrice is $")
    with pytest.raises(PricetuneError, match="question line"):
        insert_line("Title: a red kettle\n\nPrice is $", "Similar items sold for: $1")


def test_an_item_finds_its_look_alikes_and_a_training_row_never_itself():
    index = NeighbourIndex.build(POOL, k=2)
    found = index.neighbours(["Title: steel electric kettle 1.2 litre", "Title: gaming laptop 8GB RAM SSD"])
    assert all(j < 3 for j in found[0]) and all(3 <= j < 6 for j in found[1])
    own = index.neighbours(index.texts, exclude_self=True)
    for i, row in enumerate(own):
        assert len(row) == 2 and i not in row
        assert {j // 3 for j in row} == {i // 3}  # the other two of its kind
    # an exact twin (a duplicate row, at distance 0) would show the row its own item's price: left out too
    twins = NeighbourIndex.build(POOL + priced(KETTLES[:1], 99.0), k=1)
    found = twins.neighbours(twins.texts, exclude_self=True)
    assert found[0] != [9] and found[9] != [0] and found[0][0] < 3 and found[9][0] < 3
    with pytest.raises(PricetuneError, match="all of its texts"):
        index.neighbours(index.texts[:3], exclude_self=True)
    # a refit's val split is empty: nothing to look up, no error
    assert index.neighbours([]) == [] and index.add_to_rows([]) == []


def test_prompts_gain_their_neighbours_prices_and_the_index_survives_saving(tmp_path):
    index = NeighbourIndex.build(POOL, k=2)
    out = index.add_to_prompts(["Title: cotton crew socks pack of 10"])[0]
    line = out.split("\n\n")[1]
    assert line.startswith("Similar items sold for: $") and all(p in ("$10", "$11", "$12") for p in
                                                               line.removeprefix("Similar items sold for: ").split(", "))
    rows = index.add_to_rows(POOL, exclude_self=True)
    assert rows[0]["price"] == POOL[0]["price"] and "$30," not in rows[0]["prompt"].split("\n\n")[1] + ","
    loaded = NeighbourIndex.load(index.save(tmp_path))
    assert loaded.add_to_prompts(["Title: cotton crew socks pack of 10"]) == [out]
    assert json.loads((tmp_path / INDEX_FILE).read_text())["k"] == 2
    (tmp_path / INDEX_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(PricetuneError, match="could not read the neighbour index"):
        NeighbourIndex.load(tmp_path)
    for k in (0, len(POOL)):
        with pytest.raises(PricetuneError):
            NeighbourIndex.build(POOL, k=k)
    with pytest.raises(ConfigError, match="neighbours: Input should be greater than or equal to 0"):
        resolve_config("demo", overrides=dict(neighbours=-1))


def test_a_run_with_neighbours_trains_prices_travels_and_is_not_exported(tiny_model_dir, small_dataset_dir, tmp_path,
                                                                         demo_splits):
    from pricetune import hub
    from pricetune.cli import main
    from pricetune.ensemble import Member
    from pricetune.inference import Pricer
    from pricetune.training import prepare_trainer, train

    out = tmp_path / "nbrs"
    cfg = resolve_config("demo", overrides=tiny_overrides(tiny_model_dir, small_dataset_dir, out, objective="regress",
                                                         quantization="none", max_steps=2, max_length=96, neighbours=3))
    trainer, ctx = prepare_trainer(cfg, log=lambda _: None)
    first_row = ctx["tokenizer"].decode(trainer.train_dataset[0]["input_ids"])
    assert "Similar items sold for: $" in first_row
    # a refit (train + val, no val left to look up) prepares too: its pool holds the val items as well
    refit = tmp_path / "nbrs-refit"
    refit_cfg = resolve_config("demo", overrides=tiny_overrides(tiny_model_dir, small_dataset_dir, refit,
                                                               objective="regress", quantization="none", max_steps=2,
                                                               max_length=96, neighbours=3, train_on_val=True))
    refit_trainer, _ = prepare_trainer(refit_cfg, log=lambda _: None)
    assert refit_trainer.eval_dataset is None and len(NeighbourIndex.load(refit).prices) == 48 + 8
    train(cfg, log=lambda _: None, overwrite=True)
    index = NeighbourIndex.load(out)
    assert index.k == 3 and len(index.prices) == 48  # the train rows, never val or test
    assert "neighbours.json" in (out / "README.md").read_text()  # the card says the file must travel

    prompts = [r["prompt"] for r in demo_splits["test"][:5]]
    pricer = Pricer.from_run(str(out), batch_size=4)
    with_line = pricer.loaded.prompts_for(prompts)
    assert all("Similar items sold for: $" in p for p in with_line)
    prices = pricer.price_many(prompts)
    # the same as the bare model given the looked-up prompts: the lookup is all that was added
    pricer.loaded.neighbours = None
    assert pricer.price_many(with_line) == pytest.approx(prices, rel=1e-6)
    # as a pushed adapter: the items travel with it and are looked up the same way (its base, a folder of
    # this machine, does not travel: it is named)
    staged = tmp_path / "staged"
    staged.mkdir()
    assert INDEX_FILE in hub.stage_upload(out, staged)
    assert Pricer.from_hub(str(staged), base_model=str(tiny_model_dir), batch_size=4).price_many(prompts) == \
        pytest.approx(prices, rel=1e-6)
    # a TF-IDF lookup is a classical part: the run is no LLM-only entry, alone or in an ensemble
    assert not Member(str(out)).llm_only
    board = tmp_path / "board.json"
    assert main(["evaluate", str(out), "--limit", "4", "--output-dir", str(tmp_path / "ev"),
                 "--leaderboard", str(board), "--name", "nbrs"]) == 0
    assert json.loads(board.read_text())[0]["llm_only"] is False
    assert json.loads((tmp_path / "ev" / "settings.json").read_text())["neighbours"] == 3
    assert main(["export", str(out), "--out", str(tmp_path / "exported")]) == 2
    assert not (tmp_path / "exported").exists()
    (out / INDEX_FILE).unlink()
    with pytest.raises(PricetuneError, match="neighbours.json is missing"):
        Pricer.from_run(str(out))
