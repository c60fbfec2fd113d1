"""Batched Acrobot: gymnasium Acrobot-v1's dynamics, bounds and termination, in torch.

Same constants ("book" equations), RK4 over one 0.2 s step with the torque held, angle
wrapping to [-pi, pi], velocity bounds (4 pi, 9 pi), reset range U(-0.1, 0.1), goal
(tip height -cos(t1) - cos(t1 + t2) > 1) and 500-step time limit. Actions are 0, 1, 2
(torque -1, 0, +1). Reward terms (configs/rewards/acrobot.yaml): ``step`` (1 on every
step that does not reach the goal; reference weight -1, so the reference return equals
gymnasium's return) and ``height`` (the tip's height in [-2, 2], for shaping). Reaching
the goal counts as success. ``dtype=torch.float64`` reproduces gymnasium's arithmetic for
parity tests; the default float32 is for speed.
"""
from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch

from ..batched import SUCCESS, BatchedEnv, PhysicalState

DT = 0.2
M1 = M2 = 1.0
L1 = 1.0
LC1 = LC2 = 0.5
I1 = I2 = 1.0
G = 9.8
MAX_VEL_1, MAX_VEL_2 = 4 * math.pi, 9 * math.pi
RESET_LOW, RESET_HIGH = -0.1, 0.1


def _derivatives(s: torch.Tensor, torque: torch.Tensor) -> torch.Tensor:
    """gymnasium's ``AcrobotEnv._dsdt`` ("book"), feature-major: s [4, N] -> d/dt s [4, N]."""
    theta1, theta2, dtheta1, dtheta2 = s[0], s[1], s[2], s[3]
    cos2, sin2 = torch.cos(theta2), torch.sin(theta2)
    d1 = M1 * LC1**2 + M2 * (L1**2 + LC2**2 + 2 * L1 * LC2 * cos2) + I1 + I2
    d2 = M2 * (LC2**2 + L1 * LC2 * cos2) + I2
    phi2 = M2 * LC2 * G * torch.cos(theta1 + theta2 - math.pi / 2.0)
    phi1 = (-M2 * L1 * LC2 * dtheta2**2 * sin2 - 2 * M2 * L1 * LC2 * dtheta2 * dtheta1 * sin2
            + (M1 * LC1 + M2 * L1) * G * torch.cos(theta1 - math.pi / 2) + phi2)
    ddtheta2 = ((torque + d2 / d1 * phi1 - M2 * L1 * LC2 * dtheta1**2 * sin2 - phi2)
                / (M2 * LC2**2 + I2 - d2**2 / d1))
    ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
    return torch.stack((dtheta1, dtheta2, ddtheta1, ddtheta2))


def _wrap(x: torch.Tensor) -> torch.Tensor:
    """gymnasium's ``wrap(x, -pi, pi)``: shift by whole turns into [-pi, pi]."""
    turns = torch.floor((x + math.pi) / (2 * math.pi))
    return torch.where((x > math.pi) | (x < -math.pi), x - turns * (2 * math.pi), x)


class Acrobot(PhysicalState, BatchedEnv):
    """gymnasium Acrobot-v1, batched. State rows: theta1, theta2, dtheta1, dtheta2."""

    task = "acrobot"
    max_episode_steps = 500
    POOL_REFRESH = 4  # from |theta| <= 0.1 no episode reaches the goal (the tip 3 higher) in under 4 steps
    _high = np.array([1.0, 1.0, 1.0, 1.0, MAX_VEL_1, MAX_VEL_2], dtype=np.float32)
    observation_space = gym.spaces.Box(-_high, _high, dtype=np.float32)
    action_space = gym.spaces.Discrete(3)

    def _build(self) -> None:
        n = self.num_envs
        self._state = self._zeros(4, n)
        self._pool = self._zeros(4, n)
        self._obs_buf = self._zeros(6, n, dtype=torch.float32)
        self._final_buf = self._zeros(6, n, dtype=torch.float32)
        self._vel_bound = self._tensor([[MAX_VEL_1], [MAX_VEL_2]])
        self.obs = self._obs_buf.T
        self.final_observation = self._final_buf.T

    def _observe(self, out: torch.Tensor | None = None) -> None:
        """Write the observations of the current state into ``out`` (default: the obs buffer), [6, num_envs]."""
        s, o = self._state, self._obs_buf if out is None else out
        o[0::2][:2] = torch.cos(s[0:2])  # rows 0, 2: cos t1, cos t2
        o[1::2][:2] = torch.sin(s[0:2])  # rows 1, 3: sin t1, sin t2
        o[4:6] = s[2:4]

    def _draw(self, out: torch.Tensor) -> None:
        out.uniform_(RESET_LOW, RESET_HIGH, generator=self._generator)

    def _advance(self, actions: torch.Tensor) -> torch.Tensor:
        torque = actions.to(self.dtype) - 1.0
        y0 = self._state
        k1 = _derivatives(y0, torque)
        k2 = _derivatives(y0 + DT / 2.0 * k1, torque)
        k3 = _derivatives(y0 + DT / 2.0 * k2, torque)
        k4 = _derivatives(y0 + DT * k3, torque)
        ns = y0 + DT / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        ns[0:2] = _wrap(ns[0:2])
        ns[2:4] = torch.maximum(torch.minimum(ns[2:4], self._vel_bound), -self._vel_bound)
        self._state.copy_(ns)
        height = -torch.cos(ns[0]) - torch.cos(ns[1] + ns[0])
        terminated = height > 1.0
        self.terms[0] = (~terminated).to(self.dtype)  # step: -1 per step in the reference reward, 0 at the goal
        self.terms[1] = height
        self._inc[SUCCESS] = terminated.to(self.dtype)
        return terminated
