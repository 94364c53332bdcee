import json
import math
import re
import shutil
import statistics
import subprocess
from pathlib import Path

import pytest
import torch

from pricetune.cli import main

from .conftest import write_jsonl

PREDICTIONS = [
    {"title": "Lamp", "prediction": "110.00", "price": 100.0},
    {"title": "Chair", "prediction": "I don't know", "price": 50.0},
    {"title": "Desk", "prediction": 100, "price": 200.0},
    {"prompt": "What does this cost to the nearest dollar?\n\nTitle: Pen\n\nPrice is $", "prediction": "$12",
     "completion": "10.00"},
]


def test_predictions_file_gives_hand_computed_metrics(tmp_path, capsys):
    f = write_jsonl(tmp_path / "preds.jsonl", PREDICTIONS)
    out = tmp_path / "eval"
    assert main(["evaluate", "--predictions", str(f), "--output-dir", str(out)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"eval: {out}"
    m = json.loads((out / "metrics.json").read_text())
    assert m["n"] == 4 and m["failed"] == 1
    assert m["mae"] == pytest.approx(40.5)  # |110-100|, |0-50|, |100-200|, |12-10|
    assert m["median_ae"] == pytest.approx(30.0)
    assert (m["hit_green"], m["hit_orange"], m["hit_red"]) == (0.5, 0.0, 0.5)  # the failed parse is red
    assert set(m) >= {"n", "failed", "mae", "median_ae", "mse", "rmse", "rmsle", "r2", "mape", "hit_green",
                      "hit_orange", "hit_red", "mae_ci95"}
    rows = [json.loads(l) for l in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["title"] for r in rows] == ["Lamp", "Chair", "Desk", "Pen"]
    assert rows[1]["price"] is None and rows[1]["colour"] == "red"
    for name in ["scatter.png", "error_trend.png", "report.html"]:
        assert (out / name).stat().st_size > 1000


def test_predictions_file_errors(tmp_path, capsys):
    f = tmp_path / "p.jsonl"
    f.write_text('{"prediction": "1"}\n')
    assert main(["evaluate", "--predictions", str(f), "--output-dir", str(tmp_path / "o")]) == 2
    assert "p.jsonl:1" in capsys.readouterr().err


def test_median_baseline(small_dataset_dir, tmp_path):
    out = tmp_path / "base"
    assert main(["evaluate", "--baseline", "median", "--dataset", str(small_dataset_dir), "--limit", "0",
                 "--output-dir", str(out)]) == 0
    train = [json.loads(l)["price"] for l in (small_dataset_dir / "train.jsonl").read_text().splitlines()]
    test = [json.loads(l)["price"] for l in (small_dataset_dir / "test.jsonl").read_text().splitlines()]
    med = statistics.median(train)
    m = json.loads((out / "metrics.json").read_text())
    assert m["mae"] == pytest.approx(sum(abs(med - t) for t in test) / len(test))


def test_test_items_whose_prompt_is_also_in_train_are_counted_and_said(small_dataset_dir, tmp_path, capsys):
    data = tmp_path / "leaky"
    shutil.copytree(small_dataset_dir, data)
    train = (data / "train.jsonl").read_text().splitlines()
    test = (data / "test.jsonl").read_text().splitlines()
    (data / "test.jsonl").write_text("\n".join(test[:14] + train[-2:]) + "\n")  # two train rows copied into test
    assert main(["evaluate", "--baseline", "median", "--dataset", str(data), "--limit", "0",
                 "--output-dir", str(tmp_path / "e")]) == 0
    assert "note: 2 of the 16 test items have a prompt found word for word among the 48 train rows the model learned" \
        in capsys.readouterr().err
    assert json.loads((tmp_path / "e" / "settings.json").read_text())["prompts_in_train"] == 2
    # a model that learned from the first 40 rows only did not see the last two, and nothing is said
    assert main(["evaluate", "--baseline", "median", "--dataset", str(data), "--limit", "0", "--train-size", "40",
                 "--output-dir", str(tmp_path / "e40")]) == 0
    assert "note:" not in capsys.readouterr().err
    assert json.loads((tmp_path / "e40" / "settings.json").read_text())["prompts_in_train"] == 0
    assert main(["evaluate", "--baseline", "median", "--dataset", str(small_dataset_dir), "--limit", "0",
                 "--output-dir", str(tmp_path / "clean")]) == 0
    assert "note:" not in capsys.readouterr().err
    assert json.loads((tmp_path / "clean" / "settings.json").read_text())["prompts_in_train"] == 0


def test_median_baseline_on_a_random_train_sample(small_dataset_dir, tmp_path, capsys):
    from pricetune.data import load_splits

    out = tmp_path / "base"
    assert main(["evaluate", "--baseline", "median", "--dataset", str(small_dataset_dir), "--limit", "0",
                 "--train-size", "9", "--train-sample", "random", "--seed", "5", "--output-dir", str(out)]) == 0
    splits, _ = load_splits(str(small_dataset_dir), val_size=0, train_size=9, train_sample="random", seed=5)
    med = statistics.median(r["price"] for r in splits["train"])  # the same nine rows `train --train-sample` draws
    assert med != statistics.median(r["price"] for r in load_splits(str(small_dataset_dir), 0, 9)[0]["train"])
    assert json.loads((out / "settings.json").read_text())["baseline"] == f"median of 9 train prices = {med:.2f}"
    with pytest.raises(SystemExit):
        main(["evaluate", "--baseline", "median", "--dataset", str(small_dataset_dir), "--train-size", "0"])
    assert "argument --train-size: must be >= 1 (got 0)" in capsys.readouterr().err
    f = write_jsonl(tmp_path / "p.jsonl", PREDICTIONS)
    assert main(["evaluate", "--predictions", str(f), "--train-sample", "random"]) == 2
    assert "choose a --baseline's train rows" in capsys.readouterr().err


def test_compare(tmp_path):
    dirs = []
    for name, preds in [("a", PREDICTIONS), ("b", PREDICTIONS[:2])]:
        f = write_jsonl(tmp_path / f"{name}.jsonl", preds)
        dirs.append(tmp_path / f"eval-{name}")
        assert main(["evaluate", "--predictions", str(f), "--output-dir", str(dirs[-1])]) == 0
    assert main(["evaluate", "--compare", *map(str, dirs), "--output-dir", str(tmp_path / "cmp")]) == 0
    assert (tmp_path / "cmp" / "compare.png").is_file()
    assert not (tmp_path / "cmp" / "paired.json").exists()  # b scored two items of a's four: no pairs
    # the same items: each against the first, item by item
    other = [{**p, "prediction": "100"} for p in PREDICTIONS]  # errors 0, 50, 100, 90 against 10, 50, 100, 2
    f = write_jsonl(tmp_path / "c.jsonl", other)
    assert main(["evaluate", "--predictions", str(f), "--output-dir", str(tmp_path / "eval-c")]) == 0
    assert main(["evaluate", "--compare", str(dirs[0]), str(tmp_path / "eval-c"),
                 "--output-dir", str(tmp_path / "cmp2")]) == 0
    paired = json.loads((tmp_path / "cmp2" / "paired.json").read_text())
    d = paired["against_reference"][f"{tmp_path.name}/eval-c"]
    assert paired["n"] == 4 and d["mae_diff"] == pytest.approx((-10 + 0 + 0 + 88) / 4)
    assert (d["closer"], d["further"]) == (0.25, 0.25)


def test_batched_and_one_by_one_greedy_agree(tiny_model_dir, demo_splits):
    from pricetune.inference import generate_prices
    from pricetune.modeling import load_base_model, load_tokenizer

    tok = load_tokenizer(str(tiny_model_dir), padding_side="left")
    model = load_base_model(str(tiny_model_dir), "none", "fp32").eval()
    model.config.use_cache = True
    prompts = [r["prompt"] for r in demo_splits["test"][:6]]
    prompts[2] = prompts[2].replace("Details:", "Details: a much longer line of item text here,")
    batched = generate_prices(model, tok, prompts, max_length=128, batch_size=6)
    single = [generate_prices(model, tok, [p], max_length=128, batch_size=1)[0] for p in prompts]
    assert batched == single


def test_price_distribution_matches_direct_scoring(tiny_model_dir, demo_splits):
    """Each (price, log-prob) from the shared-cache walk equals a plain forward pass over prompt+digits."""
    from pricetune.data import encode_prompt, make_prompt
    from pricetune.inference import digit_vocab, left_padded, price_distributions
    from pricetune.modeling import load_base_model, load_tokenizer

    tok = load_tokenizer(str(tiny_model_dir), padding_side="left")
    model = load_base_model(str(tiny_model_dir), "none", "fp32").eval()
    with torch.no_grad():  # sharp attention, so that a wrong rotary position shows in the numbers
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight *= 30
    prompts = [r["prompt"] for r in demo_splits["test"][:3]]
    prompts[1] = prompts[1].replace("Details:", "Details: a much longer line of item text here,")
    encoded = [encode_prompt(tok, make_prompt(p), 128) for p in prompts]
    vocab = digit_vocab(tok, model.get_output_embeddings().weight.shape[0])
    ids, mask = left_padded(tok, encoded, "cpu")
    dists = price_distributions(model, ids, mask, vocab, width=5, max_digits=3, min_logprob=-1e9)
    digit_of = {t: i for i, t in zip(vocab.ids.tolist(), vocab.texts)}
    with torch.no_grad():
        for enc, dist in zip(encoded, dists):
            assert len(dist) == 5 + 5 + 5  # width prefixes end at each of the 3 depths
            assert len({v for v, _ in dist}) == len(dist)
            for value, logp in dist[:4] + dist[-3:]:
                seq = enc + [digit_of[c] for c in str(value)]
                logits = model(torch.tensor([seq])).logits[0].log_softmax(-1)
                direct = sum(logits[len(enc) - 1 + k, seq[len(enc) + k]] for k in range(len(str(value))))
                if len(str(value)) < 3:  # a 3-digit path ends there (max_digits)
                    direct += torch.logsumexp(logits[-1].masked_fill(vocab.is_digit, float("-inf")), -1)
                assert logp == pytest.approx(float(direct), rel=2e-5)
            # the walk keeps the most likely prefixes: no kept 1-digit price beats a dropped one
            first = model(torch.tensor([enc])).logits[0, -1].log_softmax(-1)
            kept = sorted(v for v, _ in dist if v < 10)
            best = sorted(range(10), key=lambda d: -float(first[digit_of[str(d)]]))[:5]
            assert kept == sorted(best)


def test_sampled_prices_follow_the_model_distribution(tiny_model_dir, demo_splits):
    """Draws match the exact distribution (skewed on purpose) and do not depend on the batch."""
    from collections import Counter

    from pricetune.data import encode_prompt, make_prompt
    from pricetune.inference import (
        digit_vocab,
        left_padded,
        price_distributions,
        sample_prices,
    )
    from pricetune.modeling import load_base_model, load_tokenizer

    tok = load_tokenizer(str(tiny_model_dir), padding_side="left")
    model = load_base_model(str(tiny_model_dir), "none", "fp32").eval()
    vocab = digit_vocab(tok, model.get_output_embeddings().weight.shape[0])
    with torch.no_grad():  # a random model is nearly uniform over digits; make it opinionated
        model.get_output_embeddings().weight[vocab.ids] *= torch.linspace(5, 60, len(vocab.ids))[:, None]
    encoded = [encode_prompt(tok, make_prompt(r["prompt"]), 128) for r in demo_splits["test"][:2]]
    ids, mask = left_padded(tok, encoded, "cpu")
    exact = price_distributions(model, ids, mask, vocab, width=1000, max_digits=2, min_logprob=-1e9)[1]
    total = sum(math.exp(lp) for _, lp in exact)  # the mass on a first digit: draws always start with one
    exact = [(v, math.exp(lp) / total) for v, lp in exact]
    assert max(p for _, p in exact) > 0.2  # opinionated indeed
    draws = sample_prices(model, ids, mask, vocab, samples=4000, max_digits=2)
    assert all(len(d) == 4000 for d in draws)
    freq = Counter(draws[1])
    tv = 0.5 * sum(abs(freq[v] / 4000 - p) for v, p in exact)
    assert tv < 0.05, tv
    # an item draws the same prices alone as in a batch (one seeded generator per prompt)
    alone = sample_prices(model, ids[1:, -len(encoded[1]):], mask[1:, -len(encoded[1]):], vocab,
                          samples=50, max_digits=2)[0]
    assert alone == sample_prices(model, ids, mask, vocab, samples=50, max_digits=2)[1]
    # items draw independently: each is seeded from its own tokens, not all from one seed
    from pricetune.inference import item_seed

    assert item_seed(encoded[0]) != item_seed(encoded[1])
    same = sample_prices(model, ids, mask, vocab, samples=50, max_digits=2, seeds=[7, 7])
    other = sample_prices(model, ids, mask, vocab, samples=50, max_digits=2)
    assert same[0] != other[0] or same[1] != other[1]


def test_price_length_is_bounded_in_digits_not_tokens(tiny_model_dir, demo_splits):
    """With tokens that spell 3 digits each (as Llama 3's do), a price still has at most 7 digits."""
    from pricetune.data import MAX_PRICE_DIGITS, encode_prompt, make_prompt
    from pricetune.inference import (
        DigitVocab,
        digit_vocab,
        left_padded,
        price_distributions,
        sample_prices,
    )
    from pricetune.modeling import load_base_model, load_tokenizer

    tok = load_tokenizer(str(tiny_model_dir), padding_side="left")
    model = load_base_model(str(tiny_model_dir), "none", "fp32").eval()
    real = digit_vocab(tok, model.get_output_embeddings().weight.shape[0])
    # the same token ids, read as 3-digit tokens ("111", "222", ...)
    wide = DigitVocab(real.ids, tuple(t * 3 for t in real.texts), real.is_digit,
                      torch.tensor([t[0] == "0" for t in real.texts]))
    with torch.no_grad():  # digits far more likely than anything else: paths want to grow long
        model.get_output_embeddings().weight[real.ids] *= 40
    encoded = [encode_prompt(tok, make_prompt(r["prompt"]), 128) for r in demo_splits["test"][:2]]
    ids, mask = left_padded(tok, encoded, "cpu")
    draws = sample_prices(model, ids, mask, wide, samples=200)
    assert all(len(str(p)) <= MAX_PRICE_DIGITS for d in draws for p in d)
    assert max(len(str(p)) for d in draws for p in d) == 6  # two 3-digit tokens; a third would make 9
    dists = price_distributions(model, ids, mask, wide, width=4, min_logprob=-1e9)
    assert max(len(str(v)) for d in dists for v, _ in d) == 6


def test_weighted_price():
    from pricetune.inference import weighted_price

    lp = [float(torch.log(torch.tensor(p))) for p in (0.5, 0.3, 0.2)]
    assert weighted_price([10.0, 20.0, 40.0], lp, "expected") == pytest.approx(5 + 6 + 8)
    assert weighted_price([10.0, 20.0, 40.0], lp, "median") == 10.0
    assert weighted_price([40.0, 20.0, None], lp, "median") == 40.0
    assert weighted_price([None], lp[:1], "expected") is None


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_report_renders_in_a_real_browser(tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium on this machine (.ci/run installs Debian's chromium)")
    f = write_jsonl(tmp_path / "preds.jsonl", PREDICTIONS)
    out = tmp_path / "eval"
    assert main(["evaluate", "--predictions", str(f), "--output-dir", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "http://" not in page and "https://" not in page  # self-contained
    # Ask the browser what it decoded: each image's natural width, and the table's rows
    probe = out / "probe.html"
    probe.write_text(page.replace("</body>", """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images].map(i => i.complete ? i.naturalWidth : -1);
  document.body.setAttribute('data-probe', JSON.stringify({imgs,
    metrics: document.querySelectorAll('#metrics tr').length,
    worst: document.querySelectorAll('#worst tr').length}));
});
</script></body>"""))
    profile = tmp_path / "profile"
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
           "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    data = json.loads(_attr(dom, "data-probe"))
    assert len(data["imgs"]) == 2 and all(w > 300 for w in data["imgs"]), data
    assert data["metrics"] == 13 and data["worst"] == 1 + 4
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    f"--user-data-dir={profile}", f"--screenshot={out / 'report.png'}", "--window-size=1100,1800",
                    (out / "report.html").as_uri()], capture_output=True, timeout=120)
    assert (out / "report.png").stat().st_size > 10_000


def _attr(dom: str, name: str) -> str:
    import html
    import re

    m = re.search(name + r"=\"([^\"]*)\"", dom)
    assert m, f"{name} not found in the DOM"
    return html.unescape(m.group(1))


def test_compare_names_tell_folders_of_the_same_name_apart(tmp_path):
    from pricetune.evaluation import display_names

    dirs = [tmp_path / "runs" / "a" / "test", tmp_path / "runs" / "b" / "test", tmp_path / "tfidf",
            tmp_path / "runs" / "a" / "eval-x"]
    assert display_names(dirs) == ["a/test", "b/test", f"{tmp_path.name}/tfidf", "a/eval-x"]


def test_comparison_table_folds_long_names_instead_of_cutting_them(capsys, monkeypatch):
    from rich.console import Console

    from pricetune.evaluation.report import print_table

    names = ["demo/eval-model", "demo/eval-constant-median", "demo/eval-tfidf", "demo/eval-pipeline"]
    metrics = [dict(n=200, mae=715.74), dict(n=200, mae=3043.2), dict(n=200, mae=721.84), dict(n=200, mae=607.66)]
    monkeypatch.setenv("COLUMNS", "80")  # what a log file gets: where the names used to be cut
    assert Console().width == 80
    print_table("comparison", names, metrics)
    out = capsys.readouterr().out
    assert "…" not in out
    assert "$607.66" in out and "$3,043.20" in out
    headers = "".join(line.split("┃")[4] for line in out.splitlines() if line.startswith("┃"))
    assert headers.replace(" ", "") == "demo/eval-tfidf"


def test_an_evaluation_folder_names_a_decoding_only_where_one_was_used(tmp_path):
    """A regress run's evaluations were named eval-val-greedy-...: it decodes nothing (--decode is refused for it)."""
    from types import SimpleNamespace

    from pricetune.evaluation.cli import _default_out

    ns = SimpleNamespace(output_dir=None, split="val", target=str(tmp_path))
    assert re.fullmatch(r"eval-val-\d{8}-\d{6}", _default_out(ns, "a run", None).name)
    assert re.fullmatch(r"eval-val-median-\d{8}-\d{6}", _default_out(ns, "a run", "median").name)
    ns.target = None  # not a run directory: in runs/, named by what was scored
    assert _default_out(ns, "TF-IDF ridge", None).parent == Path("runs")
