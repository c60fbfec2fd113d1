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

from ..batched import BatchedEnv, PhysicalState

GRAVITY, MASSCART, MASSPOLE, LENGTH, FORCE_MAG, TAU = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
TOTAL_MASS = MASSPOLE + MASSCART
POLEMASS_LENGTH = MASSPOLE * LENGTH
X_THRESHOLD = 2.4
THETA_THRESHOLD = 12 * 2 * math.pi / 360
RESET_LOW, RESET_HIGH = -0.05, 0.05


class CartPole(PhysicalState, BatchedEnv):
    """gymnasium CartPole-v1, batched. State rows: x, x_dot, theta, theta_dot."""

    task = "cartpole"
    max_episode_steps = 500
    # An episode lasts at least 7 steps (the pole cannot fall from |theta| <= 0.05 faster), so a pool refreshed
    # every 4 steps still gives every episode fresh numbers while drawing a quarter of them: the generator is
    # the costliest op of a step.
    POOL_REFRESH = 4
    _high = np.array([X_THRESHOLD * 2, np.inf, THETA_THRESHOLD * 2, np.inf], dtype=np.float32)
    observation_space = gym.spaces.Box(-_high, _high, dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def _build(self) -> None:
        n = self.num_envs
        self._state = self._zeros(4, n)  # feature-major; obs are .T views
        self._pool = self._zeros(4, n)
        self._acc = self._zeros(2, n)    # x_acc, theta_acc
        self._tmp = self._zeros(4, n)
        # -l (4/3): the constant of the (negated) theta_acc denominator
        self._neg_den0 = torch.full((n,), -LENGTH * 4.0 / 3.0, dtype=self.dtype, device=self.device)
        self._thresholds = self._tensor([[X_THRESHOLD], [THETA_THRESHOLD]])
        self._term_scale = self._tensor([[1.0 / X_THRESHOLD], [1.0 / THETA_THRESHOLD]])
        obs_dtype = torch.float32
        self._obs_buf = self._state if self.dtype == obs_dtype else self._zeros(4, n, dtype=obs_dtype)
        self._final_buf = self._zeros(4, n, dtype=obs_dtype)
        self.obs = self._obs_buf.T
        self.final_observation = self._final_buf.T
        self.terms[0] = 1.0  # alive: constant, never rewritten
        # Views made once: creating a view costs about as much as a small op.
        s, t = self._state, self._tmp
        self._v = {"theta": s[2], "theta_dot": s[3], "pos": s[0::2], "vel": s[1::2],
                   "sin": t[0], "cos": t[1], "temp": t[2], "den": t[3], "abs": t[0:2],
                   "x_acc": self._acc[0], "theta_acc": self._acc[1], "shaping": self.terms[1:3]}

    def _observe(self, out: torch.Tensor | None = None) -> None:
        o = self._obs_buf if out is None else out
        if o is not self._state:  # float32 state: the observations are the state itself
            o.copy_(self._state)

    def _draw(self, out: torch.Tensor) -> None:
        out.uniform_(RESET_LOW, RESET_HIGH, generator=self._generator)

    def _advance(self, actions: torch.Tensor) -> torch.Tensor:
        v = self._v
        sin, cos, temp, den = v["sin"], v["cos"], v["temp"], v["den"]
        x_acc, theta_acc = v["x_acc"], v["theta_acc"]
        torch.sin(v["theta"], out=sin)
        torch.cos(v["theta"], out=cos)
        # temp = (force + pml theta_dot^2 sin) / M with force = +-F: (2a - 1) F / M + (pml / M) theta_dot^2 sin
        force = actions.to(self.dtype).mul_(2.0 * FORCE_MAG / TOTAL_MASS).sub_(FORCE_MAG / TOTAL_MASS)
        torch.mul(v["theta_dot"], v["theta_dot"], out=temp).mul_(sin)
        torch.add(force, temp, alpha=POLEMASS_LENGTH / TOTAL_MASS, out=temp)
        # theta_acc = (g sin - cos temp) / (l (4/3 - mp cos^2 / M)), both signs flipped
        torch.addcmul(self._neg_den0, cos, cos, value=LENGTH * MASSPOLE / TOTAL_MASS, out=den)
        torch.mul(cos, temp, out=theta_acc).sub_(sin, alpha=GRAVITY).div_(den)
        # x_acc = temp - pml theta_acc cos / M
        torch.mul(theta_acc, cos, out=x_acc)
        torch.sub(temp, x_acc, alpha=POLEMASS_LENGTH / TOTAL_MASS, out=x_acc)
        pos, vel = v["pos"], v["vel"]    # (x, theta), (x_dot, theta_dot)
        pos.add_(vel, alpha=TAU)         # Euler: positions use the old velocities
        vel.add_(self._acc, alpha=TAU)
        # shaping terms (x / 2.4)^2, (theta / 12 deg)^2; the alive row is constant
        torch.mul(pos, self._term_scale, out=v["shaping"]).square_()
        return torch.gt(torch.abs(pos, out=v["abs"]), self._thresholds).any(0)
