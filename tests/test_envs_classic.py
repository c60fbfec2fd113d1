"""Batched Acrobot, Pendulum and MountainCar against gymnasium's Acrobot-v1, Pendulum-v1 and MountainCar-v0,
step by step."""
import math

import numpy as np
import pytest
import torch

import envs
from _gym_refs import gym_refs
from envs.tasks.pendulum import angle_normalize


def test_acrobot_steps_match_gymnasium_from_the_same_states():
    """Random states over the whole state space (some reach the goal): same next state, observation,
    termination and reward, to float64 rounding."""
    n, rng = 64, np.random.default_rng(0)
    env = envs.make("acrobot", n, device="cpu", dtype=torch.float64)
    env.reset()
    refs = gym_refs("Acrobot-v1", n)
    reached = 0
    for _ in range(40):
        states = rng.uniform([-math.pi, -math.pi, -4 * math.pi, -9 * math.pi],
                             [math.pi, math.pi, 4 * math.pi, 9 * math.pi], size=(n, 4))
        actions = rng.integers(0, 3, size=n)
        env.set_state(torch.tensor(states))
        obs, reward, terminated, truncated, info = env.step(torch.tensor(actions))
        reference = (env.terms.T * torch.tensor([-1.0, 0.0], dtype=torch.float64)).sum(1)
        for i, ref in enumerate(refs):
            ref.state = states[i].copy()
            ref_obs, ref_reward, ref_term, _, _ = ref.step(int(actions[i]))
            assert bool(terminated[i]) == ref_term and float(reference[i]) == ref_reward
            reached += ref_term
            mine = info["final_observation"][i].numpy() if ref_term else obs[i].numpy()
            np.testing.assert_allclose(mine, ref_obs, rtol=1e-6, atol=1e-6)  # float32 observations
            if not ref_term:
                np.testing.assert_allclose(env.state[i].numpy(), ref.state, rtol=1e-12, atol=1e-12)
    assert reached == 425  # steps that reached the goal, compared too (rng seed 0)


def test_acrobot_episodes_follow_gymnasium_to_the_same_end():
    """Whole episodes from the same starts under the same actions: the same goal step and return."""
    n = 16
    env = envs.make("acrobot", n, device="cpu", seed=3, dtype=torch.float64)
    env.reset()
    refs = gym_refs("Acrobot-v1", n)
    for i, ref in enumerate(refs):
        ref.state = env.state[i].numpy().copy()
    rng = np.random.default_rng(1)
    returns, lengths = [0.0] * n, [None] * n
    for t in range(500):
        # torque with the second joint's swing (noisy): pumps energy, reaching the goal in ~70-200 steps
        actions = np.where(env.state[:, 3].numpy() + 0.3 * rng.standard_normal(n) > 0, 2, 0)
        _, _, terminated, truncated, info = env.step(torch.tensor(actions))
        for i, ref in enumerate(refs):
            if lengths[i] is not None:
                continue
            _, r, term, _, _ = ref.step(int(actions[i]))
            returns[i] += r
            assert bool(terminated[i]) == term
            if term:
                lengths[i] = t + 1
                assert float(info["true_return"][i]) == returns[i] == -t
                assert float(info["is_success"][i]) == 1.0 and float(info["episode_length"][i]) == t + 1
    ended = [length for length in lengths if length is not None]
    assert len(ended) == n and max(ended) < 500


def test_acrobot_resets_in_gymnasiums_range():
    env = envs.make("acrobot", 4096, device="cpu", seed=0)
    env.reset()
    assert env.state.max() <= 0.1 and env.state.max() > 0.099 and env.state.min() >= -0.1 and env.state.min() < -0.099
    torch.testing.assert_close(env.obs[:, 0], torch.cos(env.state[:, 0]))
    torch.testing.assert_close(env.obs[:, 3], torch.sin(env.state[:, 1]))


def test_pendulum_steps_match_gymnasium_from_the_same_states():
    """Angles over several turns, velocities at the bound and torques beyond +-2 (clipped)."""
    n, rng = 64, np.random.default_rng(0)
    env = envs.make("pendulum", n, device="cpu", dtype=torch.float64)
    env.reset()
    refs = gym_refs("Pendulum-v1", n)
    for _ in range(40):
        states = rng.uniform([-3 * math.pi, -8.0], [3 * math.pi, 8.0], size=(n, 2))
        actions = rng.uniform(-3.0, 3.0, size=(n, 1)).astype(np.float32)
        env.set_state(torch.tensor(states))
        obs, reward, terminated, truncated, _ = env.step(torch.tensor(actions))
        assert not terminated.any() and not truncated.any()
        reference = (env.terms.T * torch.tensor([-1.0, -0.1, -0.001], dtype=torch.float64)).sum(1)
        for i, ref in enumerate(refs):
            ref.state = states[i].copy()
            ref_obs, ref_reward, _, _, _ = ref.step(actions[i])
            # gymnasium takes the float32 torque's terms in float32 (NumPy 2): ~1e-7 relative
            assert float(reference[i]) == pytest.approx(ref_reward, rel=1e-7, abs=1e-9)
            assert float(reward[i]) == pytest.approx(ref_reward, rel=1e-7, abs=1e-9)  # default weights = reference
            np.testing.assert_allclose(env.state[i].numpy(), ref.state, rtol=1e-7, atol=1e-8)
            np.testing.assert_allclose(obs[i].numpy(), ref_obs, rtol=1e-6, atol=1e-6)


def test_pendulum_truncates_every_episode_at_200_steps_with_gymnasiums_return():
    n = 8
    env = envs.make("pendulum", n, device="cpu", seed=5, dtype=torch.float64)
    env.reset()
    refs = gym_refs("Pendulum-v1", n)
    for i, ref in enumerate(refs):
        ref.state = env.state[i].numpy().copy()
    returns = np.zeros(n)
    for t in range(200):
        actions = np.full((n, 1), 2.0 if t % 20 < 10 else -2.0, dtype=np.float32)
        _, _, terminated, truncated, info = env.step(torch.tensor(actions))
        returns += [ref.step(actions[i])[1] for i, ref in enumerate(refs)]
        assert not terminated.any() and bool(truncated.all()) == (t == 199)
    np.testing.assert_allclose(info["true_return"].numpy(), returns, rtol=1e-7)
    assert (info["episode_length"] == 200).all()
    assert env.state[:, 0].abs().max() <= math.pi and env.state[:, 1].abs().max() <= 1.0  # the next episode


def test_angle_normalize_is_gymnasiums():
    x = torch.tensor([-7.0, -math.pi, -1.0, 0.0, 3.0, math.pi, 10.0], dtype=torch.float64)
    expected = [((v + np.pi) % (2 * np.pi)) - np.pi for v in x.tolist()]
    assert angle_normalize(x).tolist() == pytest.approx(expected, abs=1e-15)


@pytest.mark.parametrize("task", ["acrobot", "pendulum", "mountaincar"])
def test_the_driver_plans_a_search_on_the_task_from_its_own_space(task):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-m", "automl", "--env", task, "--mode", "stage", "--budget-hours", "0.3",
                          "--dry-run"], cwd=root, capture_output=True, text=True)  # a hang: pytest-timeout
    assert out.returncode == 0, out.stderr
    assert f"space: {root / 'configs' / 'spaces' / task}.yaml ({task}_batched_v1)" in out.stdout
    assert "default 1000000" in out.stdout and "reward#1" in out.stdout  # n_timesteps 1e6; reward terms searched


@pytest.mark.parametrize("task", ["acrobot", "pendulum"])
def test_an_ended_episode_restarts_from_a_fresh_draw_in_range(task):
    """Every env ends an episode at once (acrobot: put at the goal on its 8th step, as no episode reaches it in
    under 4; pendulum: its 200th step), twice: each restart is a new draw from the reset range."""
    n = 256
    env = envs.make(task, n, device="cpu", seed=0)
    first = env.reset().clone()
    goal = torch.tensor([math.pi, 0.0, 0.0, 0.0]).expand(n, 4)  # both links up: the tip at height 2
    starts = []
    for _ in range(2):
        for t in range(env.max_episode_steps):
            if task == "acrobot" and t == 7:
                env.set_state(goal)
            actions = torch.zeros(n, dtype=torch.int64) if task == "acrobot" else torch.zeros(n, 1)
            _, _, terminated, truncated, info = env.step(actions)
            if bool((terminated | truncated).all()):
                break
        assert bool((terminated | truncated).all()) and t == (7 if task == "acrobot" else 199)
        starts.append(env.state.clone())
    high = torch.tensor([0.1] * 4) if task == "acrobot" else torch.tensor([math.pi, 1.0])
    for start in starts:
        assert (start.abs() <= high).all() and (start.abs().amax(0) > 0.95 * high).all()  # the whole range
        assert (start.amin(0) < -0.9 * high).all()
    assert not torch.equal(starts[0], starts[1]) and not torch.equal(starts[0], first)
    assert (starts[0] - starts[1]).abs().min() > 0  # every env drew anew


def test_mountaincar_steps_match_gymnasium_from_the_same_states():
    """States over the whole track, at the speed bound and pressed against the left wall (where the velocity
    stops), some reaching the goal: same next state, observation, termination and reward, to float64 rounding."""
    n, rng = 64, np.random.default_rng(0)
    env = envs.make("mountaincar", n, device="cpu", dtype=torch.float64)
    env.reset()
    refs = gym_refs("MountainCar-v0", n)
    reached = walled = 0
    for _ in range(40):
        states = rng.uniform([-1.2, -0.07], [0.6, 0.07], size=(n, 2))
        states[: n // 8, 0] = -1.2  # at the left wall (moving left: stopped there)
        actions = rng.integers(0, 3, size=n)
        env.set_state(torch.tensor(states))
        obs, reward, terminated, truncated, info = env.step(torch.tensor(actions))
        assert (reward == -1.0).all()  # default weights = reference: -1 on every step, the goal step too
        for i, ref in enumerate(refs):
            ref.state = states[i].copy()
            ref_obs, ref_reward, ref_term, _, _ = ref.step(int(actions[i]))
            assert bool(terminated[i]) == ref_term and ref_reward == -1.0
            reached += ref_term
            walled += bool(ref.state[0] == -1.2 and ref.state[1] == 0)
            mine = info["final_observation"][i].numpy() if ref_term else obs[i].numpy()
            np.testing.assert_allclose(mine, ref_obs, rtol=1e-6, atol=1e-7)  # float32 observations
            if not ref_term:
                np.testing.assert_allclose(env.state[i].numpy(), ref.state, rtol=1e-14, atol=1e-15)
    assert reached == 82 and walled == 173  # both edge cases compared (rng seed 0)


def test_mountaincar_episodes_follow_gymnasium_to_the_same_end():
    """Whole episodes under a pumping policy (push with the velocity): the goal at gymnasium's step, with its
    return; the episode's shaping terms are summed along the way."""
    n = 16
    env = envs.make("mountaincar", n, device="cpu", seed=3, dtype=torch.float64)
    env.reset()
    refs = gym_refs("MountainCar-v0", n)
    for i, ref in enumerate(refs):
        ref.state = env.state[i].numpy().copy()
    lengths = [None] * n
    for t in range(200):
        actions = np.where(env.state[:, 1].numpy() >= 0, 2, 0)
        _, _, terminated, truncated, info = env.step(torch.tensor(actions))
        for i, ref in enumerate(refs):
            if lengths[i] is not None:
                continue
            _, _, term, _, _ = ref.step(int(actions[i]))
            assert bool(terminated[i]) == term
            if term:
                lengths[i] = t + 1
                assert float(info["true_return"][i]) == -(t + 1) and float(info["is_success"][i]) == 1.0
                assert float(info["terms"]["step"][i]) == t + 1
    assert all(length is not None and length < 200 for length in lengths)


def test_mountaincar_resets_at_rest_in_gymnasiums_range_and_restarts_fresh():
    n = 4096
    env = envs.make("mountaincar", n, device="cpu", seed=0)
    env.reset()
    pos = env.state[:, 0]
    assert pos.min() >= -0.6 and pos.min() < -0.599 and pos.max() <= -0.4 and pos.max() > -0.401
    assert (env.state[:, 1] == 0).all()
    torch.testing.assert_close(env.obs, env.state.float())
    before = env.state.clone()
    env.set_state(torch.tensor([0.49, 0.05]).expand(n, 2))  # every env reaches the goal on the next step
    _, _, terminated, _, info = env.step(torch.full((n,), 2, dtype=torch.int64))
    assert terminated.all() and (info["final_observation"][:, 0] >= 0.5).all()
    after = env.state
    assert (after[:, 0] >= -0.6).all() and (after[:, 0] <= -0.4).all() and (after[:, 1] == 0).all()
    assert (after[:, 0] - before[:, 0]).abs().min() > 0  # every env drew anew
