"""One batched env as a plain gymnasium ``Env`` (numpy in and out), for ``gym.make("automl/...")``."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch


class SingleEnv(gym.Env):
    """A batched task with ``num_envs=1`` on the CPU; auto-reset is hidden behind ``reset()``."""

    metadata = {"render_modes": []}

    def __init__(self, task: str, reward_weights=None, device: str = "cpu"):
        from . import make  # late: envs/__init__ registers this class

        self.batched = make(task, 1, device=device, reward_weights=reward_weights)
        self.observation_space = self.batched.observation_space
        self.action_space = self.batched.action_space
        self._discrete = isinstance(self.action_space, gym.spaces.Discrete)

    def reset(self, *, seed: int | None = None, options=None):
        super().reset(seed=seed)
        return self.batched.reset(seed=seed)[0].cpu().numpy().copy(), {}

    def step(self, action):
        dtype = torch.int64 if self._discrete else torch.float32
        actions = torch.as_tensor(np.asarray(action), dtype=dtype, device=self.batched.device)
        obs, reward, terminated, truncated, info = self.batched.step(actions.reshape(1, *self.action_space.shape))
        out = {}
        if bool(terminated[0] | truncated[0]):
            obs = info["final_observation"]
            out = {"true_return": float(info["true_return"][0]), "is_success": bool(info["is_success"][0] > 0.5),
                   "terms": {k: float(v[0]) for k, v in info["terms"].items()}}
        return obs[0].cpu().numpy().copy(), float(reward[0]), bool(terminated[0]), bool(truncated[0]), out
