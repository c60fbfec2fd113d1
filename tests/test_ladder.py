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


def test_a_pinned_top_rung_stays_and_fewer_configs_enter():
    """--trial-steps pins the top: at 10 minutes the budget alone would shrink 2M to ~1.3M; pinned, the top
    stays, the re-checks at 2M take more than half, fewer configs enter. Where the re-checks at the pinned
    length alone fill the budget, nothing enters (make_ladder_plan refuses it)."""
    ten = plan_ladder(total_s=600, **NAV)
    pinned = plan_ladder(total_s=600, pinned=True, **NAV)
    assert ten.rungs[-1] < 1_500_000 and pinned.rungs[-1] == 2_000_000            # the pin itself
    assert all(r % 16384 == 0 for r in pinned.rungs[:-1]) and len(pinned.rungs) >= 2   # pauses: whole units
    # re-checks at 2M: 1 config + baseline on 3 held-out seeds, then 2 x 3 test seeds, 3 waves each of
    # (2 + 1998848 / 40000) x 1.1 = 57.2 s
    assert pinned.heldout_configs == 1 and pinned.reserve_s == pytest.approx(6 * 57.2, abs=0.2)
    assert pinned.tuning_s == pytest.approx(600 - pinned.reserve_s) and pinned.tuning_s < 0.5 * 600
    assert 1 <= pinned.entering < ten.entering and pinned.top_configs >= 1
    assert plan_ladder(total_s=300, pinned=True, **NAV).entering == 0


def test_a_pinned_length_that_cannot_fit_is_refused_in_one_line(tmp_path):
    """At the measured speed (after calibration) a pinned 2M fits 10 minutes with fewer configs; at 4 minutes
    its re-checks alone fill the budget: refused in one line naming the longest top that fits."""
    from automl.core.errors import AutoMLError
    from automl.run.ladder_plan import check_pinned_top
    plan, _ = _nav_plan(10, tmp_path, trial_steps=2_000_000)
    # the top is the pin in whole rollouts of 16,384 (rounded down: 122 of them); the rungs below it, where
    # climbs pause, in whole evaluation intervals, and those intervals as long as the lowest rung allows
    lad = plan.ladder
    assert lad["pinned"] and plan.trial_steps == lad["rungs"][-1] == 1_998_848 and lad["entering"] >= 1
    assert all(r % plan.eval_every == 0 for r in lad["rungs"][:-1])
    assert lad["rungs"][0] // plan.eval_every == 3 and plan.evals_per_job <= 20
    check_pinned_top(plan_cfg(10), plan)   # fits: no refusal
    small, _ = _nav_plan(4, tmp_path, trial_steps=2_000_000)
    longest = small.ladder["longest_fit"]
    assert small.ladder["entering"] == 0 and 0 < longest < 2_000_000 and longest % 16384 == 0
    assert _nav_plan(4, tmp_path, trial_steps=longest)[0].ladder["entering"] >= 1   # the one named fits
    with pytest.raises(AutoMLError) as err:
        check_pinned_top(plan_cfg(4), small)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("--trial-steps: 2,000,000 steps do not fit")
    assert f"allowed: --trial-steps <= ~{longest:,} at --budget-hours 0.0667" in msg


def plan_cfg(minutes: float):
    from automl.run.runconfig import RunConfig
    return RunConfig(env="navigation", budget_hours=minutes / 60, n_jobs=2, seeds=3, trial_steps=2_000_000)


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


def _nav_plan(minutes: float, tmp_path, trial_steps: int | None = None):
    """make_ladder_plan for navigation on 2 workers, 3 seeds, with this machine's measured calibration: the
    prior at 38k steps/s per worker, its curve leaving the start at 327,680 steps."""
    from automl.run.opening import prepare
    from automl.run.ladder_plan import make_ladder_plan
    from automl.run.runconfig import RunConfig
    from automl.run.plan import Calibration

    curve = ((81920, 0.0312, 0.0285), (163840, 0.0938, 0.0391), (245760, 0.0781, 0.0369),
             (327680, 0.3594, 0.0585), (409600, 0.4531, 0.0604), (491520, 0.7812, 0.0514))
    cal = Calibration(train_steps_per_s=38000, eval_s_each=0.2, episodes=32, startup_s=1.0, learn_steps=327680,
                      curve=curve, floor=0.0)
    ctx = prepare(RunConfig(env="navigation", budget_hours=minutes / 60, n_jobs=2, seeds=3,
                            run_dir=str(tmp_path / f"r{minutes}"), quiet=True, trial_steps=trial_steps))

    class Left:
        total_s = minutes * 60

        def remaining_s(self):
            return minutes * 60 - 40   # calibration's share

    return make_ladder_plan(ctx.cfg, ctx.inputs, Left(), cal), ctx.inputs


def test_the_budget_decides_which_configs_are_worth_sampling(tmp_path):
    """navigation's space averages ~8x the prior's cost per step (its networks and epochs): at 10 and 20
    minutes a ladder of such configs cannot select (a rung or two, a handful of configs), so the ladder is
    planned among configs about as cheap as the priors (the cap); at 60 minutes among the cheapest 30%; at 12
    hours every config is admitted."""
    from automl.run.ladder_plan import COST_SLACK, cost_ratios, selects, space_costs

    ten, inputs = _nav_plan(10, tmp_path)
    costs = space_costs(inputs)
    assert len(costs) == 80 and 0.8 < min(costs) < 1.0 and 7.5 < sum(costs) / len(costs) < 8.5
    ratios = cost_ratios(costs, sum(costs) / len(costs))
    assert ratios[0] == pytest.approx(sum(costs) / len(costs)) and ratios[-1] == 1.0
    assert ratios == sorted(ratios, reverse=True) and all(r < ratios[0] for r in ratios[1:])
    lad = ten.ladder
    assert lad["typical_cost"] == 1.0 and lad["cost_cap"] == COST_SLACK and lad["admissible_share"] == 0.15
    assert len(lad["rungs"]) == 2 and lad["rungs"][0] >= 327680 and lad["tuning_s"] >= 0.5 * 560
    twenty, _ = _nav_plan(20, tmp_path)
    assert twenty.ladder["rungs"][-1] > 1_900_000 and twenty.ladder["cost_cap"] < 2   # n_timesteps on top
    assert twenty.ladder["entering"] >= 9
    hour, _ = _nav_plan(60, tmp_path)
    assert 2 < hour.ladder["cost_cap"] < 4 and hour.ladder["admissible_share"] == 0.3 and hour.ladder["entering"] >= 9
    day, _ = _nav_plan(720, tmp_path)
    assert day.ladder["cost_cap"] is None and day.ladder["admissible_share"] == 1.0
    assert day.ladder["typical_cost"] == pytest.approx(sum(costs) / len(costs), abs=1e-3)
    for plan in (twenty, hour, day):   # each is a ladder that selects
        from automl.run.ladder import LadderPlan
        assert selects(LadderPlan(**{k: plan.ladder[k] for k in (
            "rungs", "eta", "entering", "top_configs", "rung_s", "tuning_s", "reserve_s", "heldout_configs",
            "bottom")}))


def test_a_config_no_better_than_the_floor_is_never_promoted():
    """Sparse reward (MountainCar: -200 until the goal is found; the untrained prior scored -200): rank-only
    ASHA would promote the first of the configs tied at -200; with the floor only configs that learned climb."""
    p = Promotions(Ladder(rungs=(10, 30), eta=3), floor=-200.0)
    for c in "abcdef":
        p.record(c, 0, -200.0)
    assert p.candidates(0) == [] and p.next_promotion() is None  # 2 places at the top, nobody learned
    p.record("g", 0, -150.0)
    assert p.next_promotion() == ("g", 1)                         # the first that left the floor
    p.record("h", 0, -199.5)
    assert p.candidates(0) == ["g", "h"]                          # floor(8/3) = 2: both better than -200
    p.record("i", 0, None)
    assert not p.learned(None) and not p.learned(-200.0) and p.learned(-199.5)
    assert Promotions.from_dict(p.to_dict()).candidates(0) == ["g", "h"]  # the floor is kept in the state file
    low = Promotions(Ladder(rungs=(1, 2), eta=2), direction="minimize", floor=5.0)  # minimised: below it learned
    low.record("a", 0, 5.0)
    low.record("b", 0, 7.0)
    assert low.next_promotion() is None
    low.record("c", 0, 4.0)
    assert low.next_promotion() == ("c", 1)
