"""Online tuning from Python: one training run tuned while it trains (issue 16; the CLI is `automl train --tune`).

    from automl.api import train_tuned
    result = train_tuned(params, env="navigation", seed=0, recipe="configs/tune/ppo.yaml", mode="active",
                         total_steps=800_000, run_dir="runs/exp1")

``actuators`` registers your own knobs beside the PPO ones (seed 004's protocol, see
``automl.train.tuning``); the recipe names them under ``actuators:``. ``trainer`` is picked as a run picks it
(``auto``: torch on the batched tasks, SB3 for gymnasium ids). Switch the mode of a
running call from another terminal with ``automl tune --run-dir runs/exp1 enable --mode observe``.

``start`` and ``tune_job`` are the run directory's layout, shared with `automl train --tune`
(``automl.cli.tune``): ``tune.recipe.yaml`` and ``tune.control.json`` in the run directory, per seed
``tune/seed_<s>/`` with the logs and ``tune.study.sqlite``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import yaml

from automl.core.tune_recipe import Recipe, load_recipe, recipe_to_dict
from automl.run.state import atomic_write_text
from automl.search.online import OnlineTuner

CONTROL = "tune.control.json"
RECIPE = "tune.recipe.yaml"


def write_control(run_dir: Path, ctl: dict) -> None:
    """The control file a running job reads at its next safe point (atomic)."""
    atomic_write_text(Path(run_dir) / CONTROL, json.dumps(ctl))


def start(run_dir: Path, recipe: Recipe, mode: str) -> None:
    """A tuned run's directory: its recipe (for export-recipe) and a fresh control file in ``mode``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / RECIPE, yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False))
    write_control(run_dir, {"mode": mode, "set": {}})


def tune_job(run_dir: Path, recipe: Recipe, mode: str, seed: int, *, plan: list | None = None,
             actuators: Mapping[str, Any] | None = None) -> dict:
    """One seed's ``tune`` argument of ``train_seed``: its tuner, new logs, the control file, (replay) its plan."""
    log_dir = run_dir / "tune" / f"seed_{seed}"
    for name in ("tune.mutations.jsonl", "tune.segments.jsonl", "tune.summary.json", "tune.study.sqlite"):
        (log_dir / name).unlink(missing_ok=True)  # a new run starts new logs
    log_dir.mkdir(parents=True, exist_ok=True)
    tuner = OnlineTuner(recipe, mode, seed=seed, study_path=str(log_dir / "tune.study.sqlite"))
    return {"tuner": tuner, "log_dir": str(log_dir), "control": str(run_dir / CONTROL), "plan": plan,
            "actuators": dict(actuators or {})}


def train_tuned(params: Mapping, *, env: str, seed: int, recipe: str, mode: str = "active",
                total_steps: int | None = None, run_dir: str = "progress/train", eval_every: int | None = None,
                actuators: Mapping[str, Any] | None = None, trainer: str = "auto", **train_kwargs: Any):
    """Train ``params`` on ``env`` with seed ``seed`` under the online tuner; returns the SeedResult. Logs go to
    ``run_dir/tune/seed_<seed>/``, the control file is ``run_dir/tune.control.json``. ``trainer``: auto | sb3 |
    torch."""
    from automl.run.trainers import seed_fn

    train_seed = seed_fn(trainer, env)

    out = Path(run_dir)
    parsed = load_recipe(recipe, custom=tuple(actuators or ()))
    start(out, parsed, mode)
    tune = tune_job(out, parsed, mode, seed, actuators=actuators)
    return train_seed(params, env=env, seed=seed, total_steps=total_steps, eval_every=eval_every, tune=tune,
                      **train_kwargs)
