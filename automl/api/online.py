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
``tune/seed_<s>/`` with the logs and ``tune.study.sqlite``. ``production=True`` (seed 004's prod mode): the
recipe only replays an earlier run's mutations (``mode="replay"``, ``replay_from``), the job never reads the
control file and every `automl tune` command on the run dir is refused.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Mapping

import yaml

from automl.core.errors import AutoMLError
from automl.core.tune_recipe import Recipe, load_recipe, recipe_to_dict
from automl.run.state import atomic_write_text
from automl.search.online import OnlineTuner

CONTROL = "tune.control.json"
RECIPE = "tune.recipe.yaml"


def write_control(run_dir: Path, ctl: dict) -> None:
    """The control file a running job reads at its next safe point (atomic)."""
    atomic_write_text(Path(run_dir) / CONTROL, json.dumps(ctl))


def start(run_dir: Path, recipe: Recipe, mode: str, production: bool = False) -> None:
    """A tuned run's directory: its recipe (for export-recipe) and a fresh control file in ``mode``
    (``production``: marked so, `automl tune` refuses it)."""
    if production and mode != "replay":
        raise AutoMLError(f"production: tune mode {mode!r} (allowed: replay: in production a frozen recipe only "
                          "replays the mutations of an earlier run)")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / RECIPE, yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False))
    write_control(run_dir, {"mode": mode, "set": {}, "enabled": 0, **({"production": True} if production else {})})


def check_recipe(recipe: Recipe, env: str, where: str) -> None:
    """What a recipe asks of ``env``: its reward terms exist, and its primary metric is one the env reports."""
    import envs

    task = env in envs.TASKS  # (a gymnasium id's reward terms appear with its first step)
    cfg = envs.reward_config(env) if task else {"terms": {}, "true_metric": "reference_return"}
    terms, success = list(cfg["terms"]), cfg["true_metric"] == "success_rate"
    for m in recipe.mutations:
        if task and m.name.startswith("reward.") and m.name.split(".", 1)[1] not in terms:
            raise AutoMLError(f"{where}: actuators.{m.name}: not a reward term of {env} "
                              f"(allowed: {', '.join('reward.' + t for t in terms) or 'none: it has no reward terms'})")
    if "success_rate" in (recipe.metric, *(b.partition(":")[0] for b in recipe.backup_metrics)) and not success:
        raise AutoMLError(f"{where}: objective: success_rate: {env} has no success (allowed: true_metric, "
                          "reference_return, shaped_return)")


def replay_plan_of(replay_from: str | Path, seed: int) -> list:
    """The mutations an earlier tuned run's ``seed`` made, as the plan a replaying job carries out."""
    from automl.search.online_log import replay_plan

    src = Path(replay_from) / "tune" / f"seed_{seed}"
    log = [json.loads(line) for name in ("tune.mutations.jsonl", "tune.segments.jsonl")
           if (src / name).exists() for line in (src / name).read_text().splitlines() if line.strip()]
    if not log:
        raise AutoMLError(f"--tune-replay: {src}: no tune logs for seed {seed} (allowed: a run dir of "
                          "`automl train --tune` with the same seeds)")
    return replay_plan(log)


def tune_job(run_dir: Path, recipe: Recipe, mode: str, seed: int, *, plan: list | None = None,
             actuators: Mapping[str, Any] | None = None, production: bool = False) -> dict:
    """One seed's ``tune`` argument of ``train_seed``: its tuner, new logs, the control file, (replay) its plan."""
    log_dir = run_dir / "tune" / f"seed_{seed}"
    for name in ("tune.mutations.jsonl", "tune.segments.jsonl", "tune.summary.json", "tune.study.sqlite"):
        (log_dir / name).unlink(missing_ok=True)  # a new run starts new logs
    log_dir.mkdir(parents=True, exist_ok=True)
    tuner = OnlineTuner(recipe, mode, seed=seed, study_path=str(log_dir / "tune.study.sqlite"))
    return {"tuner": tuner, "log_dir": str(log_dir), "control": str(run_dir / CONTROL), "plan": plan,
            "actuators": dict(actuators or {}), "production": production}


def train_tuned(params: Mapping, *, env: str, seed: int, recipe: str, mode: str = "active",
                total_steps: int | None = None, run_dir: str = "progress/train", eval_every: int | None = None,
                actuators: Mapping[str, Any] | None = None, trainer: str = "auto", replay_from: str | None = None,
                production: bool = False, startup_trials: int | None = None, **train_kwargs: Any):
    """Train ``params`` on ``env`` with seed ``seed`` under the online tuner; returns the SeedResult. Logs go to
    ``run_dir/tune/seed_<seed>/``, the control file is ``run_dir/tune.control.json``. ``trainer``: auto | sb3 |
    torch; ``replay_from``: mode replay's earlier run dir; ``production``: see the module's docstring;
    ``startup_trials``: the recipe's search.startup_trials."""
    from automl.run.trainers import seed_fn

    train_seed = seed_fn(trainer, env)

    out = Path(run_dir)
    parsed = load_recipe(recipe, custom=tuple(actuators or ()))
    if startup_trials is not None:
        parsed = dataclasses.replace(parsed, startup_trials=int(startup_trials))
    check_recipe(parsed, env, str(recipe))
    if mode == "replay" and not replay_from:
        raise AutoMLError("replay_from: missing (allowed: the run dir of an earlier tuned run to replay)")
    plan = replay_plan_of(replay_from, seed) if mode == "replay" and replay_from else None  # replay_from: checked above
    start(out, parsed, mode, production)
    tune = tune_job(out, parsed, mode, seed, actuators=actuators, plan=plan, production=production)
    return train_seed(params, env=env, seed=seed, total_steps=total_steps, eval_every=eval_every, tune=tune,
                      **train_kwargs)
