"""The online tuner attached to a real SB3 training run (automl/train/sb3_tune.py): a full-state snapshot,
a rollback that restores it bit for bit, and the tuner's actions carried out inside learn()."""
import json

import numpy as np
import pytest
import torch

from automl.core.tune_recipe import Mutation, Recipe
from automl.search.online import OnlineTuner
from automl.train.evaluation import TrialCallback, evaluate
from automl.train.sb3_pbt import set_values
from automl.train.sb3_tune import TuneCallback, current_values, restore, snapshot
from automl.train.training import EVAL_SEED_OFFSET, _build_run, _to_setup

PARAMS = {"num_envs": 8, "rollouts": 32, "mini_batches": 2, "learning_epochs": 2, "learning_rate": 1e-3}


def _build(seed=0, eval_every=256):
    raw, train_env, eval_env, metric, model = _build_run(_to_setup(PARAMS), "cartpole", seed=seed, eval_episodes=4,
                                                         device="cpu", reward_weights=None, tb_dir=None)
    cb = TrialCallback(lambda steps, until: evaluate(model, eval_env, seed=seed + EVAL_SEED_OFFSET, steps=steps,
                                                     true_metric=metric, deadline=until), eval_every=eval_every,
                       deadline=None)
    return raw, train_env, model, cb


def _same(a, b, path=""):
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            _same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{path}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), path
    else:
        assert a == b, path


def test_a_rollback_restores_the_whole_training_state_bit_for_bit_and_training_continues_identically():
    torch.set_num_threads(1)
    raw, train_env, model, cb = _build()
    model.learn(512, callback=cb)
    snap = snapshot(model, raw, train_env, cb)
    set_values(model, raw, train_env, {"learning_rate": 3e-3, "ent_coef": 0.05}, {"pole_angle": -1.0})
    model.learn(512, callback=cb, reset_num_timesteps=False)           # the mutated segment
    assert model.num_timesteps == 1024 and current_values(model, raw)["learning_rate"] == pytest.approx(3e-3)
    restore(model, raw, train_env, cb, snap, seed=0, total=4096)
    _same(snapshot(model, raw, train_env, cb), snap)                   # every tensor, RNG, env and eval equal
    assert model.num_timesteps == 512 and current_values(model, raw)["reward.pole_angle"] == 0.0
    model.learn(256, callback=cb, reset_num_timesteps=False)
    # the same run without the mutation
    raw2, env2, ref, cb2 = _build()
    ref.learn(512, callback=cb2)
    ref.learn(256, callback=cb2, reset_num_timesteps=False)
    for (k, v), (_, w) in zip(model.policy.state_dict().items(), ref.policy.state_dict().items()):
        assert torch.equal(v, w), k


def test_the_tuner_inside_learn_rolls_a_rejected_mutation_back_and_logs_it(tmp_path):
    torch.set_num_threads(1)
    recipe = Recipe(metric="reference_return", mutations=(Mutation("learning_rate", bounds=(2.0, 3.0), cooldown=0),),
                    algorithm="random", epsilon=1e9, horizon=1, max_global_reject_streak=2)   # nothing can pass
    tuner = OnlineTuner(recipe, "active", seed=0)
    raw, train_env, model, cb = _build(eval_every=256)
    hook = TuneCallback(tuner, cb, raw, train_env, seed=0, total=4096, log_dir=str(tmp_path))
    from stable_baselines3.common.callbacks import CallbackList

    model.learn(2048, callback=CallbackList([cb, hook]))
    kinds = [a["action"] for a in hook.actions]
    assert kinds == ["apply", "rollback", "apply", "rollback"] and tuner.blocked == "2 rejections in a row"
    assert current_values(model, raw)["learning_rate"] == pytest.approx(1e-3)   # back to the original value
    applied = [json.loads(line) for line in (tmp_path / "tune.mutations.jsonl").read_text().splitlines()]
    judged = [json.loads(line) for line in (tmp_path / "tune.segments.jsonl").read_text().splitlines()]
    assert [m["old"] for m in applied] == [1e-3, 1e-3] and all(2e-3 <= m["new"] <= 3e-3 for m in applied)
    assert [s["decision"] for s in judged] == ["reject", "reject"]
    # each rollback went back to the step of its mutation: the rejected segments' steps were re-trained
    assert [a["step"] for a in hook.actions if a["action"] == "apply"] == [s["from_step"] for s in judged]
