"""Online tuning's recipe and decisions (automl/core/tune_recipe.py, automl/search/online.py) with known answers."""
import dataclasses
import math

import pytest

from automl.core.errors import AutoMLError
from automl.core.tune_recipe import Mutation, Recipe, load_recipe, recipe_from_dict
from automl.search.online import OnlineTuner
from automl.search.online_judge import judge, noise_sd
from automl.search.online_log import replay_plan
from _cli import ROOT

ONE = Recipe(mutations=(Mutation("learning_rate", bounds=(0.5, 2.0), cooldown=2),), algorithm="random",
             epsilon=0.01, horizon=2, max_global_reject_streak=3)


def test_the_example_recipe_loads_with_its_phases_and_actuators():
    r = load_recipe(ROOT / "configs" / "tune" / "ppo.yaml")
    assert [m.name for m in r.mutations] == ["learning_rate", "ent_coef", "clip_range", "reward.progress"]
    assert r.phase_at(0.1) == "early" and r.phase_at(0.5) == "mid" and r.phase_at(1.0) == "late"
    assert r.horizon == 2 and r.epsilon == 0.01 and r.mutations[2].risk == "medium"


@pytest.mark.parametrize("doc, message", [
    ({"actuators": {"momentum": {}}}, "recipe: actuators.momentum: unknown actuator (allowed: learning_rate, ent_coef, "
                                      "clip_range, vf_coef, weight_decay, adam_beta1, adam_beta2, adam_eps, "
                                      "reward.<term>, or seed 004's families opt.mutations.*, loss.keys.*)"),
    ({"actuators": {"ent_coef": {"risk": "high"}}}, "recipe: actuators.ent_coef.risk: 'high' (allowed: low, medium"),
    ({"actuators": {"ent_coef": {"bounds": [2.0, 1.0]}}}, "recipe: actuators.ent_coef.bounds: [2.0, 1.0] (allowed: low < high"),
    ({"actuators": {"ent_coef": {"phases": ["warmup"]}}}, "recipe: actuators.ent_coef.phases: 'warmup' (allowed: all)"),
    ({"objective": {"mode": "up"}}, "recipe: objective.mode: 'up' (allowed: max, min)"),
    ({"acceptance": {"horizon": 0}}, "recipe: acceptance.horizon: 0 (allowed: an integer >= 1)"),
    ({"speed": 1}, "recipe: speed: unknown key (allowed: version, objective"),
    ({"objective": {"backup_metrics": ["approx_kl"]}},
     "recipe: objective.backup_metrics: 'approx_kl' (allowed: true_metric, success_rate, reference_return, "
     "shaped_return, grad/norm (optionally :max or :min))"),
    ({"safety": {"block_on_nans": True}}, "recipe: safety.block_on_nans: unknown key (allowed: block_on_nan, "),
    ({"safety": {"anomaly_factor": 0.5}}, "recipe: safety.anomaly_factor: 0.5 (allowed: a number >= 1.0)"),
    ({"acceptance": {"branch_share": 2}}, "recipe: acceptance.branch_share: 2 (allowed: a number >= 0.0 and <= 1.0)"),
    ({"acceptance": {"branches": 5000}}, "recipe: acceptance.branches: 5000 (allowed: an integer >= 1 and <= 64)"),
    ({"acceptance": {"horizon": 4, "max_horizon": 1}}, "recipe: acceptance.max_horizon: 1 (allowed: an integer >= 4)"),
])
def test_a_bad_recipe_is_one_line_naming_the_key_and_the_allowed_values(doc, message):
    with pytest.raises(AutoMLError) as e:
        recipe_from_dict(doc)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_the_acceptance_rule_has_known_answers():
    pre = [0.50, 0.52, 0.48]                                      # sd 0.02
    assert noise_sd(pre, [None]) == pytest.approx(0.02)
    clear = judge(pre, [0.70, 0.72], ONE)
    assert clear.accept and clear.gain == pytest.approx(0.21) and clear.instability == pytest.approx(0.0, abs=1e-9)
    small = judge(pre, [0.515, 0.525], ONE)                       # gain 0.02 > eps, band 0.02*sqrt(1/3+1/2)=0.0183
    assert small.accept and small.band == pytest.approx(0.02 * math.sqrt(1 / 3 + 1 / 2))
    # the same gain with evaluations whose own standard error is 0.08 is noise
    noisy = judge(pre, [0.515, 0.525], ONE, [0.08, 0.08, 0.08])
    assert not noisy.accept and "noise band" in noisy.reason and noisy.band == pytest.approx(0.08 * math.sqrt(5 / 6))
    assert not judge(pre, [0.505, 0.51], ONE).accept              # gain 0.0075 <= epsilon 0.01
    erratic = judge(pre, [0.9, 0.3], ONE)                         # gain 0.1, std rises 0.02 -> 0.424
    assert not erratic.accept and erratic.instability == pytest.approx(math.sqrt(0.18) - 0.02)
    assert not judge(pre, [0.7, math.nan], ONE).accept
    assert judge([0.5, 0.4], [0.2, 0.1], Recipe(mode="min", horizon=2)).accept   # min: lower is better


def _drive(tuner, values, current=None, start=0):
    acts = []
    for i, v in enumerate(values):
        acts.append(tuner.on_eval(step=(start + i) * 100, frac=0.5, value=v, current=current or {"learning_rate": 1e-3}))
    return acts


def test_a_mutation_that_makes_the_metric_worse_is_rolled_back_and_one_that_helps_is_kept():
    t = OnlineTuner(ONE, "active", seed=1)
    acts = _drive(t, [0.50, 0.52])
    apply = acts[1][0]
    assert apply["action"] == "apply" and apply["old"] == 1e-3 and 0.5e-3 <= apply["value"] <= 2e-3
    acts = _drive(t, [0.30, 0.28], start=2)
    assert acts[0] == [] and acts[1] == [{"action": "rollback", "name": "learning_rate", "value": 1e-3, "step": 300}]
    assert t.values == [0.50, 0.52] and t.reject_streak == 1 and t.state["learning_rate"] == "untouched"
    # cooldown 2: no proposal at the next two safe points, then one
    acts = _drive(t, [0.5, 0.51, 0.5], start=4)
    assert acts[0] == [] and acts[1] == [] and acts[2][0]["action"] == "apply"
    acts = _drive(t, [0.8, 0.82], start=7)
    assert acts[1][0]["action"] == "accept" and t.state["learning_rate"] == "verified" and t.reject_streak == 0


def test_the_reject_streak_and_non_finite_metrics_block_every_proposal():
    t = OnlineTuner(Recipe(mutations=(Mutation("learning_rate", cooldown=0),), algorithm="random", horizon=1,
                           max_global_reject_streak=2), "active")
    _drive(t, [0.5, 0.5, 0.1, 0.5, 0.1, 0.5, 0.5, 0.5])        # apply, reject, apply, reject, then blocked
    assert t.reject_streak == 2 and t.blocked == "2 rejections in a row"
    assert sum(e["event"] == "mutation" for e in t.log) == 2
    n = OnlineTuner(ONE, "active")
    acts = _drive(n, [0.5, 0.5])
    assert acts[1][0]["action"] == "apply"
    acts = _drive(n, [math.nan], start=2)
    assert acts[0][0]["action"] == "rollback" and n.blocked == "non-finite metric or loss"
    assert _drive(n, [0.5, 0.6, 0.7, 0.8], start=3) == [[], [], [], []]


def test_suggest_mode_proposes_without_applying_and_observe_never_proposes():
    s = OnlineTuner(ONE, "suggest")
    acts = _drive(s, [0.5, 0.5, 0.9, 0.9])
    assert acts[1][0]["action"] == "suggest" and all(a["action"] not in ("apply", "rollback") for x in acts for a in x)
    o = OnlineTuner(ONE, "observe")
    assert _drive(o, [0.5, 0.5, 0.6]) == [[], [], []] and o.values == [0.5, 0.5, 0.6]


def test_a_replay_plan_reapplies_the_same_values_at_the_same_steps_in_order():
    t = OnlineTuner(ONE, "active", seed=3)
    _drive(t, [0.5, 0.52, 0.3, 0.28, 0.5, 0.51, 0.5, 0.8, 0.82])
    plan = replay_plan(list(reversed(t.log)))                  # the order comes from the records' seq
    applies = [(step, a["value"]) for step, acts in plan for a in acts if a["action"] == "apply"]
    assert applies == [(e["step"], e["new"]) for e in t.log if e["event"] == "mutation"]
    assert [step for step, _ in plan] == [100, 300, 600, 800]
    assert plan[1] == (300, [{"action": "rollback", "name": "learning_rate", "value": 1e-3}])
    assert [a["action"] for a in plan[3][1]] == ["accept", "apply"]   # judged, then the next mutation


def test_evolve_recipe_moves_prior_centres_toward_accepted_factors_and_the_recipe_round_trips():
    from automl.core.tune_recipe import recipe_to_dict
    from automl.search.online_log import evolve_recipe

    base = load_recipe(ROOT / "configs" / "tune" / "ppo.yaml")
    assert recipe_from_dict(recipe_to_dict(base)) == base
    summaries = [{"families": {"learning_rate": {"accepted_factors": [2.0, 2.0]}}},
                 {"families": {"learning_rate": {"accepted_factors": [2.0]}, "ent_coef": {"accepted_factors": []}}}]
    evolved = evolve_recipe(base, summaries, alpha=0.3)
    lr = {m.name: m for m in evolved.mutations}["learning_rate"]
    assert lr.prior_center == pytest.approx(2.0 ** 0.3)                   # from 1.0, 30% of the way (log scale) to 2.0
    unchanged = {m.name: m for m in evolved.mutations}
    assert unchanged["ent_coef"] == {m.name: m for m in base.mutations}["ent_coef"]   # never accepted: kept
    far = evolve_recipe(base, [{"families": {"learning_rate": {"accepted_factors": [100.0]}}}], alpha=1.0)
    assert {m.name: m for m in far.mutations}["learning_rate"].prior_center == 3.0       # clipped to its bounds


def test_a_success_rate_of_zero_is_not_read_as_noiseless():
    from automl.train.evaluation import success_se

    assert success_se(0.0, 32) == pytest.approx(math.sqrt((2 / 36) * (34 / 36) / 36))    # ~0.038, not 0
    assert success_se(0.5, 32) == pytest.approx(math.sqrt(0.25 / 36))
    assert success_se(1.0, 32) == pytest.approx(success_se(0.0, 32))
    # so a 0 -> 1/32 change over two evaluations each is inside the band, as it should be
    j = judge([0.0, 0.0], [0.03125, 0.03125], ONE, [success_se(0.0, 32)] * 2 + [success_se(0.03125, 32)] * 2)
    assert not j.accept and j.band > 0.03125


BACKED = Recipe(mutations=(Mutation("learning_rate", bounds=(0.5, 2.0), cooldown=0),), algorithm="random",
                epsilon=0.01, horizon=2, backup_metrics=("reference_return",))


def _backed(tuner, rows, start=0):
    """rows: (success, reference_return, its se) per evaluation."""
    return [tuner.on_eval(step=(start + i) * 100, frac=0.5, value=v, current={"learning_rate": 1e-3}, se=0.04,
                          backup={"reference_return": (r, rse)}) for i, (v, r, rse) in enumerate(rows)]


def test_a_flat_primary_is_judged_on_the_backup_metric_against_its_own_noise():
    from automl.search.online_judge import judge_segment

    # success stuck at 0: the reference return (se 1.0 per evaluation) decides
    pre_b, post_b = [{"reference_return": (-50.0, 1.0)}] * 2, [{"reference_return": (-40.0, 1.0)}] * 2
    up = judge_segment([0.0, 0.0], [0.0, 0.0], BACKED, [0.04] * 2, pre_b, post_b)
    assert up.accept and up.metric == "reference_return" and up.gain == pytest.approx(10.0)
    assert up.band == pytest.approx(1.0) and up.z == pytest.approx(10.0) and "flat at 0" in up.reason
    small = judge_segment([0.0, 0.0], [0.0, 0.0], BACKED, [0.04] * 2, pre_b, [{"reference_return": (-49.5, 1.0)}] * 2)
    assert not small.accept and "noise band" in small.reason          # gain 0.5 < band 1.0
    # a primary that moved is judged on itself, whatever the backup says
    moved = judge_segment([0.0, 0.0], [0.2, 0.2], BACKED, [0.04] * 2, pre_b, [{"reference_return": (-60.0, 1.0)}] * 2)
    assert moved.accept and moved.metric == "true_metric"
    # without a backup metric a flat primary is a plain rejection (delta 0 <= epsilon)
    assert not judge_segment([0.0, 0.0], [0.0, 0.0], ONE, [0.04] * 2, pre_b, post_b).accept


def test_the_tuner_keeps_a_mutation_that_raises_the_backup_while_success_stays_at_zero():
    t = OnlineTuner(BACKED, "active", seed=1)
    acts = _backed(t, [(0.0, -50.0, 1.0), (0.0, -50.5, 1.0)])
    assert acts[1][0]["action"] == "apply"
    acts = _backed(t, [(0.0, -45.0, 1.0), (0.0, -44.0, 1.0)], start=2)
    seg = [e for e in t.log if e["event"] == "segment"]
    assert acts[1][0]["action"] == "accept" and seg[-1]["metric"] == "reference_return"
    assert acts[1][1]["action"] == "apply"                        # (proposes again at once)
    acts = _backed(t, [(0.0, -60.0, 1.0), (0.0, -61.0, 1.0)], start=4)
    assert acts[1][0]["action"] == "rollback"
    assert t.summary()["judged_on"] == {"reference_return": 2}
    assert len(t.values) == len(t.se) == len(t.backup_values) == 4   # the kept trajectory, aligned


def test_an_approx_kl_spike_rolls_the_mutation_back_and_skips_that_safe_point():
    r = Recipe(mutations=(Mutation("learning_rate", cooldown=0),), algorithm="random", horizon=3, anomaly_factor=10.0)
    t = OnlineTuner(r, "observe")
    for i, kl in enumerate([0.010, 0.012, 0.011]):
        assert t.on_eval(i * 100, 0.5, 0.5, {"learning_rate": 1e-3}, approx_kl=kl) == []
    assert t.anomaly(0.1) is None and "10 x the run's median 0.011 and > 0.05" in t.anomaly(0.2)
    assert OnlineTuner(dataclasses.replace(r, anomaly_min_kl=0.5), "observe").anomaly(0.2) is None
    t.mode = "active"
    acts = t.on_eval(300, 0.5, 0.5, {"learning_rate": 1e-3}, approx_kl=0.011)
    assert acts[0]["action"] == "apply"
    acts = t.on_eval(400, 0.5, 0.9, {"learning_rate": 2e-3}, approx_kl=0.5)   # a better metric, but a kl spike
    assert acts == [{"action": "rollback", "name": "learning_rate", "value": 1e-3, "step": 400}]
    assert t.log[-1]["reason"].startswith("anomaly: approx_kl 0.5") and t.log[-2]["event"] == "anomaly"
    # a spike with nothing in flight: no proposal at that safe point, proposals resume after it
    assert t.on_eval(500, 0.5, 0.5, {"learning_rate": 1e-3}, approx_kl=0.4) == []
    assert t.on_eval(600, 0.5, 0.5, {"learning_rate": 1e-3}, approx_kl=0.011)[0]["action"] == "apply"
    assert t.blocked is None and t.summary()["anomalies"] == 2
    off = OnlineTuner(Recipe(mutations=r.mutations, algorithm="random", block_on_anomaly=False), "observe")
    for i, kl in enumerate([0.01, 0.01, 0.01]):
        off.on_eval(i, 0.5, 0.5, {"learning_rate": 1e-3}, approx_kl=kl)
    off.mode = "active"
    assert off.on_eval(3, 0.5, 0.5, {"learning_rate": 1e-3}, approx_kl=5.0)[0]["action"] == "apply"


PAIRED = Recipe(mutations=(Mutation("learning_rate", bounds=(0.5, 2.0), cooldown=0),), algorithm="random",
                epsilon=0.01, horizon=2, control="paired")


def _evals(t, rows, start):
    """rows: (value, se) per evaluation at steps start*100, (start+1)*100, ..."""
    return [t.on_eval(step=(start + i) * 100, frac=0.5, value=v, current={"learning_rate": 1e-3}, se=se)
            for i, (v, se) in enumerate(rows)]


def test_a_paired_control_does_not_credit_a_mutation_with_the_run_s_own_progress():
    # a run that learns anyway: +0.1 per evaluation. The mutation changes nothing: the treatment and the
    # control branch (same snapshot, same steps) score the same. hotcb's before/after rule accepts it.
    trend = [(0.10, 0.02), (0.20, 0.02)]
    before_after = OnlineTuner(dataclasses.replace(PAIRED, control="none"), "active", seed=1)
    _evals(before_after, trend, 0)
    acts = _evals(before_after, [(0.30, 0.02), (0.40, 0.02)], 2)
    assert acts[1][0]["action"] == "accept"                       # gain 0.2: the trend, not the mutation
    t = OnlineTuner(PAIRED, "active", seed=1)
    acts = _evals(t, trend, 0)
    assert acts[1][0]["action"] == "apply"
    acts = _evals(t, [(0.30, 0.02), (0.40, 0.02)], 2)             # the treatment branch
    assert acts[1] == [{"action": "control", "name": "learning_rate", "value": 1e-3, "step": 300}]
    acts = _evals(t, [(0.30, 0.02), (0.40, 0.02)], 2)             # the control branch, same steps again
    assert acts[1][0] == {"action": "keep_control", "name": "learning_rate", "value": 1e-3, "step": 300}
    seg = [e for e in t.log if e["event"] == "segment"][-1]
    assert seg["control"] == "paired" and seg["gain"] == pytest.approx(0.0, abs=1e-12)
    # the noise is the evaluations' own (0.02 each, 2 + 2 of them), not the trend's spread
    assert seg["band"] == pytest.approx(0.02)
    assert t.values == [0.10, 0.20, 0.30, 0.40] and t.reject_streak == 1


def test_a_paired_control_adopts_a_mutation_that_beats_the_same_steps_without_it():
    t = OnlineTuner(PAIRED, "active", seed=1)
    _evals(t, [(0.10, 0.02), (0.20, 0.02)], 0)
    _evals(t, [(0.50, 0.02), (0.60, 0.02)], 2)                    # treatment
    acts = _evals(t, [(0.30, 0.02), (0.40, 0.02)], 2)             # control
    assert acts[1][0]["action"] == "adopt" and acts[1][0]["value"] == t.log[0]["new"]
    assert t.values == [0.10, 0.20, 0.50, 0.60] and t.state["learning_rate"] == "verified"
    plan = replay_plan(t.log)
    assert [(step, [a["action"] for a in acts]) for step, acts in plan] == \
        [(100, ["apply"]), (300, ["control"]), (300, ["adopt", "apply"])]
