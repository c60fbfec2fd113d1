"""Fake-clock planning tests of the real driver: budgets from 2 minutes to 12 hours are used
(>= 85% of the tuning budget) and never overrun, with calibration up to 1.7x pessimistic."""
import pytest
import yaml
from _sim import FakeClock, SimExecutor

from automl.run import driver
from automl.run.opening import prepare
from automl.core.errors import AutoMLError
from automl.run.runconfig import RunConfig


def simulate(tmp_path, *, hours, slowdown, rate=25_000.0, eval_s=0.3, job_slowdown=None, value_fn=None,
             **kw):
    clock = FakeClock()
    sims = []

    def factory(n):
        sims.append(SimExecutor(n, clock, rate=rate, eval_s_each=eval_s, calibration_slowdown=slowdown,
                                job_slowdown=job_slowdown, value_fn=value_fn))
        return sims[-1]

    cfg = RunConfig(env="navigation", budget_hours=hours, n_jobs=2, run_dir=str(tmp_path / "run"),
                    search_method="random", quiet=True, **{"ladder": "off", **kw})  # the fixed-length planner
    ctx = prepare(cfg, clock=clock, executor_factory=factory)
    start = clock()
    assert driver.run(ctx) == 0
    jobs = sims[0].finished
    tuning = [j for j in jobs if j["kind"] in ("hp", "reward")]
    heldout = [j for j in jobs if j["kind"] == "heldout"]
    tuning_budget = ctx.budget.tuning_deadline - start
    used = (max(j["end"] for j in tuning) - start) / tuning_budget
    return ctx, used, tuning, heldout, clock() - start


@pytest.mark.parametrize("slowdown", [1.0, 1.7])
def test_two_minute_demo_budget_is_used(tmp_path, slowdown):
    # the demo's shape: navigation, 2 HP trials + 1 reward generation, 2 seeds, 2 workers
    ctx, used, tuning, heldout, wall = simulate(
        tmp_path, hours=2 / 60, slowdown=slowdown, hp_trials=2, reward_generations=1, seeds=2,
        trial_steps=1_000_000)
    assert ctx.plan.trial_steps < 1_000_000          # the budget binds
    assert used >= 0.85, f"tuning used {used:.0%} of its budget"
    assert wall <= ctx.budget.total_s + 1e-6         # no overrun
    assert all(j["state"] == "complete" for j in tuning + heldout)
    assert len(heldout) >= 4                          # winner + baseline, 2 seeds each


@pytest.mark.slow  # 25-45 s each (make test-slow); the 2-minute and 10-minute budgets are in the default suite
@pytest.mark.parametrize("slowdown", [1.0, 1.7])
def test_twelve_hour_budget_is_used(tmp_path, slowdown):
    ctx, used, tuning, heldout, wall = simulate(
        tmp_path, hours=12, slowdown=slowdown, hp_trials=8, reward_generations=3, seeds=3,
        trial_steps=200_000_000)
    assert ctx.plan.trial_steps < 200_000_000
    assert used >= 0.85, f"tuning used {used:.0%} of its budget"
    assert wall <= ctx.budget.total_s + 1e-6
    assert sum(j["state"] != "complete" for j in tuning) <= 2   # at most the jobs cut at the deadline
    assert len(heldout) >= 3 * 3   # top-3 (equal values here: the baseline is one of them)
    assert ctx.final_status() == "budget_exhausted"


def test_requested_work_that_fits_finishes_early(tmp_path):
    # 2 configs of 50k steps in a 12-hour budget: nothing binds, the run finishes early
    ctx, used, tuning, heldout, wall = simulate(
        tmp_path, hours=12, slowdown=1.0, mode="hp", hp_trials=2, seeds=2, trial_steps=50_000)
    assert ctx.plan.trial_steps == 49_152 and not ctx.plan.shrunk and len(tuning) == 4  # 3 rollouts
    assert ctx.final_status() == "finished" and wall < 600


def test_slow_configs_still_get_the_winner_and_baseline_rechecked(tmp_path):
    # The HalfCheetah case: the prior calibrates fast, the configs the search proposes train
    # 4x slower (and better). The held-out stage still re-trains the winner and the baseline
    # (fewer seeds if all would not fit) instead of skipping both, within the budget.
    def is_prior(kwargs):
        return abs(kwargs["params"]["learning_rate"] - 3e-4) < 1e-12

    ctx, used, tuning, heldout, wall = simulate(
        tmp_path, hours=10 / 60, slowdown=1.0, mode="hp", hp_trials=8, seeds=3, trial_steps=2_000_000,
        job_slowdown=lambda kw: 1.0 if is_prior(kw) else 4.0,
        value_fn=lambda kw: 0.5 if is_prior(kw) else 0.7)
    held = {e.config_id: e for e in ctx.records.entries.values()
            if e.kind == "heldout" and e.state == "complete"}
    best = yaml.safe_load((tmp_path / "run" / "best.yaml").read_text())
    assert best["config_id"] != "config_000" and best["baseline"]["config_id"] == "config_000"
    assert set(held) >= {best["config_id"], "config_000"}
    assert best["heldout_score"]["n_seeds"] >= 1 and best["baseline"]["heldout_score"]["n_seeds"] >= 1
    assert (tmp_path / "run" / "best.yaml").exists()
    assert wall <= ctx.budget.total_s + 1e-6


def test_budget_too_small_for_one_config_is_refused_in_one_line(tmp_path):
    # 1,000 steps/s: one config at the minimum trial length (5% of 2M steps = 100k, x 2 seeds)
    # plus the held-out re-check cannot fit in 2 minutes; nothing is recorded as a run.
    with pytest.raises(AutoMLError) as err:
        simulate(tmp_path, hours=2 / 60, slowdown=1.0, rate=1_000.0, mode="hp", hp_trials=2, seeds=2,
                 trial_steps=2_000_000)
    msg = str(err.value)
    assert msg.startswith("--budget-hours: 0.0333 h is too small for navigation")  # 3 digits
    assert "(allowed: --budget-hours >= " in msg and "\n" not in msg
    minimum = float(msg.rsplit(">= ", 1)[1].rstrip(")"))
    assert 0.0333 < minimum < 1.0
    assert not (tmp_path / "run" / "automl_state.yaml").exists()
