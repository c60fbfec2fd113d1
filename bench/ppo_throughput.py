"""PPO throughput: batched CartPole (envs.make_vec) vs SB3's DummyVecEnv(8 x CartPole-v1), same run.

Prints figures and ratios against the DummyVecEnv baseline; never asserts times.
  1. whole-trial env steps/s at identical HPs (rollout 2048 = n_steps x n_envs, batch 256 / 2048,
     4 epochs), split into rollout collection and update time per env step;
  2. time-limit bootstrap: stock SB3 PPO vs automl.train.sb3_ppo.BatchedPPO collection with 1024 envs
     that hit a (shortened) time limit;
  3. executor: aggregate steps/s of n_jobs 1 vs 2 worker processes;
  4. wall-clock to solve CartPole (eval >= 475) through train_seed, including evaluation.
Each figure is the best of --repeats runs (the machine is shared; noise is +-20%).

    .venv/bin/python bench/ppo_throughput.py [--repeats 3] [--sections throughput,bootstrap,executor,solve]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gymnasium as gym  # noqa: E402
import torch as th  # noqa: E402
from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.monitor import Monitor  # noqa: E402
from stable_baselines3.common.vec_env import DummyVecEnv  # noqa: E402

import envs  # noqa: E402
from automl.core.config import PPOSetup  # noqa: E402
from automl.train.sb3_ppo import BatchedPPO  # noqa: E402
from automl.train.sb3_train import run_job, train_seed  # noqa: E402

ROLLOUT = 2048
DUMMY_ENVS, BATCHED_ENVS = 8, 256
SOLVE_TARGET = 475.0
# configs/spaces/cartpole.yaml's prior (the prototype's 64 envs x 32 steps, batch 512, 10 epochs,
# lr 1e-3, with rl-zoo3's gamma/lambda) on the batched env; rl-zoo3's tuned config on DummyVecEnv.
BATCHED_SOLVER = PPOSetup(
    ppo_kwargs=dict(n_steps=32, batch_size=512, n_epochs=10, gamma=0.98, gae_lambda=0.8, learning_rate=1e-3,
                    ent_coef=0.0),
    num_envs=64, learning_rate_schedule="linear",
)
ZOO_SOLVER = PPOSetup(
    ppo_kwargs=dict(n_steps=32, batch_size=256, n_epochs=20, gamma=0.98, gae_lambda=0.8, learning_rate=1e-3,
                    ent_coef=0.0, clip_range=0.2),
    num_envs=8, learning_rate_schedule="linear",
)


def dummy_cartpole(n: int = DUMMY_ENVS) -> DummyVecEnv:
    return DummyVecEnv([lambda: Monitor(gym.make("CartPole-v1"))] * n)


def timed_learn(model, steps: int) -> dict:
    """learn() with collect_rollouts/train wrapped in timers: seconds per env step of each part."""
    spent = {"collect": 0.0, "update": 0.0}

    def wrap(name, fn):
        def inner(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - start
        return inner

    model.collect_rollouts = wrap("collect", model.collect_rollouts)
    model.train = wrap("update", model.train)
    start = time.perf_counter()
    model.learn(steps)
    wall = time.perf_counter() - start
    n = model.num_timesteps
    return {"sps": n / wall, "collect_us": 1e6 * spent["collect"] / n, "update_us": 1e6 * spent["update"] / n}


def best(runs: list[dict], key: str = "sps") -> dict:
    """The fastest of N runs (all its figures, so the time split stays consistent): noise on a
    shared machine only ever slows a run down."""
    return max(runs, key=lambda r: r[key]) if key.endswith("sps") else min(runs, key=lambda r: r[key])


def throughput(batch: int, steps: int, repeats: int) -> tuple[dict, dict]:
    """(DummyVecEnv + stock PPO, batched env + BatchedPPO) at identical PPO hyperparameters."""
    hp = dict(batch_size=batch, n_epochs=4, learning_rate=3e-4, device="cpu", verbose=0)
    dummy = [timed_learn(PPO("MlpPolicy", dummy_cartpole(), n_steps=ROLLOUT // DUMMY_ENVS, seed=r, **hp), steps)
             for r in range(repeats)]
    batched = [timed_learn(BatchedPPO("MlpPolicy", envs.make_vec("cartpole", BATCHED_ENVS, device="cpu", seed=r),
                                      n_steps=ROLLOUT // BATCHED_ENVS, seed=r, **hp), steps) for r in range(repeats)]
    return best(dummy), best(batched)


def bootstrap(repeats: int, num_envs: int = 1024, time_limit: int = 10) -> tuple[float, float]:
    """Collection µs/env step, stock vs batched bootstrap, when many envs truncate together."""
    results = {}
    for cls in (PPO, BatchedPPO):
        runs = []
        for r in range(repeats):
            vec = envs.make_vec("cartpole", num_envs, device="cpu", seed=r)
            vec.env.max_episode_steps = time_limit  # bench only: make time limits frequent
            model = cls("MlpPolicy", vec, n_steps=64, batch_size=num_envs * 64, n_epochs=1, seed=r, device="cpu")
            runs.append(timed_learn(model, num_envs * 64 * 3))
        results[cls.__name__] = best(runs, "collect_us")["collect_us"]
    return results["PPO"], results["BatchedPPO"]


def _executor_round(ex, n_jobs: int, steps: int, tag: str) -> float:
    """Aggregate env steps/s of 2 x n_jobs batched CartPole jobs on ``ex``."""
    from automl.exec.executor import Done, Job

    kwargs = dict(params=BATCHED_SOLVER, env="cartpole", eval_every=10**9, eval_episodes=4, device="cpu")
    start = time.perf_counter()
    for i in range(2 * n_jobs):
        ex.submit(Job(f"{tag}j{i}", run_job, dict(kwargs, seed=i, total_steps=steps)))
    done = []
    while len(done) < 2 * n_jobs:
        done += [e.result for e in ex.poll(timeout=5.0) if isinstance(e, Done)]
    return sum(d.value["steps"] for d in done if d.value) / (time.perf_counter() - start)


def executor_sps(steps: int, repeats: int) -> tuple[float, float] | None:
    """Best aggregate steps/s at n_jobs 1 and 2, measured in alternating rounds so that both
    see the same background load (other users of the machine)."""
    try:
        from automl.exec.executor import LocalProcessExecutor
    except ImportError:
        return None
    with LocalProcessExecutor(n_jobs=1) as one, LocalProcessExecutor(n_jobs=2) as two:
        _executor_round(one, 1, 4096, "warm1")  # imports, torch._dynamo: once per worker
        _executor_round(two, 2, 4096, "warm2")
        rates = {1: [], 2: []}
        for r in range(repeats):
            for n, ex in ((1, one), (2, two)):
                rates[n].append(_executor_round(ex, n, steps, f"r{r}n{n}"))
    return max(rates[1]), max(rates[2])


class SolveWatch:
    """A channel that stops the run at the first evaluation >= target and notes when that was."""

    def __init__(self, target: float):
        self.target, self.start, self.solved = target, time.time(), None

    def report(self, payload: dict) -> None:
        if self.solved is None and payload["value"] >= self.target:
            self.solved = (time.time() - self.start, payload["steps"])

    def stop_requested(self) -> bool:
        return self.solved is not None

    def stop_reason(self) -> str:
        return "solved"


def time_to_solve(setup: PPOSetup, env: str, seeds: range, max_steps: int) -> list[tuple[float, int] | None]:
    """Per seed (seconds incl. evaluation, steps) to the first eval >= 475, or None."""
    out = []
    for seed in seeds:
        watch = SolveWatch(SOLVE_TARGET)
        train_seed(setup, env=env, seed=seed, total_steps=max_steps, eval_every=5_000, eval_episodes=32,
                   device="cpu", channel=watch)
        out.append(watch.solved)
    return out


def split(fig: dict) -> str:
    """Where a trial's time goes: collection, update, and the rest (logging, learn() bookkeeping)."""
    per_step = 1e6 / fig["sps"]
    parts = (fig["collect_us"], fig["update_us"], per_step - fig["collect_us"] - fig["update_us"])
    return ", ".join(f"{name} {100 * p / per_step:.0f}%" for name, p in zip(("collect", "update", "other"), parts))


def fmt_solve(runs: list) -> str:
    return ", ".join("unsolved" if r is None else f"{r[0]:.1f}s/{r[1] // 1000}k" for r in runs)


def print_executor(rates: tuple[float, float] | None) -> None:
    if rates is None:
        print("\nexecutor: automl/exec/executor.py not available")
        return
    one, two = rates
    print(f"\nexecutor, batched CartPole jobs: n_jobs 1 {one:.0f} steps/s, n_jobs 2 {two:.0f} steps/s, {two / one:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60_000, help="env steps per throughput run")
    parser.add_argument("--sections", default="throughput,bootstrap,executor,solve",
                        help="comma-separated subset of throughput,bootstrap,executor,solve")
    args = parser.parse_args()
    th.set_num_threads(1)  # as in the executor's workers: one torch thread per process
    train_seed(BATCHED_SOLVER, env="cartpole", seed=0, total_steps=2048, eval_episodes=2, device="cpu")  # warm imports

    sections = set(args.sections.split(","))
    print(f"PPO throughput, CartPole, rollout {ROLLOUT} = n_steps x n_envs, 4 epochs, best of {args.repeats}")
    print(f"{'what':<44}{'DummyVecEnv(8)':>16}{'batched(256)':>16}{'ratio':>9}")
    for batch in (256, 2048) if "throughput" in sections else ():
        dummy, batched = throughput(batch, args.steps, args.repeats)
        for key, label, unit in (("sps", "whole trial", "steps/s"), ("collect_us", "rollout collection", "µs/step"),
                                 ("update_us", "update", "µs/step")):
            ratio = batched[key] / dummy[key] if key == "sps" else dummy[key] / batched[key]
            print(f"{f'batch {batch}: {label} ({unit})':<44}{dummy[key]:>16.1f}{batched[key]:>16.1f}{ratio:>8.2f}x")
        print(f"  batched trial time: {split(batched)}; DummyVecEnv: {split(dummy)}")

    if "bootstrap" in sections:
        stock, fast = bootstrap(args.repeats)
        print("\ntime-limit bootstrap, 1024 envs truncating together (limit 10), collection µs/env step:")
        print(f"  stock SB3 PPO {stock:.2f}   BatchedPPO {fast:.2f}   speed-up {stock / fast:.2f}x")
    if "executor" in sections:
        print_executor(executor_sps(50_000, args.repeats))
    if "solve" not in sections:
        return
    zoo = time_to_solve(ZOO_SOLVER, "CartPole-v1", range(args.repeats), 200_000)
    fast_solve = time_to_solve(BATCHED_SOLVER, "cartpole", range(args.repeats), 300_000)
    print("\nwall-clock to solve CartPole (first eval >= 475, incl. evaluation), per seed:")
    print(f"  DummyVecEnv(8) + rl-zoo3 config: {fmt_solve(zoo)}")
    print(f"  batched(64) + space prior:       {fmt_solve(fast_solve)}")


if __name__ == "__main__":
    main()
