"""The fidelity ladder's known answers: ASHA promotion order and counts, the ladder a budget yields,
the cost model, calibration's learning point, and resuming mid-ladder."""
from __future__ import annotations

import pytest

from automl.run.ladder import (CostModel, learned_at, network_cost, plan_ladder, rungs_for)
from automl.search.ladder import Ladder, Promotions

PRIOR = {"policy_hidden_layer_sizes": [128, 64], "learning_epochs": 5, "mini_batches": 8, "rollouts": 32,
         "num_envs": 512}


def test_asha_promotion_order_and_counts():
    """eta 3: a config is promotable once it is in the best floor(n/3) of its rung; highest rung first."""
    p = Promotions(Ladder(rungs=(10, 30, 90), eta=3))
    p.record("a", 0, 0.5)
    p.record("b", 0, 0.9)
    assert p.next_promotion() is None                    # n=2: floor(2/3) = 0 promotable
    p.record("c", 0, 0.1)
    assert p.next_promotion() == ("b", 1)                # n=3: the best one
    p.mark_promoted("b", 1)
    assert p.next_promotion() is None
    for cid, v in (("d", 0.7), ("e", 0.2), ("f", 0.8)):
        p.record(cid, 0, v)
    assert p.candidates(0) == ["f"]                      # n=6: top 2 = b (promoted), f
    p.record("b", 1, 0.95)                               # b finished rung 1 (n=1 there: nothing yet)
    assert p.next_promotion() == ("f", 1)
    p.mark_promoted("f", 1)
    p.record("f", 1, 0.6)
    p.record("g", 0, 0.99)
    p.record("h", 0, 0.0)
    p.record("i", 0, 0.3)                                # n=9 at rung 0: top 3 = g, b, f
    assert p.candidates(0) == ["g"]
    p.mark_promoted("g", 1)
    p.record("g", 1, 0.97)                               # n=3 at rung 1: top 1 = g
    assert p.next_promotion() == ("g", 2)                # the highest rung comes first
    assert p.ranked(1) == ["g", "b", "f"]
    p.mark_promoted("g", 2)
    p.record("g", 2, 0.98)
    assert p.sampler_outcome("g") == ("complete", 90, 0.98)
    assert p.sampler_outcome("b") == ("pruned", 30, 0.95)
    assert p.sampler_outcome("h") == ("pruned", 10, 0.0)
    assert "g" in p.closed and p.next_promotion() is None


def test_failed_config_never_promoted_and_ties_go_to_the_first():
    p = Promotions(Ladder(rungs=(5, 15), eta=2))
    p.record("x", 0, None)                 # failed: ranks last, closed
    p.record("y", 0, 0.4)
    assert p.next_promotion() == ("y", 1)  # floor(2/2) = 1: the best finite one
    p.record("z", 0, 0.4)
    p.record("w", 0, 0.4)
    assert p.ranked(0) == ["y", "z", "w", "x"]  # ties: the earlier finisher first; failed last
    assert p.candidates(0) == ["y", "z"]
    assert p.sampler_outcome("x") == ("fail", None, None)


def test_minimize_direction_and_veto():
    p = Promotions(Ladder(rungs=(1, 2), eta=2), direction="minimize")
    p.record("a", 0, 3.0)
    p.record("b", 0, 1.0)
    assert p.next_promotion() == ("b", 1)
    assert p.next_promotion(fits=lambda c, r: c != "b") is None    # vetoed: nothing else in the top half


def test_resume_mid_ladder_keeps_every_promotion():
    p = Promotions(Ladder(rungs=(10, 30, 90), eta=3))
    for i, v in enumerate([0.1, 0.5, 0.9, 0.3, 0.8, 0.2]):
        p.record(f"c{i}", 0, v)
    p.mark_promoted("c2", 1)
    before = p.next_promotion()
    q = Promotions.from_dict(p.to_dict())
    assert q == p
    assert q.next_promotion() == before == ("c4", 1)
    assert q.promoted == {0: ["c2"]}


def test_ladder_rejects_bad_rungs():
    with pytest.raises(ValueError, match="increasing"):
        Ladder(rungs=(10, 10))
    with pytest.raises(ValueError, match="eta"):
        Ladder(rungs=(10, 20), eta=1)


def test_rungs_for_is_geometric_in_whole_rollouts():
    assert rungs_for(2_000_000, 100_000, 3, 16384) == (229376, 671744, 1998848)  # 2M/9, 2M/3, 2M rounded
    assert rungs_for(90, 10, 3, 1) == (10, 30, 90)
    assert rungs_for(90, 11, 3, 1) == (30, 90)          # 10 is below the learning point
    assert rungs_for(50, 60, 3, 1) == (50,)


NAV = dict(top_steps=2_000_000, seeds=3, n_jobs=2, s_per_step=1 / 40_000, startup_s=2.0, rollout=16384,
           learn_steps=100_000)


def test_ladder_a_budget_yields_at_2_minutes_20_minutes_and_12_hours():
    two = plan_ladder(total_s=120, **NAV)
    # the re-checks ((1 + baseline) x 3 held-out + 2 x 3 test seed jobs, 3 waves each on 2 workers) may take half:
    # 6 x (2 + top/40000) x 1.1 <= 60 -> top <= 283.6k; shrinking 2M by 0.8 a step lands on 278528 (17 rollouts),
    # below 3 x the learning point (98304): one rung, no promotions
    assert two.rungs == (278528,) and two.heldout_configs == 1 and two.top_configs == two.entering == 4
    assert two.reserve_s + two.tuning_s == pytest.approx(120)
    twenty = plan_ladder(total_s=1200, **NAV)
    assert twenty.rungs == (229376, 671744, 1998848)                  # the space's n_timesteps on top
    assert twenty.top_configs >= 2 and twenty.entering >= 9 * twenty.top_configs
    assert twenty.tuning_s >= 0.5 * 1200
    day = plan_ladder(total_s=12 * 3600, **NAV)
    assert day.rungs == twenty.rungs and day.heldout_configs == 3
    assert day.top_configs > 100 and day.reserve_s < 0.02 * day.tuning_s
    # worker-seconds of an entrant: only the extra steps of each rung (continuation), 1/eta of them go on
    unit = sum(c / 3 ** i for i, c in enumerate(day.rung_s))
    assert day.entering == int(day.tuning_s * 2 // unit)


def test_ladder_top_rung_shrinks_before_the_rechecks_eat_the_budget():
    ten = plan_ladder(total_s=600, **NAV)
    assert ten.rungs[-1] < 2_000_000 and ten.top_configs >= 2
    assert ten.tuning_s >= 0.5 * 600


def test_learned_at_reads_the_first_measurable_rise():
    curve = [[0, 0.02, 0.02], [20_000, 0.03, 0.02], [60_000, 0.05, 0.03], [180_000, 0.2, 0.05]]
    assert learned_at(curve) == 180_000          # 0.05 - 0.02 is within 2 combined errors; 0.18 is not
    assert learned_at([[0, 0.0, 0.0], [10, 0.0, 0.0]]) is None
    assert learned_at([[0, 1.0, 0.0], [10, 1.5, 0.0]]) == 10


def test_cost_model_orders_networks_like_the_measured_speeds():
    cost = CostModel(PRIOR, prior_s_per_step=1.0)
    big = {**PRIOR, "policy_hidden_layer_sizes": [512, 256, 128]}
    mid = {**PRIOR, "policy_hidden_layer_sizes": [256, 128, 64]}
    assert cost.shape_estimate(PRIOR) == pytest.approx(1.0)
    assert 3.0 < cost.shape_estimate(mid) < 4.5          # measured ~3.5x on navigation
    assert 11.0 < cost.shape_estimate(big) < 16.0        # measured 11-16x
    deeper = {**PRIOR, "learning_epochs": 10}
    assert cost.shape_estimate(deeper) > cost.shape_estimate(PRIOR)
    assert network_cost({**PRIOR, "mini_batches": 32}) > network_cost(PRIOR)


def test_cost_model_learns_from_measurements():
    cost = CostModel(PRIOR, prior_s_per_step=1.0)
    mid = {**PRIOR, "policy_hidden_layer_sizes": [256, 128, 64]}
    cost.observe("m", mid, steps=100, train_s=100 * cost.shape_estimate(mid) * 2)   # twice as slow as the shape says
    assert cost.s_per_step(mid, "m") == pytest.approx(2 * cost.shape_estimate(mid))
    assert cost.correction() == pytest.approx(2.0)
    assert cost.s_per_step(PRIOR) == pytest.approx(2.0)   # unmeasured configs get the correction
