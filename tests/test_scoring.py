"""Known-answer tests for automl.core.scoring (mean, IQM, stratified bootstrap CI, failed seeds)."""
import math
import subprocess
import sys

import numpy as np
import pytest
import yaml
from scipy import stats

from automl.core import scoring


def test_iqm_of_one_to_eight_is_mean_of_middle_half():
    # 8 values: trim int(0.25*8)=2 from each end -> [3, 4, 5, 6] -> 4.5
    assert scoring.iqm([1, 2, 3, 4, 5, 6, 7, 8]) == 4.5
    # order does not matter, outliers are ignored
    assert scoring.iqm([8, 1, 7, 2, 6, 3, 5, 4]) == 4.5
    assert scoring.iqm([3, 4, 5, 6, -1e9, 1e9, -1e9, 1e9]) == 4.5


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 9, 10, 13])
def test_iqm_matches_scipy_trim_mean(n):
    x = np.random.default_rng(n).normal(size=n)
    assert scoring.iqm(x) == pytest.approx(stats.trim_mean(x, 0.25))


def test_iqm_of_2d_pools_all_runs_like_rliable():
    x = np.random.default_rng(1).normal(size=(5, 3))
    assert scoring.iqm(x) == pytest.approx(stats.trim_mean(x, 0.25, axis=None))


def test_score_fields_are_plain_floats_and_yaml_safe():
    s = scoring.score([0.2, 0.4, 0.6])
    assert set(s) == {"mean", "iqm", "ci95", "std", "n_seeds"}
    assert s["std"] == pytest.approx(0.2)  # sample std of 0.2, 0.4, 0.6
    assert s["mean"] == pytest.approx(0.4) and s["n_seeds"] == 3
    assert type(s["mean"]) is float and type(s["iqm"]) is float
    assert all(type(v) is float for v in s["ci95"]) and type(s["n_seeds"]) is int
    assert yaml.safe_load(yaml.safe_dump(s)) == s


def test_ci_contains_the_mean():
    x = np.random.default_rng(3).normal(10.0, 2.0, size=10)
    lo, hi = scoring.bootstrap_ci(x)
    assert lo < x.mean() < hi


def test_ci_shrinks_with_more_seeds():
    rng = np.random.default_rng(4)
    widths = []
    for n in (5, 50, 500):
        lo, hi = scoring.bootstrap_ci(rng.normal(0.0, 1.0, size=n))
        widths.append(hi - lo)
    assert widths[0] > widths[1] > widths[2]
    # a 95% CI of the mean is ~ 2*1.96*sigma/sqrt(n): check the scale, loosely
    assert widths[2] == pytest.approx(2 * 1.96 / math.sqrt(500), rel=0.25)


def test_ci_deterministic_under_seed():
    x = [0.1, 0.5, 0.3, 0.9, 0.7]
    assert scoring.bootstrap_ci(x, seed=7) == scoring.bootstrap_ci(x, seed=7)
    assert scoring.bootstrap_ci(x, seed=7) != scoring.bootstrap_ci(x, seed=8)


def test_single_seed_gives_degenerate_ci():
    s = scoring.score([0.42])
    assert s == {"mean": 0.42, "iqm": 0.42, "ci95": [0.42, 0.42], "std": 0.0, "n_seeds": 1}


def test_constant_values_give_degenerate_ci():
    assert scoring.bootstrap_ci([2.0, 2.0, 2.0]) == (2.0, 2.0)


def test_iqm_statistic_ci_and_confidence():
    x = np.random.default_rng(5).normal(size=40)
    lo95, hi95 = scoring.bootstrap_ci(x, statistic="iqm")
    lo50, hi50 = scoring.bootstrap_ci(x, statistic="iqm", confidence=0.5)
    assert lo95 <= lo50 < scoring.iqm(x) < hi50 <= hi95


def test_stratified_2d_resamples_within_each_task():
    # task 0 always scores 0, task 1 always 1: resampling runs within a task keeps
    # exactly half the pooled values at 1, so the mean never moves from 0.5.
    # Unstratified resampling of the pooled values would spread the CI.
    x = np.array([[0.0, 1.0]] * 6)
    assert scoring.bootstrap_ci(x) == (0.5, 0.5)


def test_failed_seeds_count_as_worst():
    good = [0.8, 0.9, 1.0]
    with_fail = [0.8, 0.9, 1.0, float("nan")]
    assert scoring.aggregate(with_fail, worst=0.0) == pytest.approx(2.7 / 4)
    assert scoring.aggregate(with_fail, worst=0.0) < scoring.aggregate(good)
    for bad in (None, float("inf"), float("-inf")):
        s = scoring.score([0.8, 0.9, 1.0, bad], worst=0.0)
        assert s["mean"] == pytest.approx(2.7 / 4) and s["n_seeds"] == 4
        assert s["ci95"][0] < scoring.score(good)["ci95"][0]


def test_failed_seed_without_worst_takes_lowest_observed():
    assert scoring.aggregate([0.8, None, 1.0]) == pytest.approx((0.8 + 0.8 + 1.0) / 3)


def test_all_failed_needs_explicit_worst():
    with pytest.raises(ValueError, match="worst="):
        scoring.score([None, float("nan")])
    assert scoring.score([None, float("nan")], worst=-5.0)["ci95"] == [-5.0, -5.0]


def test_aggregate_methods():
    x = [1, 2, 3, 4, 5, 6, 7, 100]
    assert scoring.aggregate(x) == pytest.approx(16.0)
    assert scoring.aggregate(x, method="iqm") == 4.5
    assert scoring.aggregate(x, method="lcb") == scoring.bootstrap_ci(x)[0]
    assert scoring.aggregate(x, method="lcb") < scoring.aggregate(x)
    with pytest.raises(ValueError, match="allowed: mean, iqm, lcb"):
        scoring.aggregate(x, method="median")


@pytest.mark.parametrize("bad", [[], [[[1.0]]]])
def test_bad_shapes_rejected(bad):
    with pytest.raises(ValueError):
        scoring.score(bad)


def test_scoring_imports_neither_torch_nor_optuna():
    code = "import sys, automl.core.scoring; print(sorted(m for m in ('torch', 'optuna') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
