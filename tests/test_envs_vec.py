"""The SB3 VecEnv adapter: episode infos, terminal observations, PPO training on make_vec."""
import numpy as np
import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecEnv

import envs



def test_navigation_truncation_infos():
    vec = envs.make_vec("navigation", 8, device="cpu", seed=0)
    assert isinstance(vec, VecEnv) and vec.num_envs == 8
    assert vec.observation_space == envs.make("navigation", 1).observation_space
    obs = vec.reset()
    assert obs.shape == (8, 17) and obs.dtype == np.float32 and obs.flags["C_CONTIGUOUS"]
    still = np.zeros((8, 2), dtype=np.float32)
    for t in range(200):
        prev = obs
        obs, rewards, dones, infos = vec.step(still)
        assert rewards.shape == (8,) and dones.dtype == bool
        if t < 199:
            assert not dones.any() and all(info == {} for info in infos)
    assert dones.all()
    for i, info in enumerate(infos):
        assert set(info) == {"episode", "true_return", "terms", "terminal_observation", "TimeLimit.truncated", "is_success"}
        assert info["TimeLimit.truncated"] is True and info["is_success"] is False
        assert info["episode"]["l"] == 200 and info["episode"]["r"] == pytest.approx(0.0, abs=1e-4)
        assert set(info["terms"]) == set(envs.reward_config("navigation")["terms"])
        assert info["terms"]["alive"] == 200
        np.testing.assert_array_equal(info["terminal_observation"], prev[i])  # standing still
    assert not np.array_equal(obs, prev)


def test_cartpole_termination_is_not_truncation():
    vec = envs.make_vec("cartpole", 4, device="cpu", seed=0)
    vec.reset()
    for _ in range(100):
        obs, rewards, dones, infos = vec.step(np.ones(4, dtype=np.int64))
        if dones.any():
            break
    i = int(np.flatnonzero(dones)[0])
    assert infos[i]["TimeLimit.truncated"] is False and "is_success" not in infos[i]
    assert abs(infos[i]["terminal_observation"][2]) > 0.2 or abs(infos[i]["terminal_observation"][0]) > 2.4
    assert abs(obs[i]).max() <= 0.05  # auto-reset
    assert infos[i]["true_return"] == infos[i]["episode"]["r"] == infos[i]["episode"]["l"]


@pytest.mark.parametrize("task", envs.TASKS)
def test_seed_through_vecenv_api(task):
    # built with different seeds: only seed() can make their resets agree
    a, b = envs.make_vec(task, 4, device="cpu", seed=0), envs.make_vec(task, 4, device="cpu", seed=5)
    unseeded = envs.make_vec(task, 4, device="cpu", seed=0).reset()
    assert a.seed(11) == [11, 12, 13, 14]
    b.seed(11)
    first = a.reset()
    np.testing.assert_array_equal(first, b.reset())
    assert not np.array_equal(first, unseeded)  # seed() changed what a's reset returned
    # seed(11) means what seed=11 at construction means; another seed gives another start
    np.testing.assert_array_equal(first, envs.make_vec(task, 4, device="cpu", seed=11).reset())
    other = envs.make_vec(task, 4, device="cpu", seed=0)
    other.seed(12)
    assert not np.array_equal(other.reset(), first)
    # the seed is used once: the next reset goes on from there instead of repeating it
    again = a.reset()
    np.testing.assert_array_equal(again, b.reset())
    assert not np.array_equal(again, first)


@pytest.mark.parametrize("task", envs.TASKS)
def test_sb3_ppo_trains_on_make_vec(task):
    n = 8 if task in ("acrobot", "pendulum", "mountaincar") else 64  # 512 steps per env: a random episode's end (500, 200)
    vec = envs.make_vec(task, n, device="cpu", seed=0)
    model = PPO("MlpPolicy", vec, n_steps=512 // n, batch_size=512, n_epochs=2, seed=0, device="cpu", verbose=0)
    model.learn(4096)
    assert model.num_timesteps >= 4096
    assert len(model.ep_info_buffer) > 0  # episode infos reach SB3's statistics
    if task == "navigation":
        assert len(model.ep_success_buffer) > 0


def test_reused_empty_infos_are_rebuilt_after_a_consumer_writes():
    vec = envs.make_vec("navigation", 4, device="cpu", seed=0)
    vec.reset()
    still = np.zeros((4, 2), dtype=np.float32)
    _, _, _, infos = vec.step(still)
    infos[1]["mine"] = 1
    _, _, _, again = vec.step(still)
    assert again == [{}, {}, {}, {}] and infos[1] == {"mine": 1}
