"""Slow learning check on the batched Pendulum: the config the 20-minute search found (README) learns the
swing-up within 330k steps on every seed; the untuned priors do not come close at that length."""
import pytest

from automl.train.torch_train import train_seed_torch

pytestmark = pytest.mark.slow

FOUND = dict(  # progress/gym20_pendulum/stage_s0/best.yaml (bench/compare_modes.py --env pendulum --budget-min 20)
    learning_rate=8.27e-4, num_envs=128, rollouts=128, mini_batches=8, learning_epochs=5, discount_factor=0.95,
    lambda_param=0.98, ratio_clip=0.2, entropy_loss_scale=0.0, grad_norm_clip=0.3, normalize=True,
    policy_hidden_layer_sizes=[128, 128])
PRIORS = dict(  # configs/spaces/pendulum.yaml's priors
    learning_rate=3e-4, num_envs=64, rollouts=32, mini_batches=8, learning_epochs=10, discount_factor=0.99,
    lambda_param=0.95, ratio_clip=0.2, entropy_loss_scale=0.0, grad_norm_clip=0.5, normalize=False,
    policy_hidden_layer_sizes=[64, 64])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_found_config_swings_pendulum_up_where_the_priors_do_not(seed):
    found = train_seed_torch(FOUND, env="pendulum", seed=seed, total_steps=331_776, eval_every=32_768, device="cpu")
    priors = train_seed_torch(PRIORS, env="pendulum", seed=seed, total_steps=331_776, eval_every=32_768, device="cpu")
    assert found.state == priors.state == "complete"
    assert found.episode_reward_mean > -350, found.evals  # mean of the last 3 evaluations
    assert priors.episode_reward_mean < -700, priors.evals
