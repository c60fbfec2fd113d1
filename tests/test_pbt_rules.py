"""Population-based training's decisions (automl/search/pbt.py) on synthetic populations with known answers."""
import math
import random

import pytest

from automl.core.config import ParamSpec
from automl.search.pbt import PBTRules, exploit, explore, explore_value, noise_margin, pair_noise, trimmed_std

LR = ParamSpec("learning_rate", "loguniform", 1e-5, 1e-2, log=True)
EPOCHS = ParamSpec("learning_epochs", "int", 1, 10)
GAMMA = ParamSpec("discount_factor", "uniform", 0.9, 0.999)
NET = ParamSpec("net", "categorical", choices=((64,), (128, 64)))
TERMS = {"goal": {"default": 10.0, "low": 0.0, "high": 50.0}, "alive": {"default": 0.0, "low": 0.0, "high": 0.0}}


def test_the_bottom_quantile_copies_a_clearly_best_member():
    scores = [0.10, 0.12, 0.11, 0.90, 0.13, 0.09, 0.12, 0.11]   # member 3 is clearly best
    rules = PBTRules(quantile=0.25)
    for seed in range(20):
        pairs = exploit(scores, rules, random.Random(seed))
        # the two worst (5: 0.09, 0: 0.10) copy one of the two best (3, 4)
        assert sorted(dst for dst, _ in pairs) == [0, 5]
        assert all(src in (3, 4) for _, src in pairs)
    assert any(src == 3 for s in range(20) for _, src in exploit(scores, rules, random.Random(s)))


def test_no_copy_within_the_noise_margin():
    noisy = [0.50, 0.52, 0.48, 0.55, 0.45, 0.51, 0.49, 0.53]   # all within seed noise of each other
    assert trimmed_std(noisy) == pytest.approx(0.018708, abs=1e-6)   # 0.48..0.53 without 0.45 and 0.55
    wide = PBTRules(k_std=6.0)
    margin = noise_margin(noisy, wide)
    assert margin == pytest.approx(6.0 * 0.018708, abs=1e-5) and margin > max(noisy) - min(noisy)
    assert all(exploit(noisy, wide, random.Random(s)) == [] for s in range(20))
    # the default k_std = 0.5 lets the worst (0.45) copy a top member 0.10 above it: beyond 0.5 x 0.019
    assert any(exploit(noisy, PBTRules(), random.Random(s)) for s in range(20))
    assert exploit([0.5, 0.5, 0.5, 0.5], PBTRules(margin=0.01), random.Random(0)) == []   # equal: never
    # an absolute margin alone also holds copies back
    assert exploit([0.1, 0.2, 0.3, 0.4], PBTRules(margin=0.35, k_std=0.0), random.Random(0)) == []
    assert exploit([0.1, 0.2, 0.3, 0.5], PBTRules(margin=0.35, k_std=0.0), random.Random(0)) == [(0, 3)]


def test_trimmed_std_drops_the_extremes():
    assert trimmed_std([0.0, 0.5, 0.5, 1.0]) == 0.0
    assert trimmed_std([1.0, 2.0, 3.0]) == pytest.approx(1.0)
    assert trimmed_std([7.0]) == 0.0


def test_a_member_without_a_score_copies_and_is_never_copied():
    pairs = exploit([None, 0.2, 0.3, float("nan"), 0.25, 0.22, 0.21, 0.6], PBTRules(), random.Random(1))
    assert sorted(dst for dst, _ in pairs) == [0, 3] and all(src in (2, 7) for _, src in pairs)


def test_every_explored_value_stays_inside_its_bounds_and_perturbs_by_the_factors():
    rng = random.Random(0)
    rules = PBTRules(resample_p=0.25)
    for _ in range(2000):
        for spec, value in ((LR, 1e-2), (LR, 1e-5), (EPOCHS, 10), (EPOCHS, 1), (GAMMA, 0.999), (GAMMA, 0.9)):
            new = explore_value(spec, value, rules, rng)
            assert spec.low <= new <= spec.high
            if spec is EPOCHS:
                assert isinstance(new, int)
        assert explore_value(NET, (64,), rules, rng) in NET.choices
    # without resampling: exactly x0.8 or x1.2 (clipped); the discount factor through 1 - gamma
    pure = PBTRules(resample_p=0.0)
    assert sorted({round(explore_value(LR, 1e-3, pure, random.Random(s)), 12) for s in range(40)}) == [8e-4, 1.2e-3]
    assert {round(explore_value(GAMMA, 0.99, pure, random.Random(s)), 6) for s in range(40)} == {0.992, 0.988}
    assert explore_value(NET, (64,), pure, random.Random(0)) == (64,)


def test_explore_changes_only_searched_values_and_weights_within_their_bounds():
    params = {"learning_rate": 1e-3, "learning_epochs": 4, "mini_batches": 8}
    weights = {"goal": 10.0, "alive": 0.0}
    for seed in range(200):
        p, w = explore(params, [LR, EPOCHS], weights, TERMS, PBTRules(), random.Random(seed))
        assert p["mini_batches"] == 8 and w["alive"] == 0.0          # not searched: kept
        assert 0.0 <= w["goal"] <= 50.0 and LR.low <= p["learning_rate"] <= LR.high
    p, w = explore(params, [LR, EPOCHS], weights, TERMS, PBTRules(resample_p=0.0), random.Random(3))
    assert round(p["learning_rate"], 12) in (8e-4, 1.2e-3) and w["goal"] in (8.0, 12.0)


def test_bad_rules_are_refused():
    for kw in ({"quantile": 0.0}, {"quantile": 0.7}, {"resample_p": 1.5}, {"perturb": ()}, {"perturb": (0.0,)}):
        with pytest.raises(ValueError):
            PBTRules(**kw)


def test_a_gap_within_the_pairs_own_evaluation_noise_is_no_copy():
    # success rates over 32 episodes: se = sqrt(p (1 - p) / 32); the pair's difference has se ~0.124
    scores = [0.50, 0.40, 0.45, 0.47]
    se = [math.sqrt(p * (1 - p) / 32) for p in scores]
    assert pair_noise(se, 1, 0, PBTRules()) == pytest.approx(math.sqrt(se[0] ** 2 + se[1] ** 2))
    assert noise_margin(scores, PBTRules()) < 0.1 < pair_noise(se, 1, 0, PBTRules())
    assert all(exploit(scores, PBTRules(), random.Random(s), se) == [] for s in range(20))     # 0.10 < 0.114
    assert exploit(scores, PBTRules(), random.Random(0)) == [(1, 0)]                            # noise unknown
    far = [0.90, 0.40, 0.45, 0.47]
    se_far = [math.sqrt(p * (1 - p) / 32) for p in far]
    assert exploit(far, PBTRules(), random.Random(0), se_far) == [(1, 0)]                       # 0.5 > 0.10
    assert exploit(scores, PBTRules(z_se=0.5), random.Random(0), se) == [(1, 0)]                # 0.10 > 0.062
