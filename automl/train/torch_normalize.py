"""SB3's VecNormalize for the torch trainer, on the device and per seed: running statistics and the normaliser.

Split from ``automl.train.torch_ppo`` so that module reads as the algorithm. Everything here works on
the seed axis (tensors [S, ...]) and keeps data on the env's device.
"""
from __future__ import annotations

import torch


class RunningStats:
    """SB3's RunningMeanStd per seed: mean/var [S, *shape] in float64, one count (all seeds see the same samples)."""

    def __init__(self, num_seeds: int, shape: tuple[int, ...], device: torch.device, epsilon: float = 1e-4):
        self.mean = torch.zeros(num_seeds, *shape, dtype=torch.float64, device=device)
        self.var = torch.ones(num_seeds, *shape, dtype=torch.float64, device=device)
        self.count = epsilon

    def update(self, x: torch.Tensor) -> None:
        """Fold in a batch x [S, B, *shape] (Chan et al.'s parallel update, as SB3)."""
        batch_var, batch_mean = torch.var_mean(x, dim=1, unbiased=False)
        n = x.shape[1]
        total = self.count + n
        delta = batch_mean.double() - self.mean
        self.mean.add_(delta, alpha=n / total)
        m2 = self.var * self.count + batch_var.double() * n + delta.square() * (self.count * n / total)
        self.var = m2 / total
        self.count = total


class Normalizer:
    """VecNormalize (training=True) for S seeds: observations clipped to +-10, rewards scaled by the std of
    the discounted return and clipped to +-10, epsilon 1e-8; the same order of updates as SB3's step_wait."""

    def __init__(self, num_seeds: int, num_envs: int, obs_dim: int, *, gamma: float, device: torch.device,
                 clip_obs: float = 10.0, clip_reward: float = 10.0, epsilon: float = 1e-8):
        self.obs_rms = RunningStats(num_seeds, (obs_dim,), device)
        self.ret_rms = RunningStats(num_seeds, (), device)
        self.returns = torch.zeros(num_seeds, num_envs, dtype=torch.float64, device=device)
        self.gamma: float | torch.Tensor = gamma  # one, or per seed [S, 1] once a trainer sets per-seed values
        self.clip_obs, self.clip_reward, self.epsilon = clip_obs, clip_reward, epsilon
        self._refresh()

    def _refresh(self) -> None:
        self.shift = self.obs_rms.mean.float().unsqueeze(1)                                  # [S, 1, D]
        self.scale = (self.obs_rms.var + self.epsilon).rsqrt_().float().unsqueeze(1)

    def observe(self, obs: torch.Tensor) -> None:
        """Update the statistics with new observations [S, N, D], then normalise them in place."""
        self.obs_rms.update(obs)
        self._refresh()
        self.normalize_(obs)

    def normalize_(self, obs: torch.Tensor) -> torch.Tensor:
        """Normalise observations [S, B, D] in place with the current statistics (no update)."""
        return obs.sub_(self.shift).mul_(self.scale).clamp_(-self.clip_obs, self.clip_obs)

    def reward_(self, reward: torch.Tensor, done: torch.Tensor) -> None:
        """Normalise rewards [S, N] in place; the discounted return restarts where ``done``."""
        self.returns.mul_(self.gamma).add_(reward)
        self.ret_rms.update(self.returns)
        scale = (self.ret_rms.var + self.epsilon).rsqrt().float().unsqueeze(1)  # [S, 1]
        reward.mul_(scale).clamp_(-self.clip_reward, self.clip_reward)
        self.returns.mul_(1.0 - done.double())
