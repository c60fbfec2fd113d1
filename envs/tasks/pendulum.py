"""Batched Pendulum: gymnasium Pendulum-v1's dynamics, bounds and cost, in torch.

Same constants (g 10, m 1, l 1, dt 0.05), torque clipped to [-2, 2], angular velocity to
[-8, 8], semi-implicit Euler, reset U(-pi, pi) x U(-1, 1), 200-step time limit and no
termination. The action is a torque in [-2, 2]. Reward terms (configs/rewards/pendulum.yaml):
``angle`` (the angle from upright squared), ``velocity`` (angular velocity squared) and
``torque`` (torque squared), all taken before the step as gymnasium does; with the reference
weights -1, -0.1, -0.001 the reference return equals gymnasium's return.
``dtype=torch.float64`` reproduces gymnasium's arithmetic for parity tests.
"""
from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch

from ..batched import BatchedEnv, PhysicalState

G, M, L, DT = 10.0, 1.0, 1.0, 0.05
MAX_SPEED, MAX_TORQUE = 8.0, 2.0


def angle_normalize(x: torch.Tensor) -> torch.Tensor:
    """gymnasium's ``angle_normalize``: ((x + pi) mod 2 pi) - pi."""
    return torch.remainder(x + math.pi, 2 * math.pi) - math.pi


class Pendulum(PhysicalState, BatchedEnv):
    """gymnasium Pendulum-v1, batched. State rows: theta, theta_dot."""

    task = "pendulum"
    max_episode_steps = 200
    POOL_REFRESH = 8  # every episode lasts exactly 200 steps
    _high = np.array([1.0, 1.0, MAX_SPEED], dtype=np.float32)
    observation_space = gym.spaces.Box(-_high, _high, dtype=np.float32)
    action_space = gym.spaces.Box(-MAX_TORQUE, MAX_TORQUE, shape=(1,), dtype=np.float32)

    def _build(self) -> None:
        n = self.num_envs
        self._state = self._zeros(2, n)
        self._pool = self._zeros(2, n)
        self._reset_high = self._tensor([[math.pi], [1.0]])
        self._obs_buf = self._zeros(3, n, dtype=torch.float32)
        self._final_buf = self._zeros(3, n, dtype=torch.float32)
        self.obs = self._obs_buf.T
        self.final_observation = self._final_buf.T
        self._never = torch.zeros(n, dtype=torch.bool, device=self.device)

    def _observe(self, out: torch.Tensor | None = None) -> None:
        """Write the observations of the current state into ``out`` (default: the obs buffer), [3, num_envs]."""
        o, th = self._obs_buf if out is None else out, self._state[0]
        o[0] = torch.cos(th)
        o[1] = torch.sin(th)
        o[2] = self._state[1]

    def _draw(self, out: torch.Tensor) -> None:
        out.uniform_(-1.0, 1.0, generator=self._generator).mul_(self._reset_high)

    def _advance(self, actions: torch.Tensor) -> torch.Tensor:
        u = actions[:, 0].to(self.dtype).clamp(-MAX_TORQUE, MAX_TORQUE)
        th, thdot = self._state[0], self._state[1]
        self.terms[0] = angle_normalize(th).square()
        self.terms[1] = thdot.square()
        self.terms[2] = u.square()
        newthdot = (thdot + (3 * G / (2 * L) * torch.sin(th) + 3.0 / (M * L**2) * u) * DT).clamp(-MAX_SPEED, MAX_SPEED)
        self._state[0] = th + newthdot * DT
        self._state[1] = newthdot
        return self._never.clone()  # a fresh tensor: a caller's in-place edit must not stick
