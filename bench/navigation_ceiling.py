"""How much success can any policy get on `navigation`? The task's ceiling, measured on its own episodes.

Draws episodes with the env's own generator (the same starts, goals and obstacles training and evaluation
see) and, for each, the shortest collision-free path for the robot's centre from its start to the goal
region (within GOAL_R of the goal), on a grid with 16-neighbour moves: obstacles grown by the robot's radius,
walls at ARENA - ROBOT_R. An episode is out of reach when that path, driven at full speed V_MAX, does not fit
in the 200 steps of 0.1 s; with the turn estimate it also pays a turn in place at W_MAX towards the path's
first direction (the robot starts at rest). The path is a grid path (at most ~2.6% longer than the true one
with 16 neighbours, so out-of-reach counts are slightly high); the turn in place is what a robot at rest does
best for large heading errors and over-charges small ones. So the two ceilings bracket the true one from
above and below only roughly: read them as estimates, not bounds.

    python bench/navigation_ceiling.py [--episodes 2000] [--seed 0] [--grid 0.04]

Prints the share of episodes in reach at full speed, and at a fraction of it (a policy that drives at 2/3 of
V_MAX, as the default reward weights favour, can reach only those).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from envs.tasks.navigation import (ARENA, DT, GOAL_R, ROBOT_R, V_MAX, W_MAX,  # noqa: E402
                                   Navigation)

STEPS = Navigation.max_episode_steps
MOVES = [(1, 0), (0, 1), (1, 1), (1, -1), (2, 1), (1, 2), (2, -1), (1, -2)]  # half of the 16 neighbours


def episodes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start poses [n, 3], goals [n, 2] and obstacles [n, K, 3] (x, y, r) as the env draws them."""
    env = Navigation(n, device="cpu", seed=seed)
    env.reset()
    return (env._pose.T.numpy().copy(), env._goal.T.numpy().copy(),
            env._obst.permute(2, 1, 0).numpy().copy())


class Grid:
    """A square grid over the arena and its 16-neighbour edges (built once)."""

    def __init__(self, h: float):
        lim = ARENA - ROBOT_R
        self.h, self.n = h, int(math.floor(2 * lim / h)) + 1
        self.xs = -lim + h * np.arange(self.n)
        idx = np.arange(self.n * self.n).reshape(self.n, self.n)
        src, dst, w = [], [], []
        for di, dj in MOVES:
            a = idx[max(0, -di):self.n - max(0, di), max(0, -dj):self.n - max(0, dj)]
            b = idx[max(0, -di) + di:self.n - max(0, di) + di, max(0, -dj) + dj:self.n - max(0, dj) + dj]
            src.append(a.ravel())
            dst.append(b.ravel())
            w.append(np.full(a.size, h * math.hypot(di, dj)))
        self.src, self.dst, self.w = np.concatenate(src), np.concatenate(dst), np.concatenate(w)
        gx, gy = np.meshgrid(self.xs, self.xs, indexing="ij")
        self.gx, self.gy = gx.ravel(), gy.ravel()

    def free(self, obst: np.ndarray) -> np.ndarray:
        ok = np.ones(self.gx.size, dtype=bool)
        for cx, cy, r in obst:
            if r > 0:
                ok &= np.hypot(self.gx - cx, self.gy - cy) >= r + ROBOT_R
        return ok

    def cell(self, x: float, y: float) -> int:
        i = int(round((x - self.xs[0]) / self.h))
        j = int(round((y - self.xs[0]) / self.h))
        return min(max(i, 0), self.n - 1) * self.n + min(max(j, 0), self.n - 1)

    def shortest(self, start: np.ndarray, goal: np.ndarray, obst: np.ndarray) -> tuple[float, float]:
        """Path length from start to the goal region, and the heading of its first leg (nan if none)."""
        ok = self.free(obst)
        # an edge is usable when both ends and its midpoint are free (steps are <= 2.3 h long)
        mx = (self.gx[self.src] + self.gx[self.dst]) / 2
        my = (self.gy[self.src] + self.gy[self.dst]) / 2
        mid_ok = np.ones(mx.size, dtype=bool)
        for cx, cy, r in obst:
            if r > 0:
                mid_ok &= np.hypot(mx - cx, my - cy) >= r + ROBOT_R
        use = ok[self.src] & ok[self.dst] & mid_ok
        size = self.gx.size
        g = coo_matrix((self.w[use], (self.src[use], self.dst[use])), shape=(size, size)).tocsr()
        s = self.cell(*start[:2])
        dist, pred = dijkstra(g, directed=False, indices=s, return_predecessors=True)
        off = math.hypot(self.gx[s] - start[0], self.gy[s] - start[1])
        near = np.hypot(self.gx - goal[0], self.gy - goal[1]) < GOAL_R
        if not near.any() or not np.isfinite(dist[near]).any():
            return math.inf, math.nan
        end = int(np.flatnonzero(near)[np.argmin(dist[near])])
        length = float(dist[end]) + off
        node = end  # walk back to the first leg that leaves the start
        first = node
        while node != s and node >= 0:
            first, node = node, int(pred[node])
        heading = math.atan2(self.gy[first] - start[1], self.gx[first] - start[0]) if first != s else start[2]
        return length, heading


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--grid", type=float, default=0.04, help="grid spacing in metres")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    pose, goal, obst = episodes(args.episodes, args.seed)
    grid = Grid(args.grid)
    horizon = STEPS * DT
    lengths, turns = np.empty(args.episodes), np.empty(args.episodes)
    for e in range(args.episodes):
        length, heading = grid.shortest(pose[e], goal[e], obst[e])
        lengths[e] = length
        err = abs(math.remainder(heading - pose[e, 2], 2 * math.pi)) if math.isfinite(length) else 0.0
        turns[e] = err / W_MAX
    blocked = ~np.isfinite(lengths)
    straight = np.hypot(*(goal - pose[:, :2]).T) - GOAL_R
    print(f"navigation: {args.episodes} episodes (seed {args.seed}), grid {args.grid} m, "
          f"{STEPS} steps x {DT} s, V_MAX {V_MAX} m/s, W_MAX {W_MAX} rad/s ({time.perf_counter() - t0:.0f} s)")
    print(f"  no collision-free path at all: {blocked.mean():.4f}")
    fin = lengths[~blocked]
    print(f"  shortest path to the goal region: median {np.median(fin):.2f} m, 99th pct "
          f"{np.percentile(fin, 99):.2f} m (straight line: median {np.median(straight):.2f} m)")
    for frac in (1.0, 0.9, 2 / 3):
        v = V_MAX * frac
        path_only = (lengths / v <= horizon).mean()
        with_turn = (lengths / v + turns <= horizon).mean()
        print(f"  in reach at {frac:.2f} x V_MAX: {path_only:.4f} (path only), {with_turn:.4f} (with a turn in place)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
