"""Env steps/s per task and size, raw and through the SB3 VecEnv adapter, beside gymnasium.

Baseline in the same run: gymnasium's numpy ``CartPoleVectorEnv`` at the same sizes.
Ratios printed: batched CartPole / gymnasium, and VecEnv adapter / raw for each task.
One torch thread; each figure is the best of ``--repeats`` timed blocks of ~``--seconds``.
Usage: .venv/bin/python bench/env_throughput.py [--sizes 256 1024 4096 16384]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import envs  # noqa: E402


def _best_rate(step, num_envs: int, seconds: float, repeats: int) -> float:
    """Best steps/s over ``repeats`` blocks; the block length is calibrated on a short warm-up."""
    for _ in range(20):
        step()
    start = time.perf_counter()
    for _ in range(20):
        step()
    per_call = (time.perf_counter() - start) / 20
    calls = max(10, int(seconds / max(per_call, 1e-7)))
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            step()
        best = max(best, calls * num_envs / (time.perf_counter() - start))
    return best


def _actions(env, num_envs: int, rng: np.random.Generator) -> np.ndarray:
    space = env.action_space
    if space.shape == ():
        return rng.integers(0, int(space.n), size=num_envs).astype(np.int64)
    return rng.uniform(space.low, space.high, size=(num_envs, *space.shape)).astype(np.float32)


def measure(num_envs: int, seconds: float, repeats: int) -> dict[str, float]:
    """steps/s for gymnasium, and raw / VecEnv for each task, at one size."""
    from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv

    rng = np.random.default_rng(0)
    rates = {}
    gym_env = CartPoleVectorEnv(num_envs=num_envs)
    gym_env.reset(seed=0)
    gym_actions = rng.integers(0, 2, size=num_envs)
    rates["gymnasium"] = _best_rate(lambda: gym_env.step(gym_actions), num_envs, seconds, repeats)
    for task in envs.TASKS:
        env = envs.make(task, num_envs, device="cpu", seed=0)
        env.reset()
        actions = _actions(env, num_envs, rng)
        tensor = torch.as_tensor(actions)
        rates[f"{task}_raw"] = _best_rate(lambda: env.step(tensor), num_envs, seconds, repeats)
        vec = envs.make_vec(task, num_envs, device="cpu", seed=0)
        vec.reset()
        rates[f"{task}_vec"] = _best_rate(lambda: vec.step(actions), num_envs, seconds, repeats)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 4096, 16384])
    parser.add_argument("--seconds", type=float, default=0.4, help="length of one timed block")
    parser.add_argument("--repeats", type=int, default=3, help="timed blocks per figure; the best is kept")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread, best of {args.repeats}; steps/s in millions")
    header = (f"{'envs':>6} {'gym np':>7} {'cart raw':>8} {'cart vec':>8} {'nav raw':>8} {'nav vec':>8}"
              f" {'cart/gym':>8} {'cartvec/gym':>11} {'cart vec/raw':>12} {'nav vec/raw':>11}")
    print(header)
    for n in args.sizes:
        r = measure(n, args.seconds, args.repeats)
        m = {k: v / 1e6 for k, v in r.items()}
        print(f"{n:>6} {m['gymnasium']:7.2f} {m['cartpole_raw']:8.2f} {m['cartpole_vec']:8.2f} "
              f"{m['navigation_raw']:8.2f} {m['navigation_vec']:8.2f} "
              f"{r['cartpole_raw'] / r['gymnasium']:7.2f}x {r['cartpole_vec'] / r['gymnasium']:10.2f}x "
              f"{r['cartpole_vec'] / r['cartpole_raw']:11.2f}x {r['navigation_vec'] / r['navigation_raw']:10.2f}x",
              flush=True)


if __name__ == "__main__":
    main()
