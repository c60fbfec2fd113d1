"""Batched MountainCar: gymnasium MountainCar-v0's dynamics, bounds and goal, in torch.

Same constants (force 0.001, gravity 0.0025, positions [-1.2, 0.6], speed bound 0.07), the
velocity stopped at the left wall, reset position U(-0.6, -0.4) at rest, goal position >= 0.5
with velocity >= 0, 200-step time limit. Actions are 0, 1, 2 (push left, none, right).
Reward terms (configs/rewards/mountaincar.yaml): ``step`` (1 on every step, the goal step
included; reference weight -1, so the reference return equals gymnasium's return) and, for
shaping, ``height`` (the track's height sin(3 x) after the step, in [-1, 1]) and ``speed``
(|velocity| / 0.07, in [0, 1]). Reaching the goal counts as success. ``dtype=torch.float64``
reproduces gymnasium's arithmetic for parity tests.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from ..batched import SUCCESS, BatchedEnv, PhysicalState

FORCE, GRAVITY = 0.001, 0.0025
MIN_POSITION, MAX_POSITION, MAX_SPEED = -1.2, 0.6, 0.07
GOAL_POSITION, GOAL_VELOCITY = 0.5, 0.0
RESET_LOW, RESET_HIGH = -0.6, -0.4


class MountainCar(PhysicalState, BatchedEnv):
    """gymnasium MountainCar-v0, batched. State rows: position, velocity."""

    task = "mountaincar"
    max_episode_steps = 200
    POOL_REFRESH = 8  # the car moves at most 0.07 per step: no episode reaches the goal (0.9 away) in under 13
    observation_space = gym.spaces.Box(np.array([MIN_POSITION, -MAX_SPEED], dtype=np.float32),
                                       np.array([MAX_POSITION, MAX_SPEED], dtype=np.float32), dtype=np.float32)
    action_space = gym.spaces.Discrete(3)

    def _build(self) -> None:
        n = self.num_envs
        self._state = self._zeros(2, n)
        self._pool = self._zeros(2, n)
        self._obs_buf = self._zeros(2, n, dtype=torch.float32)
        self._final_buf = self._zeros(2, n, dtype=torch.float32)
        self.obs = self._obs_buf.T
        self.final_observation = self._final_buf.T

    def _observe(self, out: torch.Tensor | None = None) -> None:
        """Write the observations of the current state into ``out`` (default: the obs buffer), [2, num_envs]."""
        (self._obs_buf if out is None else out).copy_(self._state)

    def _draw(self, out: torch.Tensor) -> None:
        out[0].uniform_(RESET_LOW, RESET_HIGH, generator=self._generator)
        out[1].zero_()

    def _advance(self, actions: torch.Tensor) -> torch.Tensor:
        push = actions.to(self.dtype) - 1.0
        position, velocity = self._state[0], self._state[1]
        velocity = (velocity + (push * FORCE + torch.cos(3 * position) * (-GRAVITY))).clamp(-MAX_SPEED, MAX_SPEED)
        position = (position + velocity).clamp(MIN_POSITION, MAX_POSITION)
        velocity.masked_fill_((position == MIN_POSITION) & (velocity < 0), 0.0)  # stopped at the left wall
        self._state[0] = position
        self._state[1] = velocity
        terminated = (position >= GOAL_POSITION) & (velocity >= GOAL_VELOCITY)
        self.terms[0] = 1.0  # step: -1 per step in the reference reward, the goal step included
        self.terms[1] = torch.sin(3 * position)
        self.terms[2] = velocity.abs() / MAX_SPEED
        self._inc[SUCCESS] = terminated.to(self.dtype)
        return terminated
