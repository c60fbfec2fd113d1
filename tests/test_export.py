"""`automl export --format rlzoo`: a hyperparams file rl-zoo3 reads as its own (issue 11.8).

The run directory is synthetic: a best.yaml written as automl/run/heldout.py writes it, from the real
navigation space's priors through the real conversion (space.to_ppo_setup). The file is then read
the way rl-zoo3's ExperimentManager reads it (read_hyperparameters / _preprocess_hyperparams),
and the resulting SB3 PPO is built on the registered gymnasium env and trained for one rollout.
"""
from __future__ import annotations

import argparse
import importlib

import gymnasium as gym
import pytest
import torch
import yaml
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

import envs
from automl.search import space
from automl.core.config import load_space, to_ppo_setup
from automl.cli.export import export
from automl.run.state import dump_yaml

NAV_WEIGHTS = {"progress": 2.0, "collision": -50.0}
LAYERS = [32, 16]


def _best(env: str, *, schedule: str, weights: dict, learning_rate: float) -> dict:
    """best.yaml as heldout.write_best writes it: the navigation space's priors, small enough to train."""
    spec = load_space(space.CONFIGS_DIR / "spaces" / "navigation.yaml")
    params = space.merged(spec, {**space.prior_params(spec), "learning_rate": learning_rate,
                                 "policy_hidden_layer_sizes": LAYERS})
    params.update(num_envs=8, rollouts=16, mini_batches=4, normalize=True, learning_rate_schedule=schedule)
    setup = to_ppo_setup(params)
    return {"config_id": "config_017", "env": env, "search_space_id": spec.search_space_id, "params": params,
            "sb3": {"ppo_kwargs": setup.ppo_kwargs, "num_envs": setup.num_envs, "n_timesteps": 49152,
                    "normalize": setup.normalize, "learning_rate_schedule": setup.learning_rate_schedule},
            "reward_weights": weights, "heldout_score": {"mean": 0.81, "iqm": 0.83, "ci95": [0.7, 0.9], "n_seeds": 3}}


def _export(tmp_path, best: dict) -> tuple[str, dict]:
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.yaml").write_text(dump_yaml(best))
    path = export(str(run), fmt="rlzoo")
    return path.read_text(), yaml.safe_load(path.read_text())


@pytest.fixture
def navigation(tmp_path):
    best = _best("navigation", schedule="linear", weights=NAV_WEIGHTS, learning_rate=3e-4)
    text, data = _export(tmp_path, best)
    return best, text, data, tmp_path / "run" / "rlzoo_hyperparams.yml"


def test_the_file_looks_like_rl_zoo3s_own(navigation):
    best, text, data, _ = navigation
    lines = text.splitlines()
    assert lines[0] == "# rl-zoo3 hyperparameters exported by automl (config config_017, held-out IQM 0.83)"
    assert lines[1].endswith("python -m rl_zoo3.train --algo ppo --env automl/Navigation-v0 --gym-packages envs "
                             "-conf rlzoo_hyperparams.yml")
    assert lines[2] == "automl/Navigation-v0:"
    assert "  n_envs: 8" in lines and "  n_timesteps: 49152" in lines and "  policy: 'MlpPolicy'" in lines
    assert "  learning_rate: lin_0.0003" in lines and "  normalize: true" in lines
    assert '  policy_kwargs: "dict(net_arch=dict(pi=[32, 16], vf=[32, 16]))"' in lines
    assert '""' not in text and "None" not in text and "null" not in text  # no doubled quotes, no unset args


def _zoo_preprocess(hp: dict) -> tuple[dict, dict]:
    """What rl-zoo3's ExperimentManager does to one env's entry before PPO(...): returns (ppo kwargs, run)."""
    hp = dict(hp)
    run = {"n_envs": hp.pop("n_envs", 1), "n_timesteps": int(hp.pop("n_timesteps")),
           "normalize": hp.pop("normalize", False), "env_kwargs": hp.pop("env_kwargs", {}),
           "env_wrapper": hp.pop("env_wrapper", None)}
    lr = hp["learning_rate"]
    if isinstance(lr, str):  # rl-zoo3's SimpleLinearSchedule: progress_remaining * initial value
        kind, initial = lr.split("_")
        assert kind == "lin"
        hp["learning_rate"] = lambda progress, v=float(initial): progress * v
    if isinstance(hp.get("policy_kwargs"), str):
        hp["policy_kwargs"] = eval(hp["policy_kwargs"], {"nn": torch.nn})  # noqa: S307 - as rl-zoo3 does
    return hp, run


def test_rl_zoo3_preprocessing_builds_and_trains_ppo_on_the_registered_env(navigation):
    best, _, data, _ = navigation
    (env_id, hp), = data.items()
    assert env_id in gym.registry and gym.registry[env_id].kwargs["task"] == "navigation"
    assert isinstance(hp["n_timesteps"], int) and hp["n_timesteps"] == 49152
    assert isinstance(hp["n_envs"], int) and hp["n_envs"] == 8
    kwargs, run = _zoo_preprocess(hp)
    assert kwargs["policy_kwargs"] == {"net_arch": {"pi": LAYERS, "vf": LAYERS}}
    assert run["env_kwargs"] == {"reward_weights": NAV_WEIGHTS}
    env = make_vec_env(env_id, n_envs=run["n_envs"], seed=0, env_kwargs=run["env_kwargs"])
    assert env.envs[0].unwrapped.batched.reward_weights == {**envs.resolve_weights(
        envs.reward_config("navigation")["terms"], None), **NAV_WEIGHTS}
    env = VecNormalize(env, gamma=kwargs["gamma"]) if run["normalize"] else env
    model = PPO(env=env, seed=0, device="cpu", **kwargs)
    expected = best["sb3"]["ppo_kwargs"]
    assert (model.n_steps, model.batch_size, model.n_epochs) == (16, 32, expected["n_epochs"])  # 16*8/4 = 32
    assert (model.gamma, model.gae_lambda, model.ent_coef) == (expected["gamma"], expected["gae_lambda"],
                                                               expected["ent_coef"])
    layers = [m.out_features for m in model.policy.mlp_extractor.policy_net if isinstance(m, torch.nn.Linear)]
    assert layers == LAYERS and isinstance(model.policy.mlp_extractor.policy_net[1], torch.nn.Tanh)
    assert model.lr_schedule(1.0) == pytest.approx(3e-4) and model.lr_schedule(0.5) == pytest.approx(1.5e-4)
    model.learn(16 * 8)  # one rollout and one update
    assert model.num_timesteps == 128


def test_a_gymnasium_id_keeps_its_id_and_small_floats_stay_floats(tmp_path):
    best = _best("CartPole-v1", schedule="constant", weights={}, learning_rate=1e-5)
    text, data = _export(tmp_path, best)
    assert list(data) == ["CartPole-v1"] and "--gym-packages" not in text
    assert "  learning_rate: !!float 1e-05" in text.splitlines()  # PyYAML would read a bare 1e-05 as a string
    hp = data["CartPole-v1"]
    assert hp["learning_rate"] == 1e-5 and "env_kwargs" not in hp and "env_wrapper" not in hp
    kwargs, run = _zoo_preprocess(hp)
    model = PPO(env=make_vec_env("CartPole-v1", n_envs=run["n_envs"], seed=0), device="cpu", **kwargs)
    assert model.lr_schedule(0.5) == pytest.approx(1e-5)  # constant


def test_a_gymnasium_id_with_searched_weights_gets_automls_reward_wrapper(tmp_path):
    best = _best("CartPole-v1", schedule="constant", weights={"alive": 0.5}, learning_rate=1e-3)
    _, data = _export(tmp_path, best)
    wrapper = data["CartPole-v1"]["env_wrapper"]
    assert wrapper == [{"envs.RewardTermsWrapper": {"weights": {"alive": 0.5}}}]
    (name, kwargs), = wrapper[0].items()  # rl-zoo3's get_wrapper_class: import module, getattr class
    module, cls = name.rsplit(".", 1)
    assert getattr(importlib.import_module(module), cls) is envs.RewardTermsWrapper and list(kwargs) == ["weights"]


def test_rl_zoo3_itself_sets_up_the_experiment(navigation, tmp_path):
    exp_manager = pytest.importorskip("rl_zoo3.exp_manager")
    best, _, _, path = navigation
    exp = exp_manager.ExperimentManager(argparse.Namespace(), "ppo", "automl/Navigation-v0", str(tmp_path / "logs"),
                                        n_timesteps=128, eval_freq=-1, log_interval=-1, config=str(path), seed=0, verbose=0,
                                        device="cpu")
    model, saved = exp.setup_experiment()
    assert saved["n_envs"] == 8 and saved["learning_rate"] == "lin_0.0003"
    assert isinstance(model.get_env(), VecNormalize) and model.get_env().num_envs == 8
    assert (model.n_steps, model.batch_size) == (16, 32)
    assert model.lr_schedule(0.5) == pytest.approx(1.5e-4)
    assert model.get_env().venv.envs[0].unwrapped.batched.reward_weights["collision"] == -50.0
    exp.learn(model)
    assert model.num_timesteps == 128


def test_task_gym_ids_are_the_registered_ones():
    import gymnasium as gym

    import envs
    from automl.cli.export import TASK_GYM_IDS

    registered = {spec.kwargs["task"]: env_id for env_id, spec in gym.registry.items()
                  if spec.entry_point == "envs.single:SingleEnv"}
    assert TASK_GYM_IDS == registered and set(registered) == set(envs.TASKS)
