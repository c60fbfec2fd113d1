"""Online tuning with branches (issue 28): at a safe point K candidate mutations and the unmutated control
train the same horizon from one snapshot, side by side on the torch trainer's seed axis (one after another
on SB3), each judged against the control; the best that beats it is adopted and the run goes on from it.

Known answers: the tuner's judgement on scripted branch results (adoption, a corrected band, no adoption
when every branch equals the control, the horizon doubling while stuck); a real torch run whose candidates
equal the control adopts nothing; an adoption continues from the adopted branch's state (the next
proposal starts from its value); SB3 runs the same branches one after another."""
from __future__ import annotations

import json
import math

import pytest
import yaml

from automl.api import train_tuned
from automl.core.tune_recipe import Mutation, Recipe
from automl.search.online import OnlineTuner
from automl.search.online_judge import corrected_z, paired_noise
from automl.train.torch_train import train_seed_torch

CART = dict(num_envs=8, rollouts=32, mini_batches=2, learning_epochs=2, learning_rate=1e-3)
RUN = dict(total_steps=4096, eval_every=512, eval_episodes=4, device="cpu")


def recipe(**acc):
    muts = (Mutation("learning_rate", bounds=(2.0, 3.0), cooldown=0), Mutation("ent_coef", bounds=(2.0, 3.0), cooldown=0))
    return Recipe(mutations=muts, algorithm="random", control="branches", horizon=2, epsilon=0.01, noise_z=1.0,
                  **{"branches": 3, "stuck_points": 3, "max_horizon": 8, "branch_share": 1.0, **acc})


def branch_round(tuner, step=1000, value=0.10, se=0.01):
    """Two safe points of history, then the branch proposal."""
    for i in range(2):
        acts = tuner.on_eval(step - 200 + 100 * i, 0.1, value, {"learning_rate": 1e-3, "ent_coef": 0.01}, se=se)
    assert [a["action"] for a in acts] == ["branch"]
    return acts[0]


def res(values, se=0.01):
    return {"post": list(values), "se": [se] * len(values), "post_b": [{} for _ in values]}


def test_the_best_branch_that_beats_the_control_by_more_than_the_corrected_band_is_adopted():
    tuner = OnlineTuner(recipe(), seed=1)
    act = branch_round(tuner)
    assert len(act["candidates"]) == 3 and act["horizon"] == 2
    # control 0.10; candidates: +0.05 (passes), +0.30 (passes, the best), +0.015 (inside the corrected band)
    out = tuner.on_branches(1200, [res([0.10, 0.10]), res([0.15, 0.15]), res([0.40, 0.40]), res([0.115, 0.115])])
    assert out == [{"action": "adopt_branch", "index": 2, "name": act["candidates"][1]["name"],
                    "value": act["candidates"][1]["value"], "step": 1200}]
    segs = [e for e in tuner.log if e["event"] == "segment"]
    assert [s["decision"] for s in segs] == ["reject", "accept", "reject"]
    assert "branch 2 gained more" in segs[0]["reason"] and "noise band" in segs[2]["reason"]
    assert tuner.values[-2:] == [0.40, 0.40] and tuner.reject_streak == 0
    # the band: 3 candidates at z=1 are judged at z=1.6175 (one-sided 15.87% / 3 = 5.29%); the noise of the
    # difference of two means of 2 evaluations with standard errors 0.01: 0.01 x sqrt(1/2 + 1/2)
    assert corrected_z(1.0, 3) == pytest.approx(1.6175, abs=1e-4)
    assert segs[2]["band"] == pytest.approx(corrected_z(1.0, 3) * 0.01 * math.sqrt(1.0), rel=1e-6)


def test_paired_noise_is_the_spread_of_the_per_episode_differences():
    """Per eval env, the difference candidate - control averaged over the horizon's evaluations; its sd over the
    envs / sqrt(envs). Envs whose episode did not finish (NaN) in one branch are left out of that evaluation."""
    ctrl = [{"true_metric": [1.0, 2.0, 3.0, 4.0]}, {"true_metric": [1.0, 2.0, 3.0, 4.0]}]
    cand = [{"true_metric": [1.5, 2.7, 3.3, 4.5]}, {"true_metric": [1.5, 2.7, 3.3, 4.5]}]
    # differences 0.5, 0.7, 0.3, 0.5: sd sqrt(0.08 / 3), over sqrt(4) envs
    assert paired_noise(ctrl, cand, "true_metric") == pytest.approx(math.sqrt(0.08 / 3) / 2)
    cand[1] = {"true_metric": [1.5, 2.7, math.nan, 4.5]}
    assert paired_noise(ctrl, cand, "true_metric") == pytest.approx(math.sqrt(0.08 / 3) / 2)
    assert paired_noise(ctrl, cand, "reference_return") is None  # not recorded
    assert paired_noise(ctrl, cand[:1], "true_metric") is None  # not the same evaluations
    assert paired_noise([{"x": [1.0, 2.0]}], [{"x": [1.0, 2.0, 3.0]}], "x") is None  # not the same envs


def test_a_gain_on_every_episode_hidden_by_the_spread_of_start_states_is_adopted_when_paired():
    """The control's 8 episodes spread from 0 to 70 (some start states are harder); a candidate gains 2 to 4 on
    every one of them. The evaluations' standard errors (~9.2) put +3 far inside the band; paired by episode
    the noise is 0.27 and the candidate is adopted, at the corrected z times that noise."""
    tuner = OnlineTuner(recipe(), seed=1)
    act = branch_round(tuner)
    base = [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0]
    gains = [2.0, 4.0, 3.0, 3.0, 2.0, 4.0, 3.0, 3.0]
    se = math.sqrt(sum((x - 35.0) ** 2 for x in base) / 7) / math.sqrt(8)

    def branch(values, episodes=True):
        out = res([sum(values) / 8] * 2, se=se)
        return {**out, "episodes": [{"true_metric": values}] * 2} if episodes else out

    better = [b + g for b, g in zip(base, gains)]
    unpaired = [branch(base, False), branch(better, False), branch(base, False), branch(base, False)]
    assert tuner.on_branches(1200, [branch(base), branch(better), branch(base), branch(base)])[0]["index"] == 1
    seg = next(e for e in tuner.log if e["event"] == "segment" and e["decision"] == "accept")
    noise = math.sqrt(sum((g - 3.0) ** 2 for g in gains) / 7) / math.sqrt(8)
    assert seg["delta"] == pytest.approx(3.0) and seg["band"] == pytest.approx(corrected_z(1.0, 3) * noise)
    other = OnlineTuner(recipe(), seed=1)
    assert branch_round(other)["candidates"] == act["candidates"]
    assert other.on_branches(1200, unpaired)[0]["action"] == "keep_control"


def test_no_adoption_when_every_branch_equals_the_control():
    tuner = OnlineTuner(recipe(), seed=2)
    branch_round(tuner)
    same = res([0.10, 0.12])
    assert tuner.on_branches(1200, [same, same, same, same]) == [{"action": "keep_control", "index": 0, "step": 1200}]
    assert all(e["decision"] == "reject" for e in tuner.log if e["event"] == "segment")
    assert tuner.reject_streak == 1


def test_a_stuck_run_doubles_its_horizon_up_to_the_bound_and_an_adoption_resets_it():
    tuner = OnlineTuner(recipe(max_horizon=6), seed=3)
    flat = res([0.0, 0.0], se=0.0)  # a success rate stuck at 0, no backup moved
    horizons = []
    step = 1000
    for _ in range(4):
        act = branch_round(tuner, step, value=0.0, se=0.0) if not horizons else None
        if act is None:
            acts = tuner.on_eval(step, 0.2, 0.0, {"learning_rate": 1e-3, "ent_coef": 0.01}, se=0.0)
            act = next(a for a in acts if a["action"] == "branch")
        horizons.append(act["horizon"])
        tuner.on_branches(step + 100, [flat] * (len(act["candidates"]) + 1))
        tuner.reject_streak = 0  # (the streak's own block is another rule)
        step += 1000
    assert horizons == [2, 4, 6, 6]
    assert [e["horizon"] for e in tuner.log if e["event"] == "horizon"] == [4, 6, 6, 6]
    act = tuner.on_eval(step, 0.3, 0.0, {"learning_rate": 1e-3, "ent_coef": 0.01}, se=0.0)[0]
    tuner.on_branches(step + 100, [flat, res([0.5, 0.5], se=0.0)] + [flat] * (len(act["candidates"]) - 1))
    assert tuner.horizon_now == 2


def test_branch_rounds_stay_within_their_share_of_the_run():
    """At 20 evaluations per run (spacing 0.05), a horizon of 2 covers 0.1 of the run: a share of 0.1 allows
    one round; after it (it covered 0.10 .. 0.20) no branches are proposed again."""
    tuner = OnlineTuner(recipe(branch_share=0.1), seed=4)
    now = {"learning_rate": 1e-3, "ent_coef": 0.01}
    assert tuner.on_eval(100, 0.05, 0.1, now, se=0.01) == []
    act = tuner.on_eval(200, 0.10, 0.1, now, se=0.01)[0]
    assert act["action"] == "branch"
    tuner.on_branches(400, [res([0.1, 0.1])] * 4, frac=0.20)
    assert tuner.branch_frac == pytest.approx(0.10)
    assert all(tuner.on_eval(400 + 100 * i, 0.20 + 0.05 * i, 0.1, now, se=0.01) == [] for i in range(1, 6))


def _recipe_file(tmp_path, actuators, **acc):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"actuators": actuators, "search": {"algorithm": "random"},
                                    "acceptance": {"control": "branches", "horizon": 1, "branch_share": 1.0, **acc},
                                    "safety": {"max_global_reject_streak": 100}}))
    return str(path)


def _logs(run_dir):
    logs = run_dir / "tune" / "seed_0"
    read = lambda name: [json.loads(x) for x in (logs / name).read_text().splitlines()]  # noqa: E731
    return read("tune.mutations.jsonl"), [s for s in read("tune.segments.jsonl") if s["event"] == "segment"]


def test_torch_branches_equal_to_the_control_are_never_adopted_and_the_run_is_the_plain_run(tmp_path):
    rec = _recipe_file(tmp_path, {"vf_coef": {"mode": "mult", "bounds": [1.0, 1.0000001], "cooldown": 0}},
                       branches=3, epsilon=0.0)
    tuned = train_tuned(CART, env="cartpole", seed=0, recipe=rec, run_dir=str(tmp_path / "run"), trainer="torch", **RUN)
    mutations, segments = _logs(tmp_path / "run")
    assert (tuned.state, tuned.steps) == ("complete", 4096)
    assert len(segments) >= 3 and {m["branch"] for m in mutations if m["event"] == "mutation"} == {1, 2, 3}
    assert all(s["decision"] == "reject" for s in segments)
    # how far the updates moved the policy: the candidates trained side by side measure what the control
    # (the run itself, one after another) measures, as they train the same
    assert all(s["control_kl"] > 0 and s["kl"] == pytest.approx(s["control_kl"], rel=1e-3) for s in segments)
    # the control is the run itself going on: a run that adopts nothing is the run without the tuner, bit for bit
    plain = train_seed_torch(CART, env="cartpole", seed=0, **RUN)
    assert tuned.evals == plain.evals and tuned.shaped_return == plain.shaped_return


@pytest.mark.parametrize("trainer", ["torch", "sb3"])
def test_an_adopted_branch_is_the_state_the_run_goes_on_from(tmp_path, trainer):
    rec = _recipe_file(tmp_path, {"learning_rate": {"mode": "mult", "bounds": [0.3, 3.0], "cooldown": 0}},
                       branches=2, epsilon=0.0, noise_z=0.0)
    tuned = train_tuned(CART, env="cartpole", seed=0, recipe=rec, run_dir=str(tmp_path / "run"), trainer=trainer, **RUN)
    mutations, segments = _logs(tmp_path / "run")
    assert (tuned.state, tuned.steps) == ("complete", 4096)
    adopted = [s for s in segments if s["decision"] == "accept"]
    assert adopted, "this seeded run adopts a branch (noise_z 0, epsilon 0)"
    assert all(s["kl"] > 0 and s["control_kl"] > 0 for s in segments)  # every branch's updates measured
    first = adopted[0]
    later = [m for m in mutations if m["event"] == "mutation" and m["step"] > first["step"]]
    # the next proposals start from the adopted branch's learning rate: the run continued from its state
    assert later and later[0]["old"] == pytest.approx(first["new"])
    assert all(m["horizon"] in (1, 2) for m in mutations if m["event"] == "mutation")


@pytest.mark.parametrize("trainer", ["torch", "sb3"])
def test_a_replay_reproduces_the_adopted_branch(tmp_path, trainer):
    """``--tune-mode replay`` of a run that adopted branches applies each adopted mutation where its round began
    and keeps it: the replay trains once per round, not K+1 times, and ends as the tuned run did (its
    evaluations equal: bit for bit on SB3, where a candidate trained alone; within float noise on torch,
    where it trained in a batch beside the others)."""
    rec = _recipe_file(tmp_path, {"learning_rate": {"mode": "mult", "bounds": [0.3, 3.0], "cooldown": 0}},
                       branches=2, epsilon=0.0, noise_z=0.0)
    tuned = train_tuned(CART, env="cartpole", seed=0, recipe=rec, run_dir=str(tmp_path / "run"), trainer=trainer, **RUN)
    _, segments = _logs(tmp_path / "run")
    adopted = [s for s in segments if s["decision"] == "accept"]
    assert adopted
    replayed = train_tuned(CART, env="cartpole", seed=0, recipe=rec, mode="replay", replay_from=str(tmp_path / "run"),
                           run_dir=str(tmp_path / "replay"), trainer=trainer, **RUN)
    done = [json.loads(x) for x in (tmp_path / "replay" / "tune" / "seed_0" / "tune.mutations.jsonl").read_text().splitlines()]
    applied = [(d["step"], d["name"], d["value"]) for d in done if d.get("action") == "apply"]
    assert applied == [(s["from_step"], s["name"], s["new"]) for s in adopted]
    assert [st for st, _ in replayed.evals] == [st for st, _ in tuned.evals]
    off = train_tuned(CART, env="cartpole", seed=0, recipe=rec, mode="off", run_dir=str(tmp_path / "off"),
                      trainer=trainer, **RUN)
    assert off.evals != tuned.evals  # the adoptions changed the run
    if trainer == "sb3":
        assert replayed.evals == tuned.evals
    else:
        assert [v for _, v in replayed.evals] == pytest.approx([v for _, v in tuned.evals], rel=1e-3)


def test_tune_set_changes_the_branch_rounds_from_the_next_round():
    """`automl tune set acceptance.branches=2` (and max_horizon, stuck_points, branch_share) reaches the tuner as
    a setting; the next round proposes 2 candidates. Out-of-range values are refused with the allowed range."""
    from automl.core.errors import AutoMLError
    from automl.core.tune_recipe import parse_setting

    tuner = OnlineTuner(recipe(), seed=5)
    assert len(branch_round(tuner)["candidates"]) == 3
    tuner.on_branches(1200, [res([0.10, 0.10])] * 4)
    settings = dict(parse_setting(t) for t in ("acceptance.branches=2", "acceptance.max_horizon=4",
                                               "acceptance.stuck_points=5", "acceptance.branch_share=0.5"))
    tuner.control(None, settings)
    assert (tuner.recipe.branches, tuner.recipe.max_horizon, tuner.recipe.stuck_points, tuner.recipe.branch_share) \
        == (2, 4, 5, 0.5)
    acts = tuner.on_eval(1300, 0.2, 0.1, {"learning_rate": 1e-3, "ent_coef": 0.01}, se=0.01)
    assert [len(a["candidates"]) for a in acts if a["action"] == "branch"] == [2]
    for text, allowed in (("acceptance.branch_share=1.5", "a number >= 0.0 and <= 1.0"),
                          ("acceptance.stuck_points=1", "a number >= 2"), ("acceptance.branches=0", "a number >= 1")):
        with pytest.raises(AutoMLError, match=f"allowed: {allowed}"):
            parse_setting(text)
    for text in ("acceptance.slow_kl=nan", "acceptance.branch_share=nan", "acceptance.slow_kl=inf"):  # never a value
        with pytest.raises(AutoMLError, match="allowed: a finite number >= 0"):
            parse_setting(text)


def test_branch_when_stuck_leaves_a_learning_run_alone_and_branches_a_stuck_one():
    """``acceptance.branch_when: stuck``: no round while the metric moves beyond its noise (0.1 -> 0.3 -> 0.5
    with standard errors 0.01); the first round once 3 safe points stayed within it (0.5, 0.505, 0.5)."""
    tuner = OnlineTuner(recipe(branch_when="stuck"), seed=6)
    now = {"learning_rate": 1e-3, "ent_coef": 0.01}
    acts = [tuner.on_eval(100 * i, 0.05 * i, v, now, se=0.01) for i, v in enumerate([0.1, 0.3, 0.5], 1)]
    assert acts == [[], [], []]
    assert tuner.on_eval(400, 0.2, 0.505, now, se=0.01) == []  # 0.3, 0.5, 0.505: still moving
    acts = tuner.on_eval(500, 0.25, 0.5, now, se=0.01)
    assert [a["action"] for a in acts] == ["branch"]
    always = OnlineTuner(recipe(), seed=6)
    assert [a["action"] for a in always.on_eval(200, 0.1, 0.3, now, se=0.01) + always.on_eval(300, 0.15, 0.5, now, se=0.01)] \
        == ["branch"]


def test_a_gain_within_float_noise_is_not_adopted():
    """Measured on the bench: a clip_range candidate the updates never reached differed from the control by
    rounding alone (reference return 10.0 vs 10.0000017, per-episode differences alike, so a tiny paired
    noise); a gain below 1e-6 of the metric is not a gain, whatever the band."""
    import dataclasses

    tuner = OnlineTuner(dataclasses.replace(recipe(), epsilon=0.0), seed=7)
    branch_round(tuner)
    ctrl = {**res([10.0]), "episodes": [{"true_metric": [9.0, 11.0, 10.0, 10.0]}]}
    tiny = {**res([10.0000017]), "episodes": [{"true_metric": [9.0000017, 11.0000016, 10.0000018, 10.0000017]}]}
    assert tuner.on_branches(1200, [ctrl, tiny, ctrl, ctrl])[0]["action"] == "keep_control"
    seg = next(e for e in tuner.log if e["event"] == "segment")
    assert "<= epsilon" in seg["reason"] and 0 < seg["band"] < seg["delta"]


def test_a_slow_run_branches_while_it_still_moves():
    """``slow_kl``: a run whose updates barely move the policy (median approx_kl 1e-5 over 3 safe points, as a
    learning rate 10x too low on navigation) gets a round although its metric moves; at 1e-3 (the prior's
    lowest) it does not. The round's records say why it began."""
    now = {"learning_rate": 1e-3, "ent_coef": 0.01}
    for kl, expected in ((1e-5, ["branch"]), (1e-3, [])):
        tuner = OnlineTuner(recipe(branch_when="stuck", slow_kl=2e-4), seed=8)
        acts = [a for i, v in enumerate([0.1, 0.3, 0.5], 1)
                for a in tuner.on_eval(100 * i, 0.05 * i, v, now, se=0.01, approx_kl=kl)]
        assert [a["action"] for a in acts] == expected
        assert all(m["due"] == "slow" for m in tuner.log if m["event"] == "mutation")
        # a slow run's candidates are all learning-rate steps (ent_coef is in the pool too)
        assert all(c["name"] == "learning_rate" for a in acts for c in a["candidates"])


def _slow_round(**acc):
    """A tuner of ``recipe(branch_when="stuck", slow_kl=2e-4)`` at its first round, due because its updates
    barely move the policy (approx_kl 1e-5)."""
    tuner = OnlineTuner(recipe(branch_when="stuck", slow_kl=2e-4, **acc), seed=8)
    now = {"learning_rate": 1e-3, "ent_coef": 0.01}
    acts = [a for i, v in enumerate([0.1, 0.3, 0.5], 1)
            for a in tuner.on_eval(100 * i, 0.05 * i, v, now, se=0.01, approx_kl=1e-5)]
    assert [a["action"] for a in acts] == ["branch"]
    return tuner, acts[0]


def test_a_slow_round_is_a_line_search_up_the_learning_rate():
    """K = 3 learning-rate steps log-spaced up to the actuator's upper bound (x3 here): x3^(1/3), x3^(2/3), x3."""
    tuner, act = _slow_round()
    assert [c["value"] for c in act["candidates"]] == pytest.approx([1e-3 * 3 ** (1 / 3), 1e-3 * 3 ** (2 / 3), 3e-3])


def test_a_slow_round_adopts_a_step_that_moves_the_policy_and_is_no_worse():
    """Control: metric 0.5, approx_kl 1e-5 (still slow). Candidates: +0.01 but kl 5e-5 (still slow, and inside the
    band 0.016); -0.005 at kl 1e-3 (moves, not measurably worse: adopted); -0.2 at kl 3e-3 (moves, but worse).
    Nothing is adopted when the control itself moved, or in a round that was not due to slowness."""
    def branch(v, kl):
        return {**res([v, v]), "kl": kl}

    results = [branch(0.5, 1e-5), branch(0.51, 5e-5), branch(0.495, 1e-3), branch(0.3, 3e-3)]
    tuner, act = _slow_round()
    out = tuner.on_branches(1200, results)
    assert out == [{"action": "adopt_branch", "index": 2, "name": "learning_rate",
                    "value": act["candidates"][1]["value"], "step": 1200}]
    seg = [e for e in tuner.log if e["event"] == "segment"]
    assert [s["decision"] for s in seg] == ["reject", "accept", "reject"]
    assert "slow: approx_kl 0.001 >= slow_kl 0.0002" in seg[1]["reason"] and seg[1]["kl"] == 1e-3
    assert seg[1]["band"] == pytest.approx(corrected_z(1.0, 3) * 0.01)

    tuner, _ = _slow_round()
    assert tuner.on_branches(1200, [branch(0.5, 5e-4)] + results[1:])[0]["action"] == "keep_control"
    always = OnlineTuner(recipe(slow_kl=2e-4), seed=8)
    branch_round(always)
    assert always.on_branches(1200, results)[0]["action"] == "keep_control"


def test_a_real_run_whose_learning_rate_is_far_too_low_adopts_a_step_that_moves_it(tmp_path):
    """CartPole on the torch trainer at a learning rate 1000x too low (1e-6): its updates' approx_kl stays far
    below slow_kl, so its rounds are slow ones (although it is stuck too), a line search up to x1000; a step is
    adopted when it wins on the metric, or when its updates reached slow_kl while the control's did not and
    its metric is not worse by more than the band; the run goes on at the adopted rate."""
    rec = _recipe_file(tmp_path, {"learning_rate": {"mode": "mult", "bounds": [0.3, 1000.0], "cooldown": 0}},
                       branches=3, branch_when="stuck", slow_kl=1e-4, stuck_points=2)
    tuned = train_tuned({**CART, "learning_rate": 1e-6}, env="cartpole", seed=0, recipe=rec,
                        run_dir=str(tmp_path / "run"), trainer="torch", **RUN)
    mutations, segments = _logs(tmp_path / "run")
    assert tuned.state == "complete"
    first = [m for m in mutations if m["event"] == "mutation"][:3]
    assert [m["due"] for m in first] == ["slow"] * 3
    assert [m["factor"] for m in first] == pytest.approx([10.0, 100.0, 1000.0])
    adopted = [s for s in segments if s["decision"] == "accept"]
    # this seeded run: x100 wins on the metric in the first round; a later round adopts a step no metric showed
    # winning, by the movement of its updates (the control's barely moved)
    assert adopted[0]["new"] == pytest.approx(1e-4) and adopted[0]["reason"] == "accepted"
    moved = [s for s in adopted if "slow: approx_kl" in s["reason"]]
    assert moved and all(s["control_kl"] < 1e-4 <= s["kl"] and -s["band"] < s["delta"] for s in moved)
    for seg in adopted:  # the run went on at the adopted rate
        later = [m for m in mutations if m["event"] == "mutation" and m["step"] > seg["step"]]
        assert not later or later[0]["old"] == pytest.approx(seg["new"])


def test_a_linear_schedules_decay_does_not_make_a_run_slow():
    """KL grows with the square of the step, so an update at a schedule's scale s of the set learning rate is
    judged as kl / s**2 (``base_kl``), and not at all in the schedule's last tenth. The slow check reads that:
    1e-5 measured where a linear schedule had decayed the rate to a tenth is 1e-3 at the rate set, not slow."""
    from automl.train.tuning import base_kl

    assert base_kl(1e-4, 0.5) == pytest.approx(4e-4) and base_kl(1e-4, 1.0) == 1e-4
    assert math.isnan(base_kl(1e-4, 0.05)) and math.isnan(base_kl(None, 1.0))
    now = {"learning_rate": 1e-3, "ent_coef": 0.01}
    for base, expected in ((1e-5, ["branch"]), (base_kl(1e-5, 0.1), []), (math.nan, [])):
        tuner = OnlineTuner(recipe(branch_when="stuck", slow_kl=2e-4), seed=8)
        acts = [a for i, v in enumerate([0.1, 0.3, 0.5], 1)
                for a in tuner.on_eval(100 * i, 0.05 * i, v, now, se=0.01, approx_kl=1e-5, base_kl=base)]
        assert [a["action"] for a in acts] == expected


@pytest.mark.parametrize("trainer", ["torch", "sb3"])
@pytest.mark.parametrize("schedule", ["linear", "constant"])
def test_a_trainers_learning_rate_scale_is_its_linear_schedules_remaining_fraction(trainer, schedule):
    from automl.train.result import to_setup
    from automl.train.sb3_train import build_run
    from automl.train.torch_ppo import Args
    from automl.train.torch_train import TorchTrainer

    params, total = {**CART, "learning_rate_schedule": schedule}, 4096
    t = TorchTrainer(Args.from_setup(to_setup(params)), "cartpole", [0], eval_episodes=4, device="cpu",
                     reward_weights=None) if trainer == "torch" else build_run(params, "cartpole", seed=0, eval_episodes=4)
    t.begin(total, False)
    for _ in range(3):
        assert t.chunk(total, None)
    expected = 1.0 - t.steps / total if schedule == "linear" else 1.0  # at the last update (768 of 4096 steps)
    assert t.steps == 768 and t.lr_scale() == pytest.approx(expected, abs=1e-9)
    t.close()
