"""Batched CartPole against gymnasium's CartPole-v1: a hand-computed step and step-by-step parity."""
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs
from _gym_refs import gym_refs
from envs.tasks.cartpole import THETA_THRESHOLD



def test_one_step_from_rest_matches_hand_computation():
    env = envs.make("cartpole", 1, device="cpu", dtype=torch.float64)
    env.reset()
    env.set_state(torch.zeros(1, 4, dtype=torch.float64))
    env.step(torch.ones(1, dtype=torch.int64))
    # temp = 10 / 1.1; theta_acc = -temp / (0.5 (4/3 - 0.1/1.1)); x_acc = temp - 0.05 theta_acc / 1.1
    temp = 10.0 / 1.1
    theta_acc = -temp / (0.5 * (4.0 / 3.0 - 0.1 / 1.1))
    x_acc = temp - 0.05 * theta_acc / 1.1
    expected = [0.0, 0.02 * x_acc, 0.0, 0.02 * theta_acc]  # Euler: positions use old velocities
    assert env.state[0].tolist() == pytest.approx(expected, abs=1e-15)
    assert expected[1] == pytest.approx(0.195122, abs=1e-6) and expected[3] == pytest.approx(-0.292683, abs=1e-6)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
def test_parity_with_gymnasium_from_same_states(dtype, tol):
    n = 64
    rng = np.random.default_rng(0)
    env = envs.make("cartpole", n, device="cpu", dtype=dtype)
    env.reset()
    refs = gym_refs("CartPole-v1", n)
    for _ in range(60):
        # wide states, some beyond the thresholds, so termination is exercised too
        states = rng.uniform([-2.6, -3, -0.25, -3], [2.6, 3, 0.25, 3], size=(n, 4))
        actions = rng.integers(0, 2, size=n)
        env.set_state(torch.tensor(states, dtype=dtype))
        obs, _, terminated, _, info = env.step(torch.tensor(actions, dtype=torch.int64))
        for i, ref in enumerate(refs):
            ref.state = states[i].copy()
            ref.steps_beyond_terminated = None
            ref_obs, ref_reward, ref_term, _, _ = ref.step(int(actions[i]))
            assert bool(terminated[i]) == ref_term
            mine = info["final_observation"][i].numpy() if ref_term else obs[i].numpy()
            np.testing.assert_allclose(mine, ref_obs, rtol=tol, atol=tol)
            if dtype == torch.float64 and not ref_term:
                np.testing.assert_allclose(env.state[i].numpy(), ref.state, rtol=1e-12, atol=1e-14)


def test_episode_parity_and_lengths_follow_gymnasium():
    """Whole episodes from the same start: same trajectory, same termination step, same return."""
    n = 16
    env = envs.make("cartpole", n, device="cpu", seed=3, dtype=torch.float64)
    env.reset()
    start = env.state.clone()
    refs = gym_refs("CartPole-v1", n)
    for i, ref in enumerate(refs):
        ref.state = start[i].numpy().copy()
    rng = np.random.default_rng(1)
    lengths, returns = [None] * n, [0.0] * n
    for t in range(500):
        actions = rng.integers(0, 2, size=n)
        _, reward, terminated, truncated, info = env.step(torch.tensor(actions))
        for i, ref in enumerate(refs):
            if lengths[i] is not None:
                continue
            _, r, term, _, _ = ref.step(int(actions[i]))
            returns[i] += r
            assert bool(terminated[i]) == term
            if term:
                lengths[i] = t + 1
                assert info["episode_length"][i] == t + 1
                assert info["true_return"][i] == returns[i]
            else:
                np.testing.assert_allclose(env.state[i].numpy(), ref.state, rtol=1e-9, atol=1e-12)
    assert all(length is not None for length in lengths)


def test_truncates_at_500_steps_and_bounds_match():
    env = envs.make("cartpole", 2, device="cpu")
    env.reset()
    ref = gym.make("CartPole-v1")
    assert env.observation_space == ref.observation_space and env.action_space == ref.action_space
    assert env.max_episode_steps == ref.spec.max_episode_steps == 500
    assert math.isclose(THETA_THRESHOLD, ref.unwrapped.theta_threshold_radians)
    for t in range(500):
        env.set_state(torch.zeros(2, 4))  # keep it balanced forever
        _, _, terminated, truncated, info = env.step(torch.tensor([0, 1]))
    assert truncated.all() and not terminated.any()
    assert info["episode_length"].tolist() == [500, 500] and info["true_return"].tolist() == [500, 500]
