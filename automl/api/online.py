"""Online tuning from Python: one training run tuned while it trains (issue 16; the CLI is `automl train --tune`).

    from automl.api import train_tuned
    result = train_tuned(params, env="navigation", seed=0, recipe="configs/tune/ppo.yaml", mode="active",
                         total_steps=800_000, run_dir="runs/exp1")

``actuators`` registers your own knobs beside the PPO ones (seed 004's protocol, see
``automl.train.sb3_tune.TuneCallback``); the recipe names them under ``actuators:``. Switch the mode of a
running call from another terminal with ``automl tune --run-dir runs/exp1 enable --mode observe``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from automl.core.tune_recipe import load_recipe
from automl.search.online import OnlineTuner


def train_tuned(params: Mapping, *, env: str, seed: int, recipe: str, mode: str = "active",
                total_steps: int | None = None, run_dir: str = "progress/train", eval_every: int | None = None,
                actuators: Mapping[str, Any] | None = None, **train_kwargs: Any):
    """Train ``params`` on ``env`` with seed ``seed`` under the online tuner; returns the SeedResult. Logs go to
    ``run_dir/tune/seed_<seed>/``, the control file is ``run_dir/tune.control.json``."""
    from automl.train.training import train_seed

    out = Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "tune.control.json.tmp"
    tmp.write_text(json.dumps({"mode": mode, "set": {}}))
    os.replace(tmp, out / "tune.control.json")
    log_dir = out / "tune" / f"seed_{seed}"
    log_dir.mkdir(parents=True, exist_ok=True)
    tuner = OnlineTuner(load_recipe(recipe, custom=tuple(actuators or ())), mode, seed=seed,
                        study_path=str(log_dir / "tune.study.sqlite"))
    tune = {"tuner": tuner, "log_dir": str(log_dir), "control": str(out / "tune.control.json"),
            "actuators": dict(actuators or {})}
    return train_seed(params, env=env, seed=seed, total_steps=total_steps, eval_every=eval_every, tune=tune,
                      **train_kwargs)
