"""--objective: one ranking rule (mean | iqm | lcb, default iqm) for the sampler's values, the
incumbent, pruning and the held-out winner (automl.core.scoring.objective_value)."""
from __future__ import annotations

import pytest
import yaml
from _sim import FakeClock, SimExecutor

from automl.run import driver
from automl.run.opening import prepare
from automl.run.runconfig import RunConfig
from automl.core.scoring import objective_value, score


def test_objective_value_from_a_score_and_from_values():
    values = [10.0, 1.0, 1.0, 1.0]
    s = score(values)
    assert objective_value(s, "mean") == pytest.approx(3.25)
    assert objective_value(s, "iqm") == pytest.approx(1.0)   # 25% trimmed each end: the two 1.0s in the middle
    assert objective_value(s, "lcb") == pytest.approx(s["ci95"][0])
    # mean - K * std: the sample std of 10, 1, 1, 1 is 4.5 (sum of squares 60.75 over 3 dof = 20.25)
    assert objective_value(s, "mean-std") == pytest.approx(3.25 - 4.5)
    assert objective_value(s, "mean-std", risk=0.5) == pytest.approx(3.25 - 2.25)
    assert objective_value([2.0, 2.0, 2.0], "mean-std", risk=3.0) == pytest.approx(2.0)  # no spread, no penalty
    assert objective_value({"mean": 3.0, "iqm": 3.0, "ci95": [3, 3], "n_seeds": 1}, "mean-std") == 3.0  # no std recorded
    for objective in ("mean", "iqm", "lcb", "mean-std"):  # the same number from the values as from their score
        assert objective_value(values, objective) == pytest.approx(objective_value(s, objective))
        assert objective_value(values, objective, risk=2.0) == pytest.approx(objective_value(s, objective, risk=2.0))
    with pytest.raises(ValueError, match="allowed: mean, iqm, lcb, mean-std"):
        objective_value(s, "median")
    from automl.core.names import OBJECTIVES
    from automl.core.scoring import AGGREGATES

    assert tuple(AGGREGATES) == OBJECTIVES  # every objective has its aggregate, one list of names


def _prior(kwargs) -> bool:
    return abs(kwargs["params"]["learning_rate"] - 3e-4) < 1e-12


def _lucky_prior(kwargs) -> float:
    """The prior config wins big on one seed in four (mean 3.25, IQM 1.0); the other scores 2.0 on every seed."""
    if _prior(kwargs):
        return 10.0 if kwargs["seed"] % 4 == 0 else 1.0
    return 2.0


def _run(tmp_path, objective):
    clock = FakeClock()
    cfg = RunConfig(env="navigation", mode="hp", hp_trials=2, seeds=4, trial_steps=50_000, budget_hours=12, ladder="off",
                    n_jobs=2, search_method="random", quiet=True, run_dir=str(tmp_path / objective),
                    **({"objective": objective} if objective != "default" else {}))
    ctx = prepare(cfg, clock=clock, executor_factory=lambda n: SimExecutor(n, clock, rate=25_000.0,
                                                                            value_fn=_lucky_prior))
    assert driver.run(ctx) == 0
    best = yaml.safe_load((tmp_path / objective / "best.yaml").read_text())
    told = {t.user_attrs.get("config_id"): t.value for t in ctx.record_study.get_trials()
            if t.user_attrs.get("kind") == "hp"}
    return ctx, best, told


@pytest.mark.parametrize("objective, winner, prior_told", [("mean", "config_000", 3.25), ("iqm", "config_001", 1.0),
                                                           ("default", "config_001", 1.0)])
def test_one_rule_picks_the_incumbent_tells_the_sampler_and_picks_the_winner(tmp_path, objective, winner, prior_told):
    ctx, best, told = _run(tmp_path, objective)
    resolved = "iqm" if objective == "default" else objective
    assert ctx.cfg.objective == resolved and ctx.fp["objective"] == resolved
    # (the simulator adds 0.01 * (seed % 3) to every value)
    assert told["config_000"] == pytest.approx(prior_told, abs=0.03) and told["config_001"] == pytest.approx(2.0, abs=0.03)
    assert ctx.records.best_entry().config_id == winner
    assert best["config_id"] == winner and best["objective"] == resolved
    summary = ctx.results.heldout
    assert summary[0]["config_id"] == winner and summary[0]["objective"] == resolved


def test_lcb_prefers_the_config_that_is_good_on_every_seed(tmp_path):
    ctx, best, told = _run(tmp_path, "lcb")
    assert told["config_000"] < 2.0 and told["config_001"] == pytest.approx(2.0, abs=0.03)
    assert best["config_id"] == "config_001"


def test_an_older_run_without_the_key_resumes_with_mean(tmp_path):
    from automl.run.inputs import resolve_defaults
    from automl.run.state import StateStore

    store = StateStore(str(tmp_path / "run"))
    store.write({"version": 1, "fingerprint": {"env": "navigation", "trainer": "torch"}})
    assert resolve_defaults(RunConfig(), store).objective == "mean"   # what it told its samplers
    assert resolve_defaults(RunConfig(objective="lcb"), store).objective == "lcb"  # check_resume refuses it
    assert resolve_defaults(RunConfig(fresh=True), store).objective == "iqm"
