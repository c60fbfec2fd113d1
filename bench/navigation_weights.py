"""Do the navigation reward weights matter? SB3 PPO with the space's prior HPs, default vs better weights.

Trains PPO on ``envs.make_vec("navigation", ...)`` for ``--steps`` per seed, then evaluates the
deterministic policy on 1000 fresh envs (their own seed), one episode each: success rate
(the true metric) and mean return under the reference weights.

The PPO kwargs are built by hand from configs/spaces/navigation.yaml's priors, with the
conversion rules of automl/search/space.py's ``to_ppo_setup`` (rollouts -> n_steps, mini_batches ->
batch_size = n_steps * num_envs // mini_batches, ...); tests/test_envs_navigation.py checks
they equal the YAML. Usage:
    .venv/bin/python bench/navigation_weights.py --steps 2000000 --seeds 0 1 2 --workers 2
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SPACE = ROOT / "configs" / "spaces" / "navigation.yaml"

# The better weighting of envs/tasks/navigation.py's docstring: a bearable collision
# penalty, nearly free motion, a large goal bonus and a small time penalty, so the agent
# dares to drive to the goal and does not dawdle behind obstacles.
BETTER_WEIGHTS = {"progress": 1.0, "heading": 0.0, "collision": -5.0, "action_rate": -0.01,
                  "energy": -0.01, "goal": 25.0, "alive": -0.02}
WEIGHTS = {"default": None, "better": BETTER_WEIGHTS}


def prior_setup(path: Path = SPACE) -> tuple[dict, int, int]:
    """(SB3 PPO kwargs, num_envs, n_timesteps) equal to the space's priors and fixed values."""
    spec = yaml.safe_load(path.read_text())
    fixed = spec["fixed"]
    prior = {name: p["prior"] for name, p in spec["searchable"].items()}
    num_envs, n_steps = int(fixed["num_envs"]), int(prior["rollouts"])
    kwargs = {
        "learning_rate": float(prior["learning_rate"]),
        "n_steps": n_steps,
        "batch_size": n_steps * num_envs // int(prior["mini_batches"]),
        "n_epochs": int(prior["learning_epochs"]),
        "gamma": float(prior["discount_factor"]),
        "gae_lambda": float(prior["lambda_param"]),
        "clip_range": float(fixed["ratio_clip"]),
        "ent_coef": float(prior["entropy_loss_scale"]),
        "vf_coef": float(fixed["value_loss_scale"]),
        "max_grad_norm": float(fixed["grad_norm_clip"]),
        "policy_kwargs": {"net_arch": list(prior["policy_hidden_layer_sizes"])},
    }
    return kwargs, num_envs, int(fixed["n_timesteps"])


def evaluate(model, seed: int, n_envs: int = 1000) -> dict:
    """Deterministic policy, one episode per env: success rate and mean reference return."""
    import torch

    import envs

    env = envs.make("navigation", n_envs, device="cpu", seed=seed)
    obs = env.reset()
    finished = torch.zeros(n_envs, dtype=torch.bool)
    success = torch.zeros(n_envs)
    true_return = torch.zeros(n_envs)
    for _ in range(env.max_episode_steps):
        actions, _ = model.predict(obs.numpy(), deterministic=True)
        obs, _, terminated, truncated, info = env.step(torch.as_tensor(actions, dtype=torch.float32))
        first = (terminated | truncated) & ~finished
        success = torch.where(first, info["is_success"], success)
        true_return = torch.where(first, info["true_return"], true_return)
        finished |= first
    return {"success_rate": float(success.mean()), "true_return": float(true_return.mean())}


def run(job: tuple[str, int, int]) -> dict:
    """Train one (weights, seed) for ``steps`` and evaluate it."""
    name, seed, steps = job
    import torch
    from stable_baselines3 import PPO

    import envs

    torch.set_num_threads(1)
    kwargs, num_envs, _ = prior_setup()
    vec = envs.make_vec("navigation", num_envs, device="cpu", seed=seed, reward_weights=WEIGHTS[name])
    start = time.perf_counter()
    model = PPO("MlpPolicy", vec, seed=seed, device="cpu", verbose=0, **kwargs)
    model.learn(steps)
    wall = time.perf_counter() - start
    result = {"weights": name, "seed": seed, "steps": steps, "wall_s": round(wall, 1)}
    result.update(evaluate(model, seed=10_000 + seed))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="env steps per run (default: the space's n_timesteps)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--weights", nargs="+", default=list(WEIGHTS), choices=list(WEIGHTS))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    steps = args.steps or prior_setup()[2]
    jobs = [(w, s, steps) for w in args.weights for s in args.seeds]
    with mp.get_context("spawn").Pool(args.workers) as pool:
        results = []
        for result in pool.imap_unordered(run, jobs):
            print(json.dumps(result), flush=True)
            results.append(result)
    print(f"\n{'weights':8s} {'seeds':>10s} {'success (per seed)':>32s} {'mean':>6s} {'true_return':>11s}")
    for name in args.weights:
        rows = sorted((r for r in results if r["weights"] == name), key=lambda r: r["seed"])
        per_seed = " ".join(f"{r['success_rate']:.3f}" for r in rows)
        mean = sum(r["success_rate"] for r in rows) / len(rows)
        ret = sum(r["true_return"] for r in rows) / len(rows)
        print(f"{name:8s} {len(rows):>10d} {per_seed:>32s} {mean:6.3f} {ret:11.2f}")


if __name__ == "__main__":
    main()
