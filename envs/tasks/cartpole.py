"""Batched CartPole: gymnasium CartPole-v1's dynamics, bounds and termination, in torch.

Same constants, Euler integrator, thresholds (|x| > 2.4, |theta| > 12 deg), reset range
U(-0.05, 0.05) and 500-step time limit as gymnasium; actions are 0 (push left) / 1 (push
right). Reward terms (configs/rewards/cartpole.yaml): ``alive`` (1 per step, so the
reference return equals gymnasium's return), ``cart_position`` ((x / 2.4)^2) and
``pole_angle`` ((theta / 12 deg)^2) for shaping. ``dtype=torch.float64`` reproduces
gymnasium's float64 arithmetic for parity tests; the default float32 is for speed.
"""
from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch

from ..batched import BatchedEnv

GRAVITY, MASSCART, MASSPOLE, LENGTH, FORCE_MAG, TAU = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
TOTAL_MASS = MASSPOLE + MASSCART
POLEMASS_LENGTH = MASSPOLE * LENGTH
X_THRESHOLD = 2.4
THETA_THRESHOLD = 12 * 2 * math.pi / 360
RESET_LOW, RESET_HIGH = -0.05, 0.05
# A CartPole episode lasts at least 7 steps (the pole cannot fall from |theta| <= 0.05 faster),
# so refreshing the reset pool every 4 steps still gives every episode fresh random numbers
# while drawing a quarter of them: the generator is the costliest op of a step.
POOL_REFRESH = 4


class CartPole(BatchedEnv):
    """gymnasium CartPole-v1, batched. State rows: x, x_dot, theta, theta_dot."""

    task = "cartpole"
    max_episode_steps = 500
    _high = np.array([X_THRESHOLD * 2, np.inf, THETA_THRESHOLD * 2, np.inf], dtype=np.float32)
    observation_space = gym.spaces.Box(-_high, _high, dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def _build(self) -> None:
        n = self.num_envs
        self._state = self._zeros(4, n)  # feature-major; obs are .T views
        self._pool = self._zeros(4, n)
        self._acc = self._zeros(2, n)  # x_acc, theta_acc
        self._tmp = self._zeros(4, n)
        self._force = self._tensor([-FORCE_MAG, FORCE_MAG])
        self._thresholds = self._tensor([[X_THRESHOLD], [THETA_THRESHOLD]])
        self._term_scale = self._tensor([[1.0 / X_THRESHOLD], [1.0 / THETA_THRESHOLD]])
        obs_dtype = torch.float32
        self._obs_buf = self._state if self.dtype == obs_dtype else self._zeros(4, n, dtype=obs_dtype)
        self._final_buf = self._zeros(4, n, dtype=obs_dtype)
        self.obs = self._obs_buf.T
        self.terms[0] = 1.0  # alive: constant, never rewritten
        self.final_observation = self._final_buf.T

    def set_state(self, state: torch.Tensor) -> None:
        """Overwrite the physical state ([num_envs, 4]); for parity tests against gymnasium."""
        self._state.copy_(state.T)
        self._sync_obs()

    @property
    def state(self) -> torch.Tensor:
        """Physical state [num_envs, 4] (a view)."""
        return self._state.T

    def _sync_obs(self) -> None:
        if self._obs_buf is not self._state:
            self._obs_buf.copy_(self._state)

    def _reset_all(self) -> None:
        self._state.uniform_(RESET_LOW, RESET_HIGH, generator=self._generator)
        self._sync_obs()

    def _advance(self, actions: torch.Tensor) -> torch.Tensor:
        s, acc, tmp = self._state, self._acc, self._tmp
        theta, theta_dot = s[2], s[3]
        force = self._force[actions]  # index: bad action values fail loudly on CPU
        sin, cos, temp, den = tmp[0], tmp[1], tmp[2], tmp[3]
        torch.sin(theta, out=sin)
        torch.cos(theta, out=cos)
        # Same operation order as gymnasium, so float64 mode matches it to the last bit or two.
        # temp = (force + pml * theta_dot^2 * sin) / total_mass
        torch.mul(theta_dot, theta_dot, out=temp)
        temp.mul_(POLEMASS_LENGTH).mul_(sin).add_(force).div_(TOTAL_MASS)
        # theta_acc = (g sin - cos temp) / (l (4/3 - mp cos^2 / M))
        torch.mul(cos, cos, out=den)
        den.mul_(MASSPOLE).div_(TOTAL_MASS).neg_().add_(4.0 / 3.0).mul_(LENGTH)
        torch.mul(cos, temp, out=acc[1])
        torch.sub(sin.mul_(GRAVITY), acc[1], out=acc[1]).div_(den)
        # x_acc = temp - pml theta_acc cos / M
        torch.mul(acc[1], POLEMASS_LENGTH, out=acc[0])
        acc[0].mul_(cos).div_(TOTAL_MASS)
        torch.sub(temp, acc[0], out=acc[0])
        pos, vel = s[0::2], s[1::2]  # (x, theta), (x_dot, theta_dot)
        pos.add_(vel, alpha=TAU)     # Euler: positions use the old velocities
        vel.add_(acc, alpha=TAU)
        terms = self.terms           # rows: alive (constant 1), cart_position, pole_angle
        torch.mul(pos, self._term_scale, out=terms[1:3])
        terms[1:3].square_()
        torch.abs(pos, out=tmp[0:2])
        out = torch.gt(tmp[0:2], self._thresholds)
        return out[0] | out[1]

    def _autoreset(self, done_f: torch.Tensor, keep: torch.Tensor) -> None:
        if self._steps % POOL_REFRESH == 0:
            self._pool.uniform_(RESET_LOW, RESET_HIGH, generator=self._generator)
        self._final_buf.copy_(self._state)  # pre-reset observation (cast to float32)
        self._state.lerp_(self._pool, done_f)
        self._sync_obs()
