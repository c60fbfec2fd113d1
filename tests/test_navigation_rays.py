"""Navigation's ray casting against a float64 reference written from the geometry (issue 12's parity failure).

The CUDA parity test once failed on 1 of 4,352 ray readings (1.6e-3 off). The cause was the ray cast,
not float order in general: near-missed circles BEHIND the robot were pushed past the range by a ramp
(t = b + 1e4 * |disc|) that lifted their negative distance into [0, 3 m] (phantom obstacles, 426 of
1.6M readings here), and disc = b^2 - (|oc|^2 - r^2) cancelled terms of ~|oc|^2 (float32 error ~1e-5),
which the ramp amplified 1e4-fold. With disc = r^2 - (oc x d)^2 and a step for misses, float32 readings
match float64 to ~1e-5 everywhere, so CPU and CUDA (other rounding) agree within the parity tolerance.
"""
from __future__ import annotations

import math

import torch

import envs
from envs.tasks import navigation as nav


def reference_rays(env) -> torch.Tensor:
    """Ray readings [N, R] in float64 from the env's state: nearest circle ahead of the robot or wall, / range."""
    pose, obst = env._pose.double(), env._obst.double()       # [3, N], [3, K, N]
    offsets = torch.tensor(nav.RAY_DEG, dtype=torch.float64) * math.pi / 180
    angle = pose[2][None, :] + offsets[:, None]                # [R, N]
    dx, dy = angle.cos(), angle.sin()
    ox = obst[0][:, None, :] - pose[0]                         # [K, 1, N]
    oy = obst[1][:, None, :] - pose[1]
    r = obst[2][:, None, :]
    along = ox * dx + oy * dy
    across = ox * dy - oy * dx
    half_chord_sq = r * r - across * across
    t = along - half_chord_sq.clamp(min=0).sqrt()
    t = torch.where((half_chord_sq >= 0) & (t >= 0), t, torch.full_like(t, math.inf))
    wall_x = (torch.where(dx > 0, nav.ARENA, -nav.ARENA) - pose[0]) / dx
    wall_y = (torch.where(dy > 0, nav.ARENA, -nav.ARENA) - pose[1]) / dy
    hit = torch.minimum(t.amin(0), torch.minimum(wall_x, wall_y))
    return (hit.clamp(max=nav.RAY_RANGE) / nav.RAY_RANGE).T


def test_float32_rays_match_a_float64_reference():
    env = envs.make("navigation", 2048, device="cpu", seed=0)
    env.reset()
    gen = torch.Generator().manual_seed(0)
    worst = 0.0
    for _ in range(40):
        obs = env.step(torch.rand(2048, 2, generator=gen) * 2 - 1)[0]
        worst = max(worst, float((obs[:, 9:] - reference_rays(env)).abs().max()))
    assert worst < 5e-5  # before the fix: 0.99 (phantom obstacles behind the robot)


def test_circle_behind_the_robot_is_not_seen():
    """A circle just missed by the backward extension of a ray reads as nothing, not as an obstacle ahead."""
    env = envs.make("navigation", 1, device="cpu", seed=0)
    env.reset()
    far = [[nav.FAR, 0.0, 0.0]] * (nav.N_OBSTACLES - 1)
    # robot at the origin facing +x; circle centred 1.5 m behind, its edge 0.2 mm off the 0-degree ray's line
    behind = torch.tensor([[[-1.5, 0.5 + 2e-4, 0.5], *far]])
    env.set_state(torch.tensor([[0.0, 0.0, 0.0]]), torch.tensor([[2.0, 0.0]]), behind)
    assert env.obs[0, 9].item() == 1.0  # the forward ray sees the wall at 4 m > range: reads 1.0
    # the same circle ahead, just touched by the forward ray: reads its distance
    ahead = torch.tensor([[[1.5, 0.5 - 1e-3, 0.5], *far]])
    env.set_state(torch.tensor([[0.0, 0.0, 0.0]]), torch.tensor([[2.0, 0.0]]), ahead)
    expected = (1.5 - math.sqrt(0.5**2 - (0.5 - 1e-3) ** 2)) / nav.RAY_RANGE
    assert abs(env.obs[0, 9].item() - expected) < 1e-4
