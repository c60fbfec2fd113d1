"""Torch-native PPO vs the SB3 path, CPU, one torch thread, navigation with the space's prior config.

Prints env steps/s of training (evaluation off: one evaluation at the end, 4 episodes) for
  1. automl.train.sb3_train.train_seed (SB3 BatchedPPO + TorchVecEnv) vs automl.train.torch_train.train_seed_torch
     at 256 and 2,048 envs (the prior's num_envs overridden; batch = rollout / mini_batches as the prior);
  2. 3 seeds batched (train_seeds_torch) vs three sequential train_seed_torch runs at 256 envs;
and the ratios. Each figure is the best of --repeats runs (the machine is shared: +-20% noise).
Never asserts times (DESIGN.md: speed is measured here, not in tests).

    .venv/bin/python bench/torch_ppo_throughput.py [--repeats 2] [--updates 6] [--device cpu]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from automl.core.config import load_space  # noqa: E402
from automl.search.space import default_space_path, prior_params  # noqa: E402
from automl.train.torch_train import train_seed_torch, train_seeds_torch  # noqa: E402
from automl.train.sb3_train import train_seed  # noqa: E402


def prior(num_envs: int) -> dict:
    """configs/spaces/navigation.yaml's prior with num_envs overridden."""
    spec = load_space(default_space_path("navigation"))
    params = {**spec.fixed, **prior_params(spec), "num_envs": num_envs}
    params.pop("n_timesteps", None)
    params.pop("seed", None)
    return params


def steps_per_s(fn, params: dict, steps: int, repeats: int, **kwargs) -> float:
    """Best env steps/s over ``repeats`` runs (train_s: the final evaluation excluded; the torch trainer's also
    counts building its envs and networks, the SB3 path's does not)."""
    best = 0.0
    for _ in range(repeats):
        out = fn(params, env="navigation", total_steps=steps, eval_every=10 * steps, eval_episodes=4, **kwargs)
        results = out if isinstance(out, list) else [out]
        assert all(r.state == "complete" for r in results), [r.reason for r in results]
        train_s = min(r.train_s for r in results)
        best = max(best, sum(r.steps for r in results) / train_s)
    return best


def sequential(params: dict, *, env: str, total_steps: int, eval_every: int, eval_episodes: int, device: str,
               seeds: list[int]):
    """Three single-seed runs, one after the other (their train_s summed, as one result)."""
    results = [train_seed_torch(params, env=env, seed=s, total_steps=total_steps, eval_every=eval_every,
                                eval_episodes=eval_episodes, device=device) for s in seeds]

    class Total:  # steps and train_s of the three runs together
        state, reason = "complete", None
        steps = sum(r.steps for r in results)
        train_s = sum(r.train_s for r in results)
    return Total()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--updates", type=int, default=6, help="PPO updates per measured run")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sections", default="single,seeds")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sections = set(args.sections.split(","))
    print(f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} thread; navigation prior "
          f"config; best of {args.repeats}; {args.updates} updates per run")
    if "single" in sections:
        print(f"{'envs':>6} {'SB3 path':>12} {'torch':>12} {'torch/SB3':>10}")
        for n in (256, 2048):
            params = prior(n)
            steps = args.updates * n * params["rollouts"]
            sb3 = steps_per_s(train_seed, params, steps, args.repeats, seed=0, device=args.device)
            mine = steps_per_s(train_seed_torch, params, steps, args.repeats, seed=0, device=args.device)
            print(f"{n:>6} {sb3:>12,.0f} {mine:>12,.0f} {mine / sb3:>9.2f}x", flush=True)
    if "seeds" in sections:
        params = prior(256)
        steps = args.updates * 256 * params["rollouts"]
        seeds = [0, 1, 2]
        seq = steps_per_s(sequential, params, steps, args.repeats, seeds=seeds, device=args.device)
        batched = steps_per_s(train_seeds_torch, params, steps, args.repeats, seeds=seeds, device=args.device)
        print(f"3 seeds at 256 envs: sequential {seq:,.0f} steps/s, batched {batched:,.0f} steps/s "
              f"(all seeds' steps / wall), batched/sequential {batched / seq:.2f}x")


if __name__ == "__main__":
    main()
