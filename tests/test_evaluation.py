import json
import shutil
import statistics
import subprocess

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
    assert (m["hit_green"], m["hit_orange"], m["hit_red"]) == (0.5, 0.25, 0.25)
    assert set(m) >= {"n", "failed", "mae", "median_ae", "mse", "rmse", "rmsle", "r2", "mape", "hit_green",
                      "hit_orange", "hit_red", "mae_ci95"}
    rows = [json.loads(l) for l in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["title"] for r in rows] == ["Lamp", "Chair", "Desk", "Pen"]
    assert rows[1]["price"] is None and rows[1]["colour"] == "orange"
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


def test_compare(tmp_path):
    dirs = []
    for name, preds in [("a", PREDICTIONS), ("b", PREDICTIONS[:2])]:
        f = write_jsonl(tmp_path / f"{name}.jsonl", preds)
        dirs.append(tmp_path / f"eval-{name}")
        assert main(["evaluate", "--predictions", str(f), "--output-dir", str(dirs[-1])]) == 0
    assert main(["evaluate", "--compare", *map(str, dirs), "--output-dir", str(tmp_path / "cmp")]) == 0
    assert (tmp_path / "cmp" / "compare.png").is_file()


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
