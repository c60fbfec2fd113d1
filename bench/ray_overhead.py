"""What the Ray executor costs against the local one: the same two seed jobs (the navigation prior, torch
trainer, ``--steps`` env steps each) on 2 workers, timed from submitting to both results, in one process.

The Ray side runs on a local cluster started here beforehand (``ray start --head --num-cpus 2``; its start
is not counted, as a cluster outlives runs); the executor's connection and its workers' start are counted,
as the local executor's worker start is. Each backend runs ``--rounds`` times, alternating, fresh each time.

    .venv/bin/python bench/ray_overhead.py [--steps 200000] [--rounds 2]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def jobs(steps: int, out: str):
    from automl.core.config import load_space
    from automl.exec.executor import Job
    from automl.run.trainers import job_fn
    from automl.search import space

    spec = load_space(str(space.default_space_path("navigation")))
    params = space.merged(spec, space.prior_params(spec))
    return [Job(f"seed{s}", job_fn("torch"), dict(params=params, env="navigation", seed=s, total_steps=steps,
                                                  checkpoint_path=f"{out}/ck{s}.pt", eval_every=steps // 4,
                                                  eval_episodes=16, device="cpu")) for s in (0, 1)]


def timed(backend: str, steps: int, **kw) -> tuple[float, list]:
    from automl.exec.executor import Done, make_executor

    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        ex = make_executor(backend, n_jobs=2, **kw)
        for job in jobs(steps, out):
            ex.submit(job)
        done = []
        while len(done) < 2:
            done += [e.result for e in ex.poll(0.5) if isinstance(e, Done)]
        wall = time.perf_counter() - t0
        ex.shutdown()
    if backend == "ray":
        import ray

        ray.shutdown()
    return wall, [(r.state, round(r.value["episode_reward_mean"], 3) if r.ok else r.reason) for r in done]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=200_000)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    ray_bin = str(Path(sys.executable).parent / "ray")
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": os.urandom(16).hex(),
           "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(ROOT)}
    os.environ.update({k: env[k] for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_USAGE_STATS_ENABLED")})
    temp = tempfile.mkdtemp(prefix="r", dir="/tmp")
    subprocess.run([ray_bin, "start", "--head", "--port=6390", "--node-ip-address=127.0.0.1", "--num-cpus=2",
                    f"--temp-dir={temp}", "--include-dashboard=false", "--disable-usage-stats"], check=True,
                   env=env, capture_output=True)
    try:
        walls: dict[str, list[float]] = {"local": [], "ray": []}
        for r in range(args.rounds):
            for backend in ("local", "ray"):
                kw = {"address": "127.0.0.1:6390"} if backend == "ray" else {}
                wall, results = timed(backend, args.steps, **kw)
                walls[backend].append(wall)
                print(f"round {r + 1} {backend:5} {wall:6.1f} s  {results}", flush=True)
        best = {b: min(w) for b, w in walls.items()}
        print(f"2 seed jobs x {args.steps} steps, 2 workers: local {best['local']:.1f} s, ray {best['ray']:.1f} s "
              f"(best of {args.rounds}); ray / local = {best['ray'] / best['local']:.3f} "
              f"({100 * (best['ray'] / best['local'] - 1):+.1f}%)")
    finally:
        subprocess.run([ray_bin, "stop", "--force"], env=env, capture_output=True)


if __name__ == "__main__":
    main()
