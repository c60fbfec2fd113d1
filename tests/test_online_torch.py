"""Online tuning goes through the seed-job loop (automl/train/tuning.py), so it works on both trainers: on the torch
trainer a rejected mutation is rolled back bit for bit, and (issue 26 defect 6) a user actuator whose ``apply`` or
``restore`` raises is logged, disabled, and training goes on."""
from __future__ import annotations

import json

import pytest
import yaml

from automl.api import train_tuned
from automl.train.sb3_train import train_seed
from automl.train.torch_train import train_seed_torch

CART = dict(num_envs=8, rollouts=32, mini_batches=2, learning_epochs=2, learning_rate=1e-3)
RUN = dict(total_steps=4096, eval_every=512, eval_episodes=4, device="cpu")


def _recipe(tmp_path, actuators, streak=2):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"actuators": actuators, "search": {"algorithm": "random"},
                                    "acceptance": {"epsilon": 1e9, "horizon": 1},   # nothing can pass
                                    "safety": {"max_global_reject_streak": streak}}))
    return str(path)


def _logs(run_dir):
    logs = run_dir / "tune" / "seed_0"
    lines = [json.loads(x) for x in (logs / "tune.mutations.jsonl").read_text().splitlines()]
    segments = [json.loads(x) for x in (logs / "tune.segments.jsonl").read_text().splitlines()]
    return lines, [s for s in segments if s["event"] == "segment"], json.loads((logs / "tune.summary.json").read_text())


@pytest.mark.parametrize("trainer, plain", [("torch", train_seed_torch), ("sb3", train_seed)])
def test_every_rejected_mutation_is_rolled_back_bit_for_bit_so_the_tuned_run_is_the_plain_run(tmp_path, trainer, plain):
    recipe = _recipe(tmp_path, {"learning_rate": {"mode": "mult", "bounds": [2.0, 3.0], "cooldown": 0},
                                "reward.pole_angle": {"mode": "abs", "bounds": [-1.0, -0.5], "log": False,
                                                      "cooldown": 0}})
    tuned = train_tuned(CART, env="cartpole", seed=0, recipe=recipe, run_dir=str(tmp_path / "run"), trainer=trainer,
                        **RUN)
    mutations, segments, summary = _logs(tmp_path / "run")
    assert [s["decision"] for s in segments] == ["reject", "reject"] and summary["blocked"] == "2 rejections in a row"
    assert len([m for m in mutations if m["event"] == "mutation"]) == 2
    # each rolled-back segment was trained again from its snapshot: policy, optimizer, env, RNG, values, weights
    reference = plain(CART, env="cartpole", seed=0, **RUN)
    assert (tuned.state, tuned.steps) == ("complete", 4096)
    assert tuned.evals == reference.evals and tuned.shaped_return == reference.shaped_return


class Knob:
    """A user actuator (seed 004's protocol) whose ``apply`` or ``restore`` raises."""

    def __init__(self, fail: str):
        self.fail, self.calls, self.value = fail, [], 0.5

    def snapshot(self, env):
        return {"value": self.value}

    def validate(self, patch, env):
        return True

    def apply(self, patch, env):
        self.calls.append("apply")
        if self.fail == "apply":
            raise RuntimeError("the knob is stuck")
        self.value = patch["value"]

    def restore(self, snapshot, env):
        self.calls.append("restore")
        if self.fail == "restore":
            raise RuntimeError("the knob is stuck")
        self.value = snapshot["value"]

    def describe_space(self):
        return {"knob": "float"}


@pytest.mark.parametrize("trainer", ["torch", "sb3"])
@pytest.mark.parametrize("fail, calls", [("apply", ["apply"]), ("restore", ["apply", "restore"])])
def test_a_failing_actuator_is_logged_disabled_and_training_goes_on(tmp_path, trainer, fail, calls):
    recipe = _recipe(tmp_path, {"knob": {"mode": "mult", "bounds": [1.5, 2.0], "cooldown": 0}}, streak=5)
    knob = Knob(fail)
    result = train_tuned(CART, env="cartpole", seed=0, recipe=recipe, run_dir=str(tmp_path / "run"), trainer=trainer,
                         actuators={"knob": knob}, **RUN)
    assert (result.state, result.stop_reason, result.steps) == ("complete", "step_budget", 4096)
    assert knob.calls == calls            # disabled after its failure: never proposed or called again
    lines, _, summary = _logs(tmp_path / "run")
    failed = [x for x in lines if x["event"] == "actuator_failed"]
    assert [(x["name"], x["call"], x["error"]) for x in failed] == [("knob", fail, "RuntimeError: the knob is stuck")]
    assert summary["actuator_failures"] == failed and summary["states"]["knob"] == "disabled"
