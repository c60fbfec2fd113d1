"""`automl train --tune RECIPE` and `automl tune ...`: online tuning of a training run (issue 16, seed 004).

``attach`` gives every seed job of `automl train` its own tuner (``automl.search.online.OnlineTuner``), its
log directory ``<run_dir>/tune/seed_<s>/`` (tune.mutations.jsonl, tune.segments.jsonl, tune.summary.json)
and the run's control file ``<run_dir>/tune.control.json``. ``command`` is `automl tune`: enable (with
``--mode``), disable, status, set KEY=VALUE and export-recipe write or read those files; a running job reads
the control file at its next safe point (its next evaluation).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import yaml

from automl.api.online import CONTROL, RECIPE, write_control as _write_control
from automl.core.errors import AutoMLError
from automl.core.tune_recipe import load_recipe, parse_setting, recipe_from_dict, recipe_to_dict, with_settings

ENABLE_MODES = ("active", "observe", "suggest")
# export-recipe writes the format its file's extension names
EXPORT_FORMATS = {".json": lambda d: json.dumps(d, indent=2) + "\n", ".yaml": lambda d: yaml.safe_dump(d, sort_keys=False),
                  ".yml": lambda d: yaml.safe_dump(d, sort_keys=False)}


def attach(job_kwargs: list[dict], out: Path, recipe_path: str, mode: str, replay_from: str | None,
           env: str, *, startup_trials: int | None = None, production: bool = False) -> None:
    """Give each seed job its tuner, log directory, the control file and (replay) its plan; ``startup_trials``:
    the recipe's search.startup_trials; ``production``: the recipe only replays, `automl tune` is refused."""
    from automl.api.online import check_recipe, replay_plan_of, start, tune_job
    from automl.search.online import MODES

    if mode not in MODES:
        raise AutoMLError(f"--tune-mode: {mode!r} (allowed: {', '.join(MODES)})")
    if production and mode != "replay":
        raise AutoMLError(f"--tune-production: --tune-mode {mode} (allowed: replay, with --tune-replay RUN_DIR: in "
                          "production a frozen recipe only replays an earlier run's mutations)")
    if mode == "replay" and not replay_from:
        raise AutoMLError("--tune-replay: missing (allowed: the run dir of an earlier `automl train --tune` to replay)")
    recipe = load_recipe(recipe_path)
    if startup_trials is not None:
        if isinstance(startup_trials, bool) or not isinstance(startup_trials, int) or startup_trials < 0:
            raise AutoMLError(f"--startup-trials: {startup_trials!r} (allowed: an integer >= 0)")
        recipe = dataclasses.replace(recipe, startup_trials=startup_trials)
    check_recipe(recipe, env, recipe_path)
    # replay_from is set in mode replay (checked above)
    plans = {kw["seed"]: replay_plan_of(replay_from, kw["seed"]) for kw in job_kwargs} if mode == "replay" and replay_from else {}
    start(out, recipe, mode, production)
    for kw in job_kwargs:
        kw["tune"] = tune_job(out, recipe, mode, kw["seed"], plan=plans.get(kw["seed"]), production=production)


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
    if ctl.get("production"):
        raise AutoMLError(f"tune {action}: {d} runs in production mode: every `automl tune` command is refused (its "
                          "recipe only replays; its logs are in tune/seed_*/)")
    if action == "enable":
        if mode not in ENABLE_MODES:
            raise AutoMLError(f"--mode: {mode!r} (allowed: {', '.join(ENABLE_MODES)})")
        # a new count: each job starts its reject streak again (a run the streak paused tunes again)
        _write_control(d, {**ctl, "mode": mode, "enabled": int(ctl.get("enabled", 0) or 0) + 1})
        print(f"tune: {mode} from the next evaluation of each seed, reject streak cleared ({d / CONTROL})")
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
        fmt = EXPORT_FORMATS.get(Path(out).suffix.lower())
        if fmt is None:
            raise AutoMLError(f"tune export-recipe: --out {out}: extension {Path(out).suffix or '(none)'!r} "
                              f"(allowed: {', '.join(EXPORT_FORMATS)})")
        from automl.core.config import load_yaml

        recipe = with_settings(recipe_from_dict(load_yaml(d / RECIPE, allowed="the recipe `automl train --tune` "
                                                          "copied into the run dir"), str(d / RECIPE)),
                               ctl.get("set") or {})
        Path(out).write_text(fmt(recipe_to_dict(recipe)))
        print(f"wrote {out}")
    else:
        raise AutoMLError(f"tune: unknown action {action!r} (allowed: enable, disable, status, set, export-recipe)")
    return 0
