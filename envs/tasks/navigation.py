"""VBot-like 2D navigation: reach a random goal past random circular obstacles.

The robot is a disc (radius 0.2 m) with unicycle dynamics in an 8 x 8 m walled arena.
Actions in [-1, 1]^2 command forward speed (x 0.5 m/s) and turn rate (x 1.5 rad/s); the
velocities follow the commands with a first-order lag. Each episode draws a start pose,
a goal and 4 circular obstacles (two near the start-goal segment, two anywhere; shrunk or
removed when they would crowd the start or the goal). 8 range rays (0, +-30, +-60, +-100
and 180 degrees, 3 m range) see obstacles and walls. Observation (17): bearing to goal
in the robot frame (cos, sin), distance / 8, world heading (cos, sin), v, w (normalised),
previous action (2), ray distances / range (8). The episode ends on success (goal within
0.4 m), on collision (obstacle or wall) or after 200 steps of 0.1 s (truncation).
Success = goal reached without collision: the true metric is the success rate.

Reward terms (configs/rewards/navigation.yaml): progress (distance gained / max step),
heading (cos of the bearing), collision (1 on impact), action_rate (|a - a_prev|^2),
energy (|a|^2), goal (1 on success), alive (1 per step).

The default weights are deliberately timid: with energy -0.75 against progress 1.0 the
best speed is 2/3 of the maximum (maximise a - 0.75 a^2), turning is costly, and
collision -100 makes detours wide, so far goals are missed at the 200-step limit
(energy -1.0 was too timid: 0.22 and 0.29 success on two seeds at 2M steps).

A better weighting (bench/navigation_weights.py: SB3 PPO with the space's prior HPs,
2M steps, deterministic evaluation on 1000 fresh episodes; seeds 0 / 1 / 2):
    progress 1.0, heading 0.0, collision -5.0, action_rate -0.01, energy -0.01,
    goal 25.0, alive -0.02
    success 0.870 / 0.616 / 0.611, mean 0.699  (defaults: 0.620 / 0.600 / 0.568, mean 0.596)
    (2026-12-06, tests/slow/test_navigation_learning.py; before the ray-casting fix of 2026-11-27 the
    same runs gave 0.836 / 0.856 / 0.655, mean 0.782, defaults 0.569, reference return 57.3 vs 46.0)
A first try (collision -10, goal 10, alive -0.01, otherwise the same) reached 0.733.
"""
from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch

from ..batched import SUCCESS, BatchedEnv

ARENA = 4.0            # walls at +-ARENA
SPAWN = 3.2            # start and goal drawn in [-SPAWN, SPAWN]^2
ROBOT_R, GOAL_R = 0.2, 0.4
V_MAX, W_MAX, DT, LAG = 0.5, 1.5, 0.1, 0.5
RAY_DEG = (0.0, 30.0, -30.0, 60.0, -60.0, 100.0, -100.0, 180.0)
RAY_RANGE = 3.0
N_OBSTACLES = 4
OBST_R = (0.25, 0.6)
CLEARANCE = 0.3        # free space kept around start (beyond the robot) and goal
FAR = 100.0            # where removed obstacles go
MISS = 1.0e4           # where ray misses (and circles behind the robot) read, past the range
OBS_DIM = 9 + len(RAY_DEG)


class Navigation(BatchedEnv):
    """Batched goal-reaching with obstacle avoidance; see the module docstring."""

    task = "navigation"
    max_episode_steps = 200
    # distance / 8 reaches 1.24 (opposite corners of the reachable square); everything else is in [-1, 1]
    _high = np.ones(OBS_DIM, dtype=np.float32)
    _high[2] = 1.25
    observation_space = gym.spaces.Box(-_high, _high, dtype=np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)

    def _build(self) -> None:
        n, k, r = self.num_envs, N_OBSTACLES, len(RAY_DEG)
        self._pose = self._zeros(3, n)        # x, y, heading
        self._vel = self._zeros(2, n)         # v, w
        self._act = self._zeros(2, n)         # current action
        self._prev = self._zeros(2, n)        # previous action
        self._goal = self._zeros(2, n)
        self._obst = self._zeros(3, k, n)     # cx, cy, radius
        self._dist = self._zeros(n)           # distance to goal
        self._cs = self._zeros(2, n)          # cos, sin heading
        self._g = self._zeros(2, n)           # goal - position
        self._oc = self._zeros(2, k, n)       # obstacle centre - position
        self._odist = self._zeros(k, n)
        self._ray_b = self._zeros(k, r, n)
        self._ray_t = self._zeros(k, r, n)
        self._ray_d = self._zeros(2, r, n)
        self._ray_w = self._zeros(2, r, n)
        self._ray_miss = self._zeros(k, r, n, dtype=torch.bool)
        self._ray_behind = self._zeros(k, r, n, dtype=torch.bool)
        self._arena = torch.full((2, r, n), ARENA, dtype=self.dtype, device=self.device)
        r2 = self._zeros(k, n)
        # views and scratch rows made once (a view costs about as much as a small op)
        self._views = {"centres": self._obst[0:2], "xy_col": self._pose[0:2, None, :],
                       "oc_x": self._oc[0, :, None, :], "oc_y": self._oc[1, :, None, :],
                       "r2": r2, "r2_col": r2.unsqueeze(1),
                       "hit": self._zeros(r, n), "wall": self._zeros(r, n)}
        self._tmp = self._zeros(4, n)
        rad = torch.tensor(RAY_DEG, dtype=torch.float64) * math.pi / 180
        self._ray_cos = self._tensor(rad.cos()[:, None].tolist())
        self._ray_sin = self._tensor(rad.sin()[:, None].tolist())
        self._vscale = self._tensor([[V_MAX], [W_MAX]])
        self._fresh = self._zeros(17, n)      # one episode's random draws per env
        low, high = self._draw_bounds()
        self._fresh_low, self._fresh_span = self._tensor(low)[:, None], self._tensor(high)[:, None]
        self._fresh_span -= self._fresh_low
        self._new = self._zeros(3 + 2 + 3 * k, n)   # next episode: pose, goal, obstacles
        self._obs_buf = self._zeros(OBS_DIM, n, dtype=torch.float32)
        self._final_buf = self._zeros(OBS_DIM, n, dtype=torch.float32)
        self.obs = self._obs_buf.T
        self.final_observation = self._final_buf.T
        self.terms[6] = 1.0  # alive: constant, never rewritten

    @staticmethod
    def _draw_bounds():
        lo = [-SPAWN, -SPAWN, -math.pi, -SPAWN, -SPAWN]   # start xy, heading, goal xy
        hi = [SPAWN, SPAWN, math.pi, SPAWN, SPAWN]
        lo += [0.3, 0.3, -0.7, -0.7]                      # on-segment obstacles: u, offset
        hi += [0.7, 0.7, 0.7, 0.7]
        lo += [-ARENA + 0.5] * 4                          # free obstacles: x, x, y, y
        hi += [ARENA - 0.5] * 4
        lo += [OBST_R[0]] * 4                             # radii
        hi += [OBST_R[1]] * 4
        return lo, hi

    # -- episode generation -----------------------------------------------------------------
    def _draw_episodes(self) -> None:
        """Fill ``self._new`` with a fresh episode for every env (used where envs reset)."""
        f = self._fresh.uniform_(generator=self._generator)
        f.mul_(self._fresh_span).add_(self._fresh_low)
        new = self._new
        start, goal = f[0:2], f[3:5]
        new[0:3] = f[0:3]
        new[3:5] = goal
        cx, cy, rad = new[5:9], new[9:13], new[13:17]
        seg = goal - start
        # two obstacles near the straight path: start + u * seg + offset * unit normal
        length = torch.hypot(seg[0], seg[1]).clamp_(min=1e-3)
        torch.addcmul(start[0], f[5:7], seg[0], out=cx[0:2])
        torch.addcmul(start[1], f[5:7], seg[1], out=cy[0:2])
        cx[0:2].addcmul_(f[7:9], -seg[1] / length)
        cy[0:2].addcmul_(f[7:9], seg[0] / length)
        cx[2:4] = f[9:11]
        cy[2:4] = f[11:13]
        rad.copy_(f[13:17])
        # shrink obstacles that crowd the start or the goal; remove those left too small
        room = torch.hypot(cx - start[0], cy - start[1]).sub_(ROBOT_R + CLEARANCE)
        room = torch.minimum(room, torch.hypot(cx - goal[0], cy - goal[1]).sub_(GOAL_R + CLEARANCE))
        torch.minimum(rad, room, out=rad)
        gone = (rad < OBST_R[0] * 0.6).to(self.dtype)
        cx.add_(gone, alpha=FAR)
        rad.clamp_(min=0.0)

    def _apply_new(self, weight: torch.Tensor | None) -> None:
        """Start the drawn episodes where ``weight`` is 1 (everywhere when None)."""
        k, new = N_OBSTACLES, self._new
        parts = ((self._pose, new[0:3]), (self._goal, new[3:5]), (self._obst, new[5:].view(3, k, -1)))
        for state, fresh in parts:
            if weight is None:
                state.copy_(fresh)
            else:
                state.lerp_(fresh, weight)
        for state in (self._vel, self._act, self._prev):
            state.mul_(0.0) if weight is None else state.mul_(1.0 - weight)

    def set_state(self, pose: torch.Tensor, goal: torch.Tensor, obstacles: torch.Tensor) -> None:
        """Place robots ([N, 3]: x, y, heading), goals ([N, 2]) and obstacles ([N, K, 3]: x, y, r), at rest."""
        self._pose.copy_(pose.T)
        self._goal.copy_(goal.T)
        self._obst.copy_(obstacles.permute(2, 1, 0))
        for state in (self._vel, self._act, self._prev):
            state.zero_()
        self._observe()

    def _reset_all(self) -> None:
        self._draw_episodes()
        self._apply_new(None)
        self._observe()

    # -- one step ---------------------------------------------------------------------------
    def _advance(self, actions: torch.Tensor) -> torch.Tensor:
        act, prev, terms, tmp = self._act, self._prev, self.terms, self._tmp
        torch.clamp(actions.T, -1.0, 1.0, out=act)
        torch.sub(act, prev, out=tmp[0:2])
        torch.sum(tmp[0:2].square_(), 0, out=terms[3])            # action_rate
        torch.sum(torch.mul(act, act, out=tmp[0:2]), 0, out=terms[4])  # energy
        prev.copy_(act)
        torch.mul(act, self._vscale, out=tmp[0:2])
        self._vel.lerp_(tmp[0:2], LAG)
        pose, cs = self._pose, self._cs
        pose[2].add_(self._vel[1], alpha=DT)
        torch.cos(pose[2], out=cs[0])
        torch.sin(pose[2], out=cs[1])
        pose[0:2].addcmul_(cs, self._vel[0], value=DT)
        dist_before = tmp[2].copy_(self._dist)
        self._observe()
        torch.sub(dist_before, self._dist, out=terms[0]).mul_(1.0 / (V_MAX * DT))  # progress
        # collision: any obstacle or wall closer than the robot's radius
        clear = torch.sub(self._odist, self._obst[2], out=self._odist).amin(0)
        wall = torch.abs(pose[0:2], out=tmp[0:2]).amax(0)
        collided = (clear < ROBOT_R) | (wall > ARENA - ROBOT_R)
        reached = (self._dist < GOAL_R) & ~collided
        torch.mul(self._obs_buf[0], 1.0, out=terms[1])             # heading: cos(bearing)
        terms[2].copy_(collided)
        terms[5].copy_(reached)
        self._inc[SUCCESS].copy_(terms[5])
        return collided | reached

    def _observe(self) -> None:
        """Distances, goal bearing and rays for the current state; writes ``self.obs``."""
        pose, cs, g, obs = self._pose, self._cs, self._g, self._obs_buf
        torch.cos(pose[2], out=cs[0])
        torch.sin(pose[2], out=cs[1])
        torch.sub(self._goal, pose[0:2], out=g)
        torch.hypot(g[0], g[1], out=self._dist)
        inv = torch.reciprocal(self._dist.clamp(min=1e-6))
        # goal in the robot frame: (cos h gx + sin h gy, -sin h gx + cos h gy) / dist
        torch.mul(cs, g, out=self._tmp[0:2])
        torch.sum(self._tmp[0:2], 0, out=obs[0]).mul_(inv)
        torch.mul(cs[0], g[1], out=obs[1]).addcmul_(cs[1], g[0], value=-1.0).mul_(inv)
        torch.mul(self._dist, 1.0 / (2 * ARENA), out=obs[2])
        obs[3:5] = cs
        torch.div(self._vel, self._vscale, out=obs[5:7])
        obs[7:9] = self._act
        self._cast_rays(obs[9:])

    def _cast_rays(self, out: torch.Tensor) -> None:
        """Distance along each ray to the nearest obstacle or wall, / range, in [0, 1]."""
        cs, oc, d, v = self._cs, self._oc, self._ray_d, self._views
        # ray directions: heading rotated by each ray's offset, [2, R, N]
        torch.mul(self._ray_cos, cs[0], out=d[0]).addcmul_(self._ray_sin, cs[1], value=-1.0)
        torch.mul(self._ray_cos, cs[1], out=d[1]).addcmul_(self._ray_sin, cs[0])
        torch.sub(v["centres"], v["xy_col"], out=oc)
        torch.hypot(oc[0], oc[1], out=self._odist)
        # circle hit: t = b - sqrt(disc), b = oc.d, disc = r^2 - (oc x d)^2 (|d| = 1). Not the textbook
        # b^2 - (|oc|^2 - r^2): the same number, but it cancels terms of up to |oc|^2 ~ 100 (float32
        # error ~1e-5), which near tangency made the reading depend on rounding (CPU vs CUDA).
        # A miss or a circle behind the robot (t < 0, also when inside it) reads MISS: a step, not a
        # ramp, since a ramp added to a negative t made near-missed circles BEHIND the robot read
        # as obstacles ahead (and amplified rounding in disc 1e4-fold).
        # All [K, R, N] work goes to preallocated buffers: fresh ones this large cost page faults.
        torch.mul(self._obst[2], self._obst[2], out=v["r2"])
        b, t, miss, behind = self._ray_b, self._ray_t, self._ray_miss, self._ray_behind
        torch.mul(v["oc_x"], d[0], out=b).addcmul_(v["oc_y"], d[1])
        torch.mul(v["oc_x"], d[1], out=t).addcmul_(v["oc_y"], d[0], value=-1.0)  # cross = oc x d
        torch.sub(v["r2_col"], t.square_(), out=t)                                 # disc
        torch.lt(t, 0.0, out=miss)
        t.clamp_(min=0.0).sqrt_()
        torch.sub(b, t, out=t)
        miss.logical_or_(torch.lt(t, 0.0, out=behind))
        t.masked_fill_(miss, MISS)
        hit = torch.amin(t, 0, out=v["hit"])
        # walls: distance to the wall the ray points at, per axis
        w = self._ray_w
        torch.copysign(self._arena, d, out=w).sub_(v["xy_col"]).div_(d)
        torch.minimum(hit, torch.amin(w, 0, out=v["wall"]), out=hit)
        torch.clamp(hit, max=RAY_RANGE, out=out).mul_(1.0 / RAY_RANGE)

    def _autoreset(self, done_f: torch.Tensor, keep: torch.Tensor) -> None:
        self._final_buf.copy_(self._obs_buf)
        self._draw_episodes()
        self._apply_new(done_f)
        self._observe()
