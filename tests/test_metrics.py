import math

import pytest

from pricetune.metrics import colour, compute_metrics, paired_difference, parse_price, running_mean_ci


@pytest.mark.parametrize("text,expected", [
    ("$1,299.99", 1299.99), ("64.00", 64.0), ("about 20 dollars", 20.0), ("12.99\n\nWhat", 12.99),
    (" 7", 7.0), ("Price is $45.5 or so", 45.5), ("-3.00", -3.0), (".99", 0.99), (19.5, 19.5),
    ("no idea", None), ("", None), (None, None), ("$", None), (float("nan"), None),
])
def test_parse_price(text, expected):
    assert parse_price(text) == expected


@pytest.mark.parametrize("truth,guess,expected", [
    (100, 139.99, "green"),   # under $40
    (100, 140, "orange"),     # exactly $40 is not < 40, and 40% is not < 20%
    (1000, 1199, "green"),    # $199 off, but 19.9%
    (1000, 1200, "orange"),   # 20% is not < 20%; < 40%
    (100, 179.99, "orange"),
    (100, 180, "red"),        # $80 and 80%
    (1000, 1399, "orange"),
    (1000, 1400, "red"),
    (0, 0, "green"),
    (0, 50, "orange"),
])
def test_colour_boundaries(truth, guess, expected):
    assert colour(truth, guess) == expected


def test_metrics_against_hand_computation():
    truths = [100.0, 50.0, 200.0, 10.0]
    guesses = [110.0, None, 100.0, 12.0]  # None: a failed parse, scored as 0
    m = compute_metrics(truths, guesses)
    # errors: 10, 50, 100, 2
    assert m["n"] == 4 and m["failed"] == 1
    assert m["mae"] == pytest.approx(40.5)
    assert m["median_ae"] == pytest.approx(30.0)
    assert m["mse"] == pytest.approx((100 + 2500 + 10000 + 4) / 4)
    assert m["rmse"] == pytest.approx(math.sqrt(3151.0))
    rmsle = math.sqrt(((math.log(111) - math.log(101)) ** 2 + (0 - math.log(51)) ** 2
                       + (math.log(101) - math.log(201)) ** 2 + (math.log(13) - math.log(11)) ** 2) / 4)
    assert m["rmsle"] == pytest.approx(rmsle)
    mean_t = 90.0
    sst = (10) ** 2 + (40) ** 2 + (110) ** 2 + (80) ** 2
    assert m["r2"] == pytest.approx(1 - 12604 / sst)
    assert m["mape"] == pytest.approx(100 * (0.1 + 1.0 + 0.5 + 0.2) / 4)
    # colours: 10 off 100 green; the failed parse (truth 50) red, never "close"; 100 off 200 (50%) red; 2 off 10 green
    assert (m["hit_green"], m["hit_orange"], m["hit_red"]) == (0.5, 0.0, 0.5)
    errors = [10, 50, 100, 2]
    mean = 40.5
    sd = math.sqrt(sum((e - mean) ** 2 for e in errors) / 3)
    assert m["mae_ci95"] == pytest.approx(1.96 * sd / 2)
    assert mean_t == sum(truths) / 4


def test_negative_guess_clipped_for_rmsle_only():
    m = compute_metrics([10.0], [-5.0])
    assert m["mae"] == 15.0
    assert m["rmsle"] == pytest.approx(math.log(11))


def test_running_mean_ci():
    means, halves = running_mean_ci([2.0, 4.0, 6.0])
    assert means == [2.0, 3.0, 4.0]
    assert halves[0] == 0.0
    assert halves[2] == pytest.approx(1.96 * 2.0 / math.sqrt(3))


def test_metrics_reject_mismatched_lengths():
    with pytest.raises(ValueError):
        compute_metrics([1.0, 2.0], [1.0])


def test_paired_difference_against_hand_computation():
    truths = [100.0, 50.0, 200.0, 10.0]
    model = [110.0, None, 150.0, 10.0]       # errors 10, 50 (failed: $0), 50, 0
    reference = [130.0, 40.0, 150.0, 20.0]   # errors 30, 10, 50, 10
    d = paired_difference(truths, model, reference)
    diffs = [-20.0, 40.0, 0.0, -10.0]
    sd = math.sqrt(sum((x - 2.5) ** 2 for x in diffs) / 3)
    assert d["mae_diff"] == pytest.approx(2.5) and d["n"] == 4
    assert d["diff_ci95"] == pytest.approx(1.96 * sd / 2)
    assert (d["closer"], d["further"]) == (0.5, 0.25)
    # the same errors on every item: no difference, no doubt about it
    same = paired_difference(truths, reference, reference)
    assert same["mae_diff"] == 0 and same["diff_ci95"] == 0 and same["closer"] == same["further"] == 0
    with pytest.raises(ValueError):
        paired_difference(truths, model[:3], reference)
