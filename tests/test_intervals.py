"""Price ranges: split conformal intervals on log price, calibrated on val (`pricetune calibrate`)."""

import json
import math
import random

import pytest

from tests.conftest import write_jsonl


def _noisy(n: int, seed: int) -> tuple[list[float], list[float]]:
    """Guesses and truths whose log error is Gaussian with a spread that grows with the price."""
    rng = random.Random(seed)
    guesses = [math.exp(rng.uniform(1, 7)) for _ in range(n)]
    truths = [g * math.exp(rng.gauss(0, 0.2 + 0.1 * math.log(g))) for g in guesses]
    return truths, guesses


def test_ranges_hold_their_coverage_on_new_items_overall_and_in_every_band():
    from pricetune import intervals

    calibration = intervals.fit(*_noisy(1500, 1))
    assert len(calibration["errors"]) == 3  # 1,500 items: three bands of guessed price
    report = intervals.coverage_report(*_noisy(20000, 2), calibration, coverage=0.8)
    assert 0.77 <= report["covered"] <= 0.83
    assert all(0.74 <= b["covered"] <= 0.86 for b in report["bands"]), report["bands"]
    # error grows with price: the dear band's ranges are wider, relative to the price, than the cheap one's
    q = [intervals.half_width(e, 0.8) for e in calibration["errors"]]
    assert q[0] < q[1] < q[2]
    # one band for all would promise 80% on average only: too wide at the cheap end, too narrow at the dear
    pooled = intervals.fit(*_noisy(1500, 1), bands=1)
    truths, guesses = _noisy(20000, 2)
    held = [(g, intervals.interval(g, pooled, 0.8)[0] <= t <= intervals.interval(g, pooled, 0.8)[1])
            for t, g in zip(truths, guesses)]
    cheap = [h for g, h in held if g < calibration["edges"][0]]
    dear = [h for g, h in held if g >= calibration["edges"][1]]
    assert sum(cheap) / len(cheap) > 0.86 and sum(dear) / len(dear) < 0.74
    assert intervals.interval(None, calibration) is None
    low, high = intervals.interval(100.0, calibration, 0.9)
    assert 0 <= low < 100.0 < high


def test_too_few_items_promise_nothing_rather_than_too_little():
    from pricetune import intervals

    calibration = intervals.fit([10.0] * 10, [11.0] * 10)
    assert intervals.interval(10.0, calibration, 0.95)[1] == math.inf  # ceil(11 x 0.95) = 11 > 10 errors
    with pytest.raises(ValueError):
        intervals.fit([1.0] * 5, [1.0] * 5)


def test_calibrate_reads_val_only_and_an_uncalibrated_model_still_prices(tmp_path):
    from pricetune.cli import main
    from pricetune.ensemble import Member, fit_ensemble
    from pricetune.errors import PricetuneError
    from pricetune.inference import Pricer

    from .test_regress import _ensemble_data, _synthetic

    data = _ensemble_data(tmp_path)
    fit_ensemble(str(data), [Member("tfidf"), Member("median")], tmp_path / "ens", log=lambda _: None, cv_repeats=0)
    pricer = Pricer.from_ensemble(str(tmp_path / "ens"))
    assert pricer.price("Title: a steel large red cup") > 0  # no calibration: still prices
    with pytest.raises(PricetuneError, match="pricetune calibrate"):
        pricer.price("Title: a steel large red cup", interval=0.8)
    assert main(["calibrate", "--ensemble", str(tmp_path / "ens")]) == 0
    first = (tmp_path / "ens" / "calibration.json").read_text()
    write_jsonl(data / "test.jsonl", _synthetic(40, 77))  # other test rows: the same calibration
    assert main(["calibrate", "--ensemble", str(tmp_path / "ens")]) == 0
    assert (tmp_path / "ens" / "calibration.json").read_text() == first
    r = Pricer.from_ensemble(str(tmp_path / "ens")).price("Title: a steel large red cup", interval=0.8)
    assert r.low <= r.price <= r.high
    assert main(["evaluate", "--ensemble", str(tmp_path / "ens"), "--limit", "0", "--output-dir",
                 str(tmp_path / "eval")]) == 0
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())["interval"]
    assert report["coverage_asked"] == 0.8 and report["items"] == 40 and 0 <= report["covered"] <= 1
    assert "Price ranges" in (tmp_path / "eval" / "report.html").read_text()


def test_predict_asks_for_a_calibration_before_loading_anything(tmp_path, capsys):
    from pricetune.cli import main

    (tmp_path / "run").mkdir()
    assert main(["predict", "--run", str(tmp_path / "run"), "--interval", "0.8", "Title: a pen"]) == 2
    assert f"pricetune calibrate {tmp_path / 'run'}" in capsys.readouterr().err
    assert main(["predict", "--run", str(tmp_path / "run"), "--interval", "80", "Title: a pen"]) == 2
    assert "between 0 and 1" in capsys.readouterr().err
