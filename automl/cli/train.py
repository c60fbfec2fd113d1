"""`automl train --config FILE [--seeds N | --seed-list 0,1,2] [--env ...] [--trainer auto|sb3|torch]`: one config
on several seeds, with the trainer a run would pick (``--trainer auto``: torch on the batched tasks, SB3 for
gymnasium ids).

The config FILE may be a search-space YAML (its priors over its fixed values are trained), a
best.yaml written by a run (params, env and reward weights), an exported flat config
(`automl export`), or a plain mapping of params. Per-seed results, TensorBoard logs and models
go under ``run_dir``; a rich table shows each seed and the aggregate score.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from rich.console import Console
from rich.table import Table

from automl.core import scoring
from automl.core.config import REWARD_PREFIX, SPACE_KEYS, load_yaml, parse_space
from automl.core.errors import AutoMLError
from automl.core.values import fmt_value
from automl.train.result import SeedResult

DEFAULT_SEEDS = 3
TUNE_KEY = "tune"  # the config file's own online-tuning section (seed 004's `tune:` in hotcb.yaml)
TUNE_SECTION_KEYS = ("enabled", "mode", "recipe", "replay_from", "production", "startup_trials")


def tune_section(path: str) -> dict | None:
    """The config file's ``tune:`` section as `automl train`'s tune options ({recipe, mode, replay_from,
    production, startup_trials}); None when it has none or says ``enabled: false``. A relative recipe path is
    read beside the config file first."""
    from automl.core.tune_recipe import DEFAULT_RECIPE

    raw = load_yaml(path, allowed="a search space, a best.yaml, an exported config or a mapping of params")
    sec = raw.get(TUNE_KEY) if isinstance(raw, Mapping) else None
    if sec is None:
        return None
    if not isinstance(sec, Mapping) or any(k not in TUNE_SECTION_KEYS for k in sec):
        bad = next((k for k in sec if k not in TUNE_SECTION_KEYS), None) if isinstance(sec, Mapping) else None
        raise AutoMLError(f"{path}: tune{'.' + str(bad) if bad else ''}: "
                          f"{'unknown key' if bad else 'not a mapping'} (allowed: {', '.join(TUNE_SECTION_KEYS)})")
    if not sec.get("enabled", True):
        return None
    recipe = str(sec.get("recipe") or DEFAULT_RECIPE)
    beside = Path(path).parent / recipe
    return {"recipe": str(beside) if not Path(recipe).is_absolute() and beside.is_file() else recipe,
            "mode": str(sec.get("mode", "active")), "replay_from": sec.get("replay_from"),
            "production": bool(sec.get("production", False)), "startup_trials": sec.get("startup_trials")}


def load_train_config(path: str) -> tuple[dict, dict, str | None]:
    """(params, reward_weights, env or None) from any of the accepted config files."""
    from automl.search import space

    raw = load_yaml(path, allowed="a search space, a best.yaml, an exported config or a mapping of params")
    if "params" in raw and isinstance(raw["params"], Mapping):  # best.yaml
        return dict(raw["params"]), dict(raw.get("reward_weights") or {}), raw.get("env")
    if "search_space_id" in raw:  # search space, or `automl export` (extra keys beside the space)
        spec = parse_space({k: v for k, v in raw.items() if k in SPACE_KEYS}, str(path))
        params = space.merged(spec, space.prior_params(spec))
        return params, dict(raw.get("reward_weights") or {}), _env_from_id(spec.search_space_id)
    params = {k: v for k, v in raw.items() if not str(k).startswith(REWARD_PREFIX) and k != TUNE_KEY}
    weights = {k[len(REWARD_PREFIX):]: v for k, v in raw.items() if str(k).startswith(REWARD_PREFIX)}
    return params, weights, None


def _env_from_id(search_space_id: str) -> str | None:
    """A space named after a batched task ('cartpole_batched_v1') trains on that task."""
    import envs

    return next((task for task in envs.TASKS if search_space_id.lower().startswith(task)), None)


def seeds_to_run(params: Mapping, seeds: int | None, seed_list: Sequence[int] | None) -> list[int]:
    """--seed-list as given; --seeds N means base+0..base+N-1 with base = the config's seed or 0."""
    if seed_list:
        return [int(s) for s in seed_list]
    n = DEFAULT_SEEDS if seeds is None else int(seeds)
    if n < 1:
        raise AutoMLError(f"--seeds: {n} (allowed: >= 1)")
    base = int(params.get("seed") or 0)
    return [base + i for i in range(n)]


def _run_parallel(job_kwargs: list[dict], n_jobs: int, trainer: str) -> list[SeedResult]:
    """Seeds on the executor's worker processes; results in submission order."""
    from automl.exec.executor import Done, Job, LocalProcessExecutor
    from automl.run.trainers import job_fn

    results: dict[str, Any] = {}
    with LocalProcessExecutor(n_jobs=n_jobs) as ex:
        for i, kwargs in enumerate(job_kwargs):
            ex.submit(Job(f"seed_{i}", job_fn(trainer), kwargs))
        while len(results) < len(job_kwargs):
            for event in ex.poll(timeout=1.0):
                if isinstance(event, Done):
                    results[event.result.job_id] = event.result
    return [_from_job(results[f"seed_{i}"], kw["seed"]) for i, kw in enumerate(job_kwargs)]


def _from_job(job: Any, seed: int) -> SeedResult:
    """A SeedResult from an executor JobResult (a crashed worker becomes a failed seed)."""
    if isinstance(job.value, Mapping) and "state" in job.value:
        return SeedResult(**job.value)
    return SeedResult(seed=seed, state="failed", stop_reason="error", episode_reward_mean=None, success_rate=None,
                      shaped_return=None, reference_return=None, wall_s=float(job.wall_s),
                      reason=f"{job.state}: {job.reason}")


def print_results(results: Sequence[SeedResult], env: str, console: Console | None = None) -> dict | None:
    """Per-seed table and the aggregate over seeds (failed seeds count as the worst)."""
    table = Table(title=f"automl train: {env}")
    for col in ("seed", "state", "true metric", "success", "shaped", "reference", "steps", "wall s", "stop"):
        table.add_column(col, justify="right" if col not in ("state", "stop") else "left")
    for r in results:
        table.add_row(str(r.seed), r.state, fmt_value(r.episode_reward_mean, ".4g"), fmt_value(r.success_rate),
                      fmt_value(r.shaped_return, ".4g"), fmt_value(r.reference_return, ".4g"), str(r.steps),
                      f"{r.wall_s:.1f}", r.reason or r.stop_reason)
    if console is None:
        console = Console()
        if not console.is_terminal:  # piped/logged output: don't squeeze the table into 80 columns
            console = Console(width=140)
    console.print(table)
    try:
        score = scoring.score([r.episode_reward_mean for r in results])
    except ValueError as err:  # every seed failed: there is no worst finite value to stand in
        console.print(f"aggregate: none ({err})")
        return None
    console.print(f"aggregate over {score['n_seeds']} seeds: mean {score['mean']:.4g}, IQM {score['iqm']:.4g}, "
                  f"95% CI [{score['ci95'][0]:.4g}, {score['ci95'][1]:.4g}]")
    return score


def _env_choices() -> str:
    import envs

    return "|".join((*envs.TASKS, "<gym id>"))


def _config_for(config_path, env) -> str:
    """``--config``, or without one the env's shipped space (its priors are trained: seed 001's
    `train.py --env ENV`)."""
    if config_path is not None:
        return str(config_path)
    if not env:
        raise AutoMLError(f"--config: missing (allowed: a config file, or --env {_env_choices()} to "
                          "train that env's shipped space's priors)")
    from automl.search.space import default_space_path

    return str(default_space_path(env))


def _tune_options(config_path: str, tune, tune_mode, tune_replay, startup_trials, production) -> dict | None:
    """The online-tuning options: the flags, else the config file's ``tune:`` section; None: not tuned."""
    opts: dict[str, Any] | None
    if tune:
        opts = {"recipe": tune, "mode": tune_mode, "replay_from": tune_replay, "production": production,
                "startup_trials": startup_trials}
    else:
        opts = tune_section(config_path)
        if opts is None:
            if startup_trials is not None or production:
                raise AutoMLError(f"--{'startup-trials' if startup_trials is not None else 'tune-production'}: "
                                  "needs --tune RECIPE (or a tune: section in the config file)")
            return None
        opts["production"] = opts["production"] or production
        if startup_trials is not None:
            opts["startup_trials"] = startup_trials
    return opts


def run(config_path=None, *, seeds=None, seed_list=None, env=None, run_dir="progress/train", device="auto",
        total_steps=None, n_jobs=1, tune=None, tune_mode="active", tune_replay=None,
        eval_every=None, trainer="auto", startup_trials=None, production=False) -> list[SeedResult]:
    """Train the config in ``config_path`` (None: ``env``'s shipped space's priors) on each seed; print and save
    (run_dir/results.yaml) the results. ``tune``: an online-tuning recipe (``automl.cli.tune``; else the config
    file's ``tune:`` section): each seed is tuned while it trains (either trainer); ``startup_trials``: the
    recipe's search.startup_trials; ``production``: the recipe only replays and `automl tune` is refused."""
    from automl.core.config import to_ppo_setup
    from automl.run import trainers
    from automl.run.state import atomic_write_text, dump_yaml

    config_path = _config_for(config_path, env)
    params, weights, file_env = load_train_config(str(config_path))
    env = env or file_env
    if not env:
        raise AutoMLError(f"{config_path}: env: the file names no env (allowed: --env {_env_choices()})")
    setup = to_ppo_setup(params, path=str(config_path))  # validate once, before any process starts
    trainer = trainers.resolve(trainer, env)
    if total_steps is None and not setup.n_timesteps:
        raise AutoMLError(f"{config_path}: n_timesteps: missing (allowed: --trial-steps N or fixed.n_timesteps)")
    out = Path(run_dir)
    job_kwargs = [dict(params=params, env=env, seed=s, total_steps=total_steps, reward_weights=weights or None,
                       device=device, tb_dir=str(out / "tb"), save_path=str(out / "models" / f"seed_{s}.zip"),
                       eval_every=eval_every)
                  for s in seeds_to_run(params, seeds, seed_list)]
    opts = _tune_options(config_path, tune, tune_mode, tune_replay, startup_trials, production)
    if opts:
        from automl.cli.tune import attach

        attach(job_kwargs, out, opts["recipe"], opts["mode"], opts["replay_from"], env,
               startup_trials=opts["startup_trials"], production=opts["production"])
    start = time.time()
    if n_jobs > 1 and len(job_kwargs) > 1:
        results = _run_parallel(job_kwargs, n_jobs, trainer)
    else:
        results = [trainers.seed_fn(trainer, env)(**kw) for kw in job_kwargs]
    score = print_results(results, env)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "results.yaml", dump_yaml({
        "config": str(config_path), "env": env, "trainer": trainer, "params": params, "reward_weights": weights,
        "seeds": [r.to_dict() for r in results], "score": score, "wall_s": round(time.time() - start, 2)}))
    return results
