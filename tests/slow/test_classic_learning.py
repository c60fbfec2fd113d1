"""Slow learning checks on the batched Pendulum and MountainCar: the configs the 20-minute searches found
(README) learn the task on every seed where the untuned priors do not come close at that length."""
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


MC_FOUND = dict(  # progress/gym20_mountaincar/stage_s0/best.yaml (bench/compare_modes.py --env mountaincar --budget-min 20)
    learning_rate=2.41e-3, num_envs=32, rollouts=32, mini_batches=8, learning_epochs=3, discount_factor=0.95,
    lambda_param=0.9, ratio_clip=0.2, entropy_loss_scale=1e-4, grad_norm_clip=0.3, normalize=True,
    policy_hidden_layer_sizes=[64, 64])
MC_WEIGHTS = {"step": -1.324, "height": 0.0902, "speed": 0.2285}  # the reward generation's weights


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_found_config_reaches_the_mountaincar_goal_where_the_priors_never_do(seed):
    """MountainCar: the priors (configs/spaces/mountaincar.yaml) never find the goal (-200 at every evaluation);
    the config and reward weights the 20-minute search found reach it in ~110-130 steps within 110k steps."""
    kw = dict(env="mountaincar", seed=seed, total_steps=110_592, eval_every=36_864, device="cpu")
    found = train_seed_torch(MC_FOUND, reward_weights=MC_WEIGHTS, **kw)
    priors = train_seed_torch(PRIORS, **kw)
    assert found.state == priors.state == "complete"
    assert found.episode_reward_mean > -150, found.evals  # the reference return: -1 per step to the goal
    assert priors.episode_reward_mean == -200.0, priors.evals
