"""RewardTermsWrapper on MuJoCo envs that report their reward terms in info."""
import gymnasium as gym
import mujoco  # noqa: F401 - a hard dependency of these tests (the dev extra installs it): no skip hides its absence
import pytest

import envs


def _run_episode(env, steps=30):
    env.reset(seed=0)
    env.action_space.seed(0)
    rewards = []
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        rewards.append((reward, info))
        if terminated or truncated:
            break
    return rewards, info


def test_hopper_terms_and_true_return():
    base = gym.make("Hopper-v5", max_episode_steps=30)
    env = envs.RewardTermsWrapper(gym.make("Hopper-v5", max_episode_steps=30),
                                  weights={"forward": 2.0, "ctrl": 0.5, "survive": 0.0})
    wrapped, info = _run_episode(env)
    original, _ = _run_episode(base)
    assert env.reward_terms == ("forward", "ctrl", "survive")
    for (reward, step_info), (true_reward, _) in zip(wrapped, original):
        assert reward == pytest.approx(2.0 * step_info["reward_forward"] + 0.5 * step_info["reward_ctrl"])
    assert set(info["terms"]) == {"forward", "ctrl", "survive"}
    assert info["true_return"] == pytest.approx(sum(r for r, _ in original))
    assert info["episode"]["r"] == pytest.approx(sum(r for r, _ in wrapped))
    assert info["episode"]["l"] == len(wrapped)


def test_default_weights_reproduce_the_original_reward():
    env = envs.RewardTermsWrapper(gym.make("HalfCheetah-v5", max_episode_steps=10))
    wrapped, info = _run_episode(env, steps=10)
    assert env.reward_terms == ("forward", "ctrl")
    assert info["episode"]["r"] == pytest.approx(info["true_return"])


def test_unknown_term_is_a_value_error():
    with pytest.raises(ValueError, match="speed: unknown reward term"):
        envs.RewardTermsWrapper(gym.make("Hopper-v5"), terms=("forward", "ctrl"), weights={"speed": 1.0})
