"""`automl train --tune RECIPE` and `automl tune ...`: online tuning of a training run (issue 16, seed 004).

``attach`` gives every seed job of `automl train` its own tuner (``automl.search.online.OnlineTuner``), its
log directory ``<run_dir>/tune/seed_<s>/`` (tune.mutations.jsonl, tune.segments.jsonl, tune.summary.json)
and the run's control file ``<run_dir>/tune.control.json``. ``command`` is `automl tune`: enable (with
``--mode``), disable, status, set KEY=VALUE and export-recipe write or read those files; a running job reads
the control file at its next safe point (its next evaluation).
"""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from automl.api.online import CONTROL, RECIPE, write_control as _write_control
from automl.core.errors import AutoMLError
from automl.core.tune_recipe import load_recipe, parse_setting, recipe_from_dict, recipe_to_dict, with_settings

ENABLE_MODES = ("active", "observe", "suggest")


def attach(job_kwargs: list[dict], out: Path, recipe_path: str, mode: str, replay_from: str | None,
           env: str) -> None:
    """Give each seed job its tuner, log directory, the control file and (replay) its plan."""
    import envs
    from automl.api.online import start, tune_job
    from automl.search.online import MODES
    from automl.search.online_log import replay_plan

    if mode not in MODES:
        raise AutoMLError(f"--tune-mode: {mode!r} (allowed: {', '.join(MODES)})")
    if mode == "replay" and not replay_from:
        raise AutoMLError("--tune-replay: missing (allowed: the run dir of an earlier `automl train --tune` to replay)")
    recipe = load_recipe(recipe_path)
    true_metric = envs.reward_config(env)["true_metric"] if env in envs.TASKS else "reference_return"
    if env in envs.TASKS:
        terms = list(envs.reward_config(env)["terms"])
        for m in recipe.mutations:
            if m.name.startswith("reward.") and m.name.split(".", 1)[1] not in terms:
                raise AutoMLError(f"{recipe_path}: actuators.{m.name}: not a reward term of {env} "
                                  f"(allowed: {', '.join('reward.' + t for t in terms)})")
    if recipe.metric not in ("true_metric", true_metric):
        raise AutoMLError(f"{recipe_path}: objective.primary: {recipe.metric!r} (allowed: true_metric, {true_metric}: "
                          f"the tuner judges mutations on {env}'s true metric)")
    start(out, recipe, mode)
    for kw in job_kwargs:
        seed = kw["seed"]
        plan = None
        if mode == "replay":
            src = Path(replay_from) / "tune" / f"seed_{seed}"
            log = [json.loads(line) for name in ("tune.mutations.jsonl", "tune.segments.jsonl")
                   if (src / name).exists() for line in (src / name).read_text().splitlines() if line.strip()]
            if not log:
                raise AutoMLError(f"--tune-replay: {src}: no tune logs for seed {seed} (allowed: a run dir of "
                                  "`automl train --tune` with the same seeds)")
            plan = replay_plan(log)
        kw["tune"] = tune_job(out, recipe, mode, seed, plan=plan)


def _read_control(run_dir: Path) -> dict:
    path = run_dir / CONTROL
    if not path.exists():
        raise AutoMLError(f"{path}: file: does not exist (allowed: the --run-dir of an `automl train --tune` run)")
    try:
        ctl = json.loads(path.read_text())
    except ValueError:
        ctl = None
    if not isinstance(ctl, dict):
        raise AutoMLError(f"{path}: file: not a JSON object (allowed: the control file `automl train --tune` "
                          "and `automl tune` write)")
    return ctl


def command(action: str, run_dir: str, *, mode: str = "active", setting: str | None = None,
            out: str | None = None) -> int:
    """`automl tune ACTION`: switch the tuner of a running (or finished) `automl train --tune`, or read it."""
    d = Path(run_dir)
    ctl = _read_control(d)
    if action == "enable":
        if mode not in ENABLE_MODES:
            raise AutoMLError(f"--mode: {mode!r} (allowed: {', '.join(ENABLE_MODES)})")
        _write_control(d, {**ctl, "mode": mode})
        print(f"tune: {mode} from the next evaluation of each seed ({d / CONTROL})")
    elif action == "disable":
        _write_control(d, {**ctl, "mode": "off"})
        print(f"tune: off from the next evaluation of each seed ({d / CONTROL})")
    elif action == "set":
        if not setting:
            raise AutoMLError("tune set: missing KEY=VALUE (e.g. acceptance.epsilon=0.002)")
        key, value = parse_setting(setting)
        _write_control(d, {**ctl, "set": {**(ctl.get("set") or {}), key: value}})
        print(f"tune: {key} = {value} from the next evaluation of each seed")
    elif action == "status":
        print(f"control: mode {ctl.get('mode')}, settings {ctl.get('set') or {}}")
        for path in sorted((d / "tune").glob("seed_*/tune.summary.json")):
            s = json.loads(path.read_text())
            rate = "-" if s.get("accept_rate") is None else f"{s['accept_rate']:.0%}"
            print(f"{path.parent.name}: step {s.get('step')}, mode {s.get('mode')}, proposed {s.get('proposed')}, "
                  f"applied {s.get('applied')}, accepted {s.get('accepted')}/{s.get('judged')} ({rate}), "
                  f"blocked: {s.get('blocked') or 'no'}")
    elif action == "export-recipe":
        if not out:
            raise AutoMLError("tune export-recipe: --out FILE missing")
        from automl.core.config import load_yaml

        recipe = with_settings(recipe_from_dict(load_yaml(d / RECIPE, allowed="the recipe `automl train --tune` "
                                                          "copied into the run dir"), str(d / RECIPE)),
                               ctl.get("set") or {})
        Path(out).write_text(yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False))
        print(f"wrote {out}")
    else:
        raise AutoMLError(f"tune: unknown action {action!r} (allowed: enable, disable, status, set, export-recipe)")
    return 0
