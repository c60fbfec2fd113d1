"""Scheduling rules of the budget against a fake clock (no wall-clock asserts)."""
import pytest

from automl.run.budget import (MIN_TRIAL_STEPS, Budget, Throughput, heldout_reserve_s,
                           plan_trial_steps)


class FakeClock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


def test_deadline_stops_scheduling():
    clock = FakeClock()
    b = Budget(0.01, clock=clock)  # 36 s
    assert b.can_start(10.0)
    clock.t += 30.0
    assert not b.can_start(10.0)          # would end at 40 s > 36 s
    assert b.can_start(5.0)
    clock.t += 7.0
    assert b.exhausted() and b.remaining_s() == 0.0


def test_reserve_is_kept_for_heldout():
    clock = FakeClock()
    b = Budget(1.0, clock=clock)          # 3600 s
    b.set_reserve(600.0)
    assert b.tuning_deadline == pytest.approx(clock.t + 3000.0)
    clock.t += 2900.0
    assert not b.can_start(200.0)                 # tuning must end by 3000 s
    assert b.can_start(200.0, heldout=True)       # the held-out phase may use the reserve


def test_reserve_is_capped():
    b = Budget(1.0, clock=FakeClock())
    b.set_reserve(10_000.0)
    assert b.reserve_s == pytest.approx(0.35 * 3600)


def test_too_long_trial_is_not_started():
    clock = FakeClock()
    b = Budget(0.1, clock=clock)          # 360 s
    tp = Throughput(steps_per_s=1000.0, startup_s=2.0)
    assert not b.can_start(tp.seconds_for(400_000))   # ~460 s > 360 s
    assert b.can_start(tp.seconds_for(100_000))


def test_resumed_elapsed_counts_against_budget():
    clock = FakeClock()
    b = Budget(1.0, elapsed_before_s=3000.0, clock=clock)
    assert b.remaining_s() == pytest.approx(600.0)
    assert b.elapsed_s() == pytest.approx(3000.0)
    clock.t += 100
    assert b.elapsed_s() == pytest.approx(3100.0)


def test_plan_shrinks_to_fit_but_not_below_floor():
    tp = Throughput(steps_per_s=10_000.0, startup_s=0.0)
    # 10 jobs on 2 workers = 5 waves in 115 s -> 20 s per job -> 200k steps; default 100k fits.
    assert plan_trial_steps(default_steps=100_000, budget_s=115, seed_jobs=10, n_jobs=2,
                            throughput=tp) == 100_000
    # 11.5 s -> 2 s per job -> 20k steps
    assert plan_trial_steps(default_steps=100_000, budget_s=11.5, seed_jobs=10, n_jobs=2,
                            throughput=tp) == 20_000
    # no time at all -> floor
    assert plan_trial_steps(default_steps=100_000, budget_s=0.0, seed_jobs=10, n_jobs=2,
                            throughput=tp) == max(MIN_TRIAL_STEPS, 5_000)


def test_plan_rounds_to_whole_rollouts():
    tp = Throughput(steps_per_s=10_000.0, startup_s=0.0)
    steps = plan_trial_steps(default_steps=100_000, budget_s=11.5, seed_jobs=10, n_jobs=2,
                             throughput=tp, rollout=3_000)
    assert steps == 18_000


def test_throughput_uses_measurements():
    tp = Throughput(steps_per_s=1.0, startup_s=1.0)
    tp.observe(10_000, 11.0)
    assert tp.steps_per_s == pytest.approx(1000.0)
    assert heldout_reserve_s(configs=4, seeds=3, steps=10_000, n_jobs=2, throughput=tp) == \
        pytest.approx(6 * 11.0 * 1.15)
