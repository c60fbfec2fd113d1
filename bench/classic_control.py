"""Training speed on the classic-control tasks: the batched torch ports against SB3 on gymnasium's own envs.

For Acrobot, Pendulum and MountainCar, in one process, one torch thread, evaluation off (one 4-episode evaluation
at the end, excluded):
  baseline: SB3 PPO (automl.train.sb3_train.train_seed) on gymnasium's Acrobot-v1 / Pendulum-v1 /
            MountainCar-v0 with
            configs/spaces/ppo_default.yaml's priors (DummyVecEnv of 8 envs x 256 steps): what a user
            runs without the batched tasks;
  batched:  the torch trainer (train_seed_torch) on envs' ``acrobot`` / ``pendulum`` /
            ``mountaincar`` with their own
            space's priors (the same SB3-default hyperparameters, 64 envs x 32 steps: 2,048 samples
            per update either way).
Prints env steps/s of training and the ratio batched / baseline. Best of --repeats runs; never asserts.

    .venv/bin/python bench/classic_control.py [--steps 65536] [--repeats 2] [--tasks acrobot pendulum mountaincar]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from automl.core.config import load_space  # noqa: E402
from automl.search.space import default_space_path, prior_params  # noqa: E402
from automl.train.sb3_train import train_seed  # noqa: E402
from automl.train.torch_train import train_seed_torch  # noqa: E402

TASKS = {"acrobot": "Acrobot-v1", "pendulum": "Pendulum-v1", "mountaincar": "MountainCar-v0"}


def priors(space_of: str) -> dict:
    spec = load_space(default_space_path(space_of))
    params = {**spec.fixed, **prior_params(spec)}
    params.pop("n_timesteps", None)
    params.pop("seed", None)
    return params


def rate(fn, params: dict, env: str, steps: int, repeats: int) -> float:
    best = 0.0
    for _ in range(repeats):
        r = fn(params, env=env, seed=0, total_steps=steps, eval_every=10 * steps, eval_episodes=4, device="cpu")
        assert r.state == "complete", r.reason
        best = max(best, r.steps / r.train_s)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=65536)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{'task':<12} {'SB3 on gymnasium (steps/s)':>27} {'torch on batched (steps/s)':>27} {'ratio':>7}")
    for task in args.tasks:
        gym_id = TASKS[task]
        base = rate(train_seed, priors(gym_id), gym_id, args.steps, args.repeats)
        mine = rate(train_seed_torch, priors(task), task, args.steps, args.repeats)
        print(f"{task:<12} {base:>27,.0f} {mine:>27,.0f} {mine / base:>6.1f}x", flush=True)


if __name__ == "__main__":
    main()
