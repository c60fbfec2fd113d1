"""Learning parity of the two trainers on navigation: the space's priors, 2M steps, 3 seeds.

The SB3 path (``automl.train.sb3_train.train_seed``, one process per seed) against the torch trainer
(``automl.train.torch_train.train_seeds_torch``, the 3 seeds as one batched job), each seed evaluated once
at the end on 1000 eval episodes (deterministic policy). Prints per-seed success, the means, the
SB3 path's 95% bootstrap CI and whether the torch mean lies inside it (issue 12's target).
Results append to progress/bench/trainer_parity.jsonl; a rerun skips what is there (resumable).

    .venv/bin/python bench/trainer_parity.py [--steps 2000000] [--seeds 0 1 2] [--workers 2]
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
OUT = ROOT / "progress" / "bench" / "trainer_parity.jsonl"


def params() -> dict:
    spec = yaml.safe_load((ROOT / "configs" / "spaces" / "navigation.yaml").read_text())
    return {**spec["fixed"], **{k: p["prior"] for k, p in spec["searchable"].items()}}


def run(job: tuple[str, tuple[int, ...], int, int]) -> list[dict]:
    trainer, seeds, steps, episodes = job
    import torch

    torch.set_num_threads(1)
    kw = dict(env="navigation", total_steps=steps, eval_every=steps, eval_episodes=episodes, device="cpu")
    start = time.perf_counter()
    if trainer == "sb3":
        from automl.train.sb3_train import train_seed

        results = [train_seed(params(), seed=seeds[0], **kw)]
    else:
        from automl.train.torch_train import train_seeds_torch

        results = train_seeds_torch(params(), seeds=list(seeds), **kw)
    wall = time.perf_counter() - start
    return [{"trainer": trainer, "seed": r.seed, "requested": steps, "steps": r.steps, "state": r.state,
             "success_rate": r.success_rate, "wall_s": round(wall, 1), "batch": list(seeds)} for r in results]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2_000_000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--episodes", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    done = [json.loads(line) for line in OUT.read_text().splitlines()] if OUT.exists() else []
    done = [d for d in done if d.get("requested", d["steps"]) == args.steps]
    have = {(d["trainer"], d["seed"]) for d in done}
    jobs = [("sb3", (s,), args.steps, args.episodes) for s in args.seeds if ("sb3", s) not in have]
    missing = tuple(s for s in args.seeds if ("torch", s) not in have)
    if missing:
        jobs.append(("torch", missing, args.steps, args.episodes))
    with mp.get_context("spawn").Pool(max(1, args.workers)) as pool:
        for rows in pool.imap_unordered(run, jobs):
            with OUT.open("a") as fh:
                for row in rows:
                    fh.write(json.dumps(row) + "\n")
                    print(json.dumps(row), flush=True)
            done += rows
    from automl.core.scoring import bootstrap_ci

    by = {t: sorted((d for d in done if d["trainer"] == t and d["seed"] in args.seeds), key=lambda d: d["seed"])
          for t in ("sb3", "torch")}
    print(f"\nnavigation, priors, {args.steps:,} steps, success on {args.episodes} eval episodes per seed")
    for t, rows in by.items():
        vals = [r["success_rate"] or 0.0 for r in rows]
        lo, hi = bootstrap_ci(vals) if vals else (float("nan"), float("nan"))
        print(f"{t:6s} " + " ".join(f"{v:.3f}" for v in vals) + f"  mean {sum(vals) / max(1, len(vals)):.3f}"
              f"  95% CI [{lo:.3f}, {hi:.3f}]  wall {max((r['wall_s'] for r in rows), default=0):.0f} s")
    sb3 = [r["success_rate"] or 0.0 for r in by["sb3"]]
    torch_vals = [r["success_rate"] or 0.0 for r in by["torch"]]
    if sb3 and torch_vals:
        lo, hi = bootstrap_ci(sb3)
        m = sum(torch_vals) / len(torch_vals)
        print(f"torch mean {m:.3f} {'inside' if lo <= m <= hi else 'OUTSIDE'} the SB3 path's 95% CI [{lo:.3f}, {hi:.3f}]")


if __name__ == "__main__":
    main()
