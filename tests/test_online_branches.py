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
from automl.search.online_judge import corrected_z
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
    first = adopted[0]
    later = [m for m in mutations if m["event"] == "mutation" and m["step"] > first["step"]]
    # the next proposals start from the adopted branch's learning rate: the run continued from its state
    assert later and later[0]["old"] == pytest.approx(first["new"])
    assert all(m["horizon"] in (1, 2) for m in mutations if m["event"] == "mutation")
