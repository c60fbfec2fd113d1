"""Slow learning check: the good batched-CartPole config solves it on 3 of 3 seeds within 300k steps."""
import pytest

from automl.train.sb3_train import train_seed

pytestmark = pytest.mark.slow

GOOD_CARTPOLE = dict(
    num_envs=64, rollouts=32, mini_batches=4, learning_epochs=10, learning_rate=1e-3, learning_rate_schedule="linear",
    discount_factor=0.99, lambda_param=0.95, entropy_loss_scale=0.0,
)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_good_config_solves_batched_cartpole(seed):
    result = train_seed(GOOD_CARTPOLE, env="cartpole", seed=seed, total_steps=300_000, eval_every=20_000, device="cpu")
    assert result.state == "complete"
    assert result.episode_reward_mean >= 475, result.evals  # mean of the last 3 evaluations
