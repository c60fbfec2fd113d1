"""Navigation task: a step computed by hand, episode generation, and the space's PPO priors."""
import math
import sys
from pathlib import Path

import pytest
import torch
import yaml

import envs
from envs.tasks.navigation import FAR, N_OBSTACLES, RAY_DEG, RAY_RANGE

ROOT = Path(__file__).resolve().parent.parent



def _place(env):
    """Robot at the origin facing +x, goal 2 m ahead, one obstacle (r 0.3) 1 m ahead, others removed."""
    obstacles = torch.tensor([[FAR, FAR, 0.3]] * N_OBSTACLES).repeat(env.num_envs, 1, 1)
    obstacles[:, 0] = torch.tensor([1.0, 0.0, 0.3])
    env.set_state(torch.zeros(env.num_envs, 3), torch.tensor([[2.0, 0.0]]).repeat(env.num_envs, 1), obstacles)


def test_one_step_by_hand():
    env = envs.make("navigation", 2, device="cpu")
    env.reset()
    _place(env)
    obs, reward, terminated, truncated, _ = env.step(torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
    # v follows the command (0.5 m/s) with lag 0.5: v = 0.25, x = 0.025, distance 1.975
    terms = dict(zip(env.reward_terms, env.terms[:, 0].tolist()))
    assert terms == pytest.approx({"progress": 0.5, "heading": 1.0, "collision": 0.0, "action_rate": 1.0,
                                   "energy": 1.0, "goal": 0.0, "alive": 1.0}, abs=1e-5)
    w = env.reward_weights
    assert reward[0].item() == pytest.approx(0.5 * w["progress"] + w["heading"] + w["action_rate"] + w["energy"]
                                             + w["alive"], abs=1e-5)
    rays = dict(zip(RAY_DEG, obs[0, 9:].tolist()))
    assert rays[0.0] == pytest.approx((1.0 - 0.3 - 0.025) / RAY_RANGE, abs=1e-5)   # obstacle ahead
    assert rays[180.0] == 1.0 and rays[30.0] == 1.0                                # walls beyond range
    assert obs[0, :3].tolist() == pytest.approx([1.0, 0.0, 1.975 / 8.0], abs=1e-5)  # bearing cos, sin; dist / 8
    assert obs[0, 5].item() == pytest.approx(0.5) and not terminated.any() and not truncated.any()


def test_collision_and_success_end_the_episode():
    env = envs.make("navigation", 2, device="cpu")
    env.reset()
    _place(env)
    full = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    for _ in range(30):  # drive straight into the obstacle
        _, _, terminated, _, info = env.step(full)
        if terminated.any():
            break
    assert terminated.all() and (info["terms"]["collision"] == 1).all() and (info["is_success"] == 0).all()
    _place(env)
    env._obst[0:2] = FAR  # path cleared: drive to the goal
    for _ in range(60):
        _, _, terminated, _, info = env.step(full)
        if terminated.any():
            break
    assert terminated.all() and (info["is_success"] == 1).all() and (info["terms"]["goal"] == 1).all()
    assert (info["terms"]["progress"] * 0.05).tolist() == pytest.approx([2.0 - 0.4] * 2, abs=0.06)


def test_episodes_keep_start_and_goal_clear():
    env = envs.make("navigation", 4096, device="cpu", seed=0)
    env.reset()
    pos, goal, obst = env._pose[0:2], env._goal, env._obst
    start_gap = torch.hypot(obst[0] - pos[0], obst[1] - pos[1]) - obst[2]
    goal_gap = torch.hypot(obst[0] - goal[0], obst[1] - goal[1]) - obst[2]
    assert start_gap.min() > 0.2 + 0.29 and goal_gap.min() > 0.4 + 0.29
    assert (pos.abs() <= 3.2).all() and (goal.abs() <= 3.2).all()
    near_path = (obst[2, :2] > 0).float().mean()
    assert near_path > 0.3  # most episodes do have obstacles on the way


def test_space_priors_match_the_learning_check():
    sys.path.insert(0, str(ROOT / "bench"))
    import navigation_weights

    kwargs, num_envs, steps = navigation_weights.prior_setup()
    spec = yaml.safe_load((ROOT / "configs/spaces/navigation.yaml").read_text())
    prior = {k: v["prior"] for k, v in spec["searchable"].items()}
    assert num_envs == spec["fixed"]["num_envs"] and steps == spec["fixed"]["n_timesteps"] == 2_000_000
    assert kwargs["n_steps"] == prior["rollouts"] and kwargs["n_epochs"] == prior["learning_epochs"]
    assert kwargs["batch_size"] * prior["mini_batches"] == prior["rollouts"] * num_envs
    assert kwargs["learning_rate"] == float(prior["learning_rate"])
    assert kwargs["policy_kwargs"]["net_arch"] == prior["policy_hidden_layer_sizes"]
    assert len(spec["searchable"]) >= 4 and len(spec["constraints"]) == 2
    from automl.core.config import to_ppo_setup  # the project's own conversion must agree

    setup = to_ppo_setup({**spec["fixed"], **prior})
    for key in ("n_steps", "batch_size", "n_epochs", "gamma", "gae_lambda", "ent_coef", "clip_range"):
        assert setup.ppo_kwargs[key] == pytest.approx(kwargs[key]), key
    assert setup.num_envs == num_envs and math.isclose(setup.ppo_kwargs["learning_rate"], kwargs["learning_rate"])
