"""Online tuning (`automl train --tune`) on navigation: does `active` rescue a poor learning rate, and does it
harm a good config? And what does `observe` cost?

For the prior config and the same config with a learning rate 10x too low, trains seeds 0,1,2 with
``--tune-mode off`` and ``active`` (configs/tune/ppo.yaml), then evaluates every final policy on held-out
env seeds (seed + 5000, never seen by training or by the tuner's evaluations) and prints the success IQM
with a 95% bootstrap CI per arm. ``--overhead`` also times ``observe`` against no tuner on one seed.
Runs go under progress/bench/online/<arm>/ and are reused when their results.yaml exists.

    .venv/bin/python bench/online_tune.py [--steps 400000] [--episodes 64] [--overhead] [--recipe R] [--evals 20]
        [--arms poor_lr,prior] [--out DIR]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from automl.core.scoring import iqm  # noqa: E402

OUT = ROOT / "progress" / "bench" / "online"
HELDOUT = 5000


def config(poor: bool) -> Path:
    from automl.core.config import load_space
    from automl.search import space

    spec = load_space(str(space.default_space_path("navigation")))
    params = space.merged(spec, space.prior_params(spec))
    if poor:
        params["learning_rate"] = params["learning_rate"] / 10
    path = OUT / ("poor_lr.yaml" if poor else "prior.yaml")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"env": "navigation", "params": params, "reward_weights": {}}))
    return path


def train(arm: str, cfg: Path, mode: str | None, args, seeds: str = "0,1,2") -> dict:
    run_dir = OUT / arm
    if not (run_dir / "results.yaml").exists():
        cmd = [sys.executable, "-m", "automl", "train", "--config", str(cfg), "--seed-list", seeds,
               "--trial-steps", str(args.steps), "--eval-every", str(args.steps // args.evals), "--run-dir", str(run_dir)]
        if mode:
            cmd += ["--tune", str(args.recipe), "--tune-mode", mode]
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return yaml.safe_load((run_dir / "results.yaml").read_text())


def heldout_success(arm: str, seed: int, episodes: int) -> float:
    """The final policy of ``arm``'s seed on ``episodes`` held-out navigation episodes."""
    import torch
    from stable_baselines3 import PPO

    import envs
    from automl.train.evaluation import evaluate
    from automl.train.sb3_train import make_env_pair

    torch.set_num_threads(1)
    model = PPO.load(str(OUT / arm / "models" / f"seed_{seed}.zip"), device="cpu")
    _, eval_env, metric = make_env_pair("navigation", num_envs=1, eval_episodes=episodes, seed=seed + HELDOUT,
                                        device="cpu", reward_weights=None)
    norm = OUT / arm / "models" / f"seed_{seed}_vecnormalize.pkl"
    if norm.exists():
        from stable_baselines3.common.vec_env import VecNormalize

        eval_env = VecNormalize.load(str(norm), eval_env)
        eval_env.training, eval_env.norm_reward = False, False
    del envs
    return float(evaluate(model, eval_env, seed=seed + HELDOUT, steps=0, true_metric=metric).true_metric)


def ci(values: list[float], n_boot: int = 2000) -> tuple[float, float, float]:
    arr = np.asarray(values)
    rng = np.random.default_rng(0)
    boots = [iqm(arr[rng.integers(0, len(arr), len(arr))]) for _ in range(n_boot)]
    return iqm(arr), float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))


def main() -> None:
    global OUT
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=400_000)
    p.add_argument("--episodes", type=int, default=64)
    p.add_argument("--overhead", action="store_true")
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--recipe", default=str(ROOT / "configs" / "tune" / "ppo.yaml"))
    p.add_argument("--evals", type=int, default=20, help="evaluations (safe points) per run")
    p.add_argument("--arms", default="poor_lr,prior", help="which configs: poor_lr, prior")
    args = p.parse_args()
    OUT = Path(args.out)
    print(f"navigation, {args.steps} steps per seed, seeds 0,1,2, held-out success over {args.episodes} "
          f"episodes per seed (env seeds +{HELDOUT}); IQM [95% bootstrap CI]")
    for poor in [name == "poor_lr" for name in args.arms.split(",")]:
        cfg = config(poor)
        for mode in ("off", "active"):
            arm = f"{'poor_lr' if poor else 'prior'}_{mode}"
            res = train(arm, cfg, mode, args)
            vals = [heldout_success(arm, s["seed"], args.episodes) for s in res["seeds"]]
            summaries = [yaml.safe_load(f.read_text()) for f in sorted((OUT / arm / "tune").glob("seed_*/tune.summary.json"))]
            acc = sum(s.get("accepted") or 0 for s in summaries)
            judged = sum(s.get("judged") or 0 for s in summaries)
            on_backup = sum((s.get("judged_on") or {}).get("reference_return", 0) for s in summaries)
            anomalies = sum(s.get("anomalies") or 0 for s in summaries)
            m, lo, hi = ci(vals)
            print(f"{arm:16} held-out {m:.3f} [{lo:.3f}, {hi:.3f}]  per seed {[round(v, 3) for v in vals]}  "
                  f"accepted {acc}/{judged} ({on_backup} judged on reference_return)  anomalies {anomalies}  "
                  f"train wall {res['wall_s']:.0f} s")
            for s in summaries:  # what the accepted mutations did to the learning rate
                lr = (s.get("families") or {}).get("learning_rate") or {}
                if lr.get("accepted_factors"):
                    print(f"{'':16}   seed {s['seed']}: accepted learning-rate factors "
                          f"{[round(f, 2) for f in lr['accepted_factors']]}")
    if args.overhead:
        cfg = config(False)
        plain = train("overhead_none", cfg, None, args, seeds="0")
        observe = train("overhead_observe", cfg, "observe", args, seeds="0")
        a, b = plain["seeds"][0]["wall_s"], observe["seeds"][0]["wall_s"]
        hook = yaml.safe_load((OUT / "overhead_observe" / "tune" / "seed_0" / "tune.summary.json").read_text())["hook_s"]
        print(f"observe vs no tuner, one seed: {b:.1f} s vs {a:.1f} s ({100 * (b - a) / a:+.1f}%); time inside the "
              f"tuner's hook {hook:.3f} s = {100 * hook / b:.3f}% of the run")


if __name__ == "__main__":
    main()
