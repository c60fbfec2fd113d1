"""The LR range test on PPO's own loss, and using its bounds as the learning_rate search range.

    result = ppo_lr_range(env="cartpole", params={"num_envs": 64, "rollouts": 32})
    space = SearchSpace().add_float("learning_rate", *result.suggested, log=True)
    spec = with_lr_range(load_space("configs/spaces/cartpole.yaml"), result.suggested)

One rollout is collected with SB3 PPO (the project's BatchedPPO, built from the same PPOSetup as
training); then each range-test step is one PPO minibatch update (clipped surrogate + value +
entropy loss, gradient clipping, as in SB3's PPO.train), cycling through the rollout.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import torch
import torch.nn.functional as F

from automl.api.lr_finder import LearningRateFinder, LRFinderConfig, LRFinderResult
from automl.core.config import ParamSpec, SpaceSpec
from automl.core.errors import AutoMLError

PPO_LR_CONFIG = LRFinderConfig(start_lr=1e-6, end_lr=10.0, num_steps=100)


class _Epochs:
    """An iterable over the rollout buffer's minibatches; each pass is a new shuffled epoch."""

    def __init__(self, buffer, batch_size: int):
        self.buffer, self.batch_size = buffer, batch_size

    def __iter__(self):
        return self.buffer.get(self.batch_size)


def _ppo_loss(model):
    """loss_fn(minibatch) computing SB3 PPO's training loss for `model` (a freshly collected rollout)."""
    clip_range = float(model.clip_range(1.0))
    clip_vf = float(model.clip_range_vf(1.0)) if model.clip_range_vf is not None else None
    discrete = model.action_space.__class__.__name__ == "Discrete"

    def loss_fn(data) -> torch.Tensor:
        actions = data.actions.long().flatten() if discrete else data.actions
        values, log_prob, entropy = model.policy.evaluate_actions(data.observations, actions)
        values = values.flatten()
        adv = data.advantages
        if model.normalize_advantage and len(adv) > 1:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        ratio = torch.exp(log_prob - data.old_log_prob)
        policy_loss = -torch.min(adv * ratio, adv * torch.clamp(ratio, 1 - clip_range, 1 + clip_range)).mean()
        if clip_vf is not None:
            values = data.old_values + torch.clamp(values - data.old_values, -clip_vf, clip_vf)
        value_loss = F.mse_loss(data.returns, values)
        entropy_loss = -torch.mean(-log_prob) if entropy is None else -torch.mean(entropy)
        return policy_loss + model.ent_coef * entropy_loss + model.vf_coef * value_loss

    return loss_fn


def _collect_rollout(model) -> None:
    """Fill model.rollout_buffer once, through SB3's own collection loop."""
    total, callback = model._setup_learn(model.n_steps * model.n_envs, callback=None, progress_bar=False)
    callback.on_training_start(locals(), globals())
    if not model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=model.n_steps):
        raise AutoMLError("ppo_lr_range: rollout collection stopped early (allowed: a plain env)")


def ppo_lr_range(env: str = "cartpole", params: Mapping | None = None, config: LRFinderConfig | None = None,
                 *, seed: int = 0, device: str = "cpu") -> LRFinderResult:
    """Range test of the learning rate on PPO's loss over one rollout of `params` (either naming) on `env`."""
    from automl.train.sb3_ppo import BatchedPPO  # torch/SB3 only when the test is run
    from automl.core.config import to_ppo_setup
    from automl.train.sb3_train import make_env_pair
    from envs import resolve_device

    setup = to_ppo_setup(dict(params or {}), path="ppo_lr_range: params")
    device = str(resolve_device(device))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as train_seed: a small MLP loses far more to thread contention than it gains
    train_env, eval_env, _ = make_env_pair(env, num_envs=setup.num_envs, eval_episodes=1, seed=seed,
                                           device=device, reward_weights=None)
    eval_env.close()
    try:
        kwargs = dict(setup.ppo_kwargs)
        model = BatchedPPO(kwargs.pop("policy", "MlpPolicy"), train_env, seed=seed, device=device, verbose=0, **kwargs)
        _collect_rollout(model)
        finder = LearningRateFinder(model.policy, model.policy.optimizer, config or PPO_LR_CONFIG)

        def clip() -> None:
            torch.nn.utils.clip_grad_norm_(model.policy.parameters(), model.max_grad_norm)

        return finder.find_with(_Epochs(model.rollout_buffer, model.batch_size), _ppo_loss(model), before_step=clip)
    finally:
        train_env.close()
        torch.set_num_threads(threads)


def with_lr_range(spec: SpaceSpec, bounds: tuple[float, float]) -> SpaceSpec:
    """A copy of `spec` whose learning_rate is searched log-uniformly over `bounds` (e.g. suggested_lr()).

    A fixed learning_rate becomes searchable; a prior outside the new range is dropped.
    """
    low, high = (float(b) for b in bounds)
    if not 0 < low < high:
        raise AutoMLError(f"{spec.path}: learning_rate: range ({low}, {high}) (allowed: 0 < low < high)")
    old = next((p for p in spec.params if p.name == "learning_rate"), None)
    prior = old.prior if old is not None and old.prior is not None and low <= old.prior <= high else None
    if prior is None and spec.fixed.get("learning_rate") is not None and low <= spec.fixed["learning_rate"] <= high:
        prior = spec.fixed["learning_rate"]
    new = ParamSpec("learning_rate", "loguniform", low, high, log=True, prior=prior)
    params = tuple(new if p.name == "learning_rate" else p for p in spec.params) if old else (new, *spec.params)
    fixed = {k: v for k, v in spec.fixed.items() if k != "learning_rate"}
    return dataclasses.replace(spec, fixed=fixed, params=params)
