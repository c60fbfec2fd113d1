"""Command line: parses flags into a RunConfig, dispatches subcommands, prints errors as one line.

`run` is the default subcommand, so `automl --mode stage ...` works as written.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from typing import TYPE_CHECKING

from automl.core.errors import AutoMLError

if TYPE_CHECKING:
    from automl.run.runconfig import RunConfig

SUBCOMMANDS = ("run", "validate", "train", "tune", "analyze", "status", "export")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (no usage dump) and exits 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see: {self.prog} --help)\n")


def _add_run(sub) -> None:
    p = sub.add_parser("run", help="staged search: HP trials and reward-weight generations")
    from automl.run.modes import help_text, mode_flags

    p.add_argument("--mode", default="stage", help=help_text())
    for name, (mode, flag) in {flag.name: (mode, flag) for mode, flag in mode_flags()}.items():
        p.add_argument(name, type=flag.type, default=None,  # a mode's own flags (automl.run.modes.Flag)
                       help=f"--mode {mode.name}: {flag.help} (default {flag.default})")
    p.add_argument("--budget-hours", type=float, default=1.0, help="wall-clock budget in hours")
    p.add_argument("--hp-trials", type=int, default=None, help="HP trials per HP phase (default 8)")
    p.add_argument("--max-trials", type=int, default=None, help="cap on all HP trials")
    p.add_argument("--reward-generations", type=int, default=3)
    p.add_argument("--reward-population", type=int, default=None,
                   help="weight vectors per generation (default 4 + floor(3 ln n))")
    p.add_argument("--seeds", type=int, default=None, help="tuning seeds per config (default 3)")
    p.add_argument("--search-method", default=None,
                   help="grid | random | bayesian (tpe) | cmaes | qmc | hyperband | nsga2 (default tpe)")
    p.add_argument("--startup-trials", type=int, default=None,
                   help="random trials before TPE (or CMA-ES) models anything (default: Optuna's 10)")
    p.add_argument("--pruner", default=None, help="none | median | asha | hyperband (with --ladder off)")
    p.add_argument("--ladder", default=None,
                   help="auto (default: on, except --mode pbt) | on | off: configs enter at a short rung and the "
                        "best third continue from their own checkpoints to 3x the steps, up to the space's "
                        "n_timesteps (--trial-steps pins the top); --hp-trials and --reward-generations are the "
                        "configs and generations that enter, and the last phase admits more while any fit. "
                        "off: every config trains one fixed length, shrunk to fit the quota")
    p.add_argument("--n-jobs", type=int, default=None, help="worker processes (default: cores)")
    p.add_argument("--env", default="navigation", help="navigation | cartpole | a gymnasium id")
    p.add_argument("--space", default=None, help="search-space YAML (default per env)")
    p.add_argument("--preset", default=None, help="quick | full | fine-tune | a preset YAML")
    p.add_argument("--from", dest="from_run", default=None,
                   help="with --preset: centre it on this earlier run dir's best config (its best.yaml)")
    p.add_argument("--rewards", default=None, help="reward terms YAML (default per task)")
    p.add_argument("--trial-steps", type=int, default=None,
                   help="env steps per seed job, in whole rollouts. With the ladder it pins the top rung (the "
                        "length the winner is re-checked and best.yaml trains at): fewer configs enter, and a "
                        "length that leaves no time for one config is refused after calibration. --ladder off: "
                        "the most, shrunk to fit the quota. --mode pbt: each member's steps")
    p.add_argument("--eval-every", type=int, default=None,
                   help="env steps between evaluations (default: with the ladder, 3 in its lowest rung and the "
                        "same interval above it; --ladder off: up to 8 per job; evaluation <= 20%% of a job)")
    p.add_argument("--eval-episodes", type=int, default=None,
                   help="episodes per evaluation (default: up to 32, fewer for long episodes)")
    p.add_argument("--top-k", type=int, default=3, help="configs re-evaluated on held-out seeds")
    p.add_argument("--timeout-per-trial", type=float, default=None, help="seconds per seed job")
    p.add_argument("--run-dir", default="progress")
    p.add_argument("--storage", default=None,
                   help="Optuna storage: a URL (postgresql://user@host/db, sqlite:///file.db) or journal:PATH (a "
                        "journal file on a shared filesystem); default SQLite in the run dir, for one host")
    p.add_argument("--executor", default=None,
                   help="local (default: worker processes on this machine) | ray (seed jobs as Ray tasks; "
                        "pip install -e \".[ray]\")")
    p.add_argument("--ray-address", default=None,
                   help="--executor ray: auto (the cluster `ray start` made here) | HOST:PORT (default: start a "
                        "local Ray for this run)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--devices", default=None,
                   help="local workers spread over these devices, one per worker in turn, e.g. cuda:0,cuda:1 (each "
                        "worker process sees only its GPU; --n-jobs 4 puts two workers on each)")
    p.add_argument("--gpus-per-job", type=float, default=None,
                   help="--executor ray: GPUs each seed job asks Ray for (Ray's num_gpus; 0.5 lets two jobs share one)")
    p.add_argument("--config", default=None,
                   help="seed 003's hyperparameter_optimization: YAML (search space of PPO parameters, n_trials, "
                        "timeout_hours, evaluation, ...); flags given here win (README: Seed 003's config file)")
    p.add_argument("--trainer", default=None,
                   help="auto (default: torch on the batched tasks, sb3 for gymnasium ids; a resumed run "
                        "keeps its trainer) | torch (torch-native PPO, everything on the env's device) | sb3")
    p.add_argument("--objective", default=None,
                   help="iqm (default for a new run) | mean | lcb (lower 95%% CI bound of the mean) | mean-std "
                        "(mean - K*std over seeds, K = --risk): the one rule that ranks configs over seeds "
                        "(sampler values, incumbent, pruning, held-out winner)")
    p.add_argument("--risk", type=float, default=None, help="K in --objective mean-std (default 1.0)")
    p.add_argument("--population", type=int, default=None, help="--mode pbt: members (default 8)")
    p.add_argument("--ready-steps", type=int, default=None,
                   help="--mode pbt: env steps per member between ready points (default: a tenth of training)")
    p.add_argument("--quantile", type=float, default=None,
                   help="--mode pbt: bottom fraction that may copy the top fraction (default 0.25)")
    p.add_argument("--perturb", default=None, help="--mode pbt: factors for a copied value (default 0.8,1.2)")
    p.add_argument("--resample-p", type=float, default=None,
                   help="--mode pbt: probability a copied value is resampled instead (default 0.25)")
    p.add_argument("--metrics", default=None,
                   help="several objectives, e.g. success_rate:max,train_time_s:min[,params:min] (any of "
                        "episode_reward_mean, success_rate, reference_return, shaped_return, train_time_s, params, peak_memory_mb, "
                        "steps, steps_to_<threshold>), each aggregated over seeds by --objective; the sampler is "
                        "multi-objective TPE (or --search-method nsga2) and the run keeps the Pareto front. Optuna "
                        "does not prune multi-objective studies (its RFC #3450): the pruner prunes on the first "
                        "metric, which must then be the task's metric (otherwise no pruning)")
    p.add_argument("--constraint", dest="constraints", action="append", default=None,
                   help="a constraint on the metrics, e.g. \"success_rate >= 0.8\" (repeatable): configs that "
                        "break one are recorded with their violation and never win")
    p.add_argument("--pick", default=None,
                   help="with --metrics: knee (default: the front's compromise, closest to the ideal point) or "
                        "one metric's name (the front's best on it)")
    p.add_argument("--seed-batching", default=None,
                   help="auto (default: on with --trainer torch on CUDA) | on | off: train a config's "
                        "seeds as one batched job")
    p.add_argument("--seed", type=int, default=None, help="base seed (default: the space's)")
    p.add_argument("--checkpoint-every", type=int, default=None,
                   help="env steps between seed-job checkpoints (default: ~2 minutes of training)")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep finished seeds' checkpoints (default: deleted once recorded)")
    p.add_argument("--fresh", action="store_true", help="start over (the old run dir is kept aside)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    p.add_argument("--quiet", action="store_true",
                   help="no live view / progress lines (the state file is written as always)")


def _add_tools(sub) -> None:
    p = sub.add_parser("validate", help="check a search-space YAML and summarize it")
    p.add_argument("file")
    p = sub.add_parser("train", help="train one config on several seeds")
    p.add_argument("--config", default=None,
                   help="search-space YAML (priors) or best.yaml (default: the --env's shipped space, its priors)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--seeds", type=int, default=None, help="N seeds: base+0 .. base+N-1")
    g.add_argument("--seed-list", default=None, help="comma-separated seeds, e.g. 0,1,2")
    p.add_argument("--env", default=None)
    p.add_argument("--run-dir", default="progress/train")
    p.add_argument("--device", default="auto")
    p.add_argument("--trial-steps", type=int, default=None)
    p.add_argument("--n-jobs", type=int, default=1)
    p.add_argument("--eval-every", type=int, default=None,
                   help="env steps between evaluations (default a tenth of training; the tuner's safe points)")
    p.add_argument("--tune", default=None, help="online-tuning recipe YAML (e.g. configs/tune/ppo.yaml)")
    p.add_argument("--tune-mode", default="active", help="off | observe | suggest | active | replay (default active)")
    p.add_argument("--tune-replay", default=None, help="--tune-mode replay: the run dir whose tune logs to replay")
    p.add_argument("--trainer", default="auto", help="auto (torch on the batched tasks, sb3 for gymnasium ids) | sb3 | torch")
    p.add_argument("--startup-trials", type=int, default=None,
                   help="with --tune: the recipe's search.startup_trials (random proposals before TPE)")
    p.add_argument("--tune-production", action="store_true",
                   help="production: a frozen recipe only replays (--tune-mode replay) and every `automl tune` "
                        "command is refused")
    p = sub.add_parser("tune", help="switch or inspect the online tuner of a running `automl train --tune`")
    p.add_argument("action", help="enable | disable | status | set | export-recipe")
    p.add_argument("setting", nargs="?", default=None, help="set: KEY=VALUE, e.g. acceptance.epsilon=0.002")
    p.add_argument("--run-dir", default="progress/train")
    p.add_argument("--mode", default="active", help="enable: active | observe | suggest")
    p.add_argument("--out", default=None, help="export-recipe: the file to write")
    p = sub.add_parser("analyze", help="importance ranking, top configs, CSV and plots")
    p.add_argument("--run-dir", default="progress")
    p.add_argument("--metric", default="episode_reward_mean")
    p.add_argument("--objective", default=None,
                   help="re-rank by an objective over seeds instead of --metric: iqm | mean | lcb | mean-std")
    p.add_argument("--risk", type=float, default=1.0, help="K in --objective mean-std (default 1.0)")
    p.add_argument("--sort", default="descending", choices=["descending", "ascending"])
    p.add_argument("--top", type=int, default=5)
    p.add_argument("--importance", default="fanova", choices=["fanova", "ped-anova", "both"])
    p = sub.add_parser("status", help="live view of a run's state file")
    p.add_argument("--run-dir", default="progress")
    p.add_argument("--follow", action="store_true", help="refresh until the run ends")
    p.add_argument("--interval", type=float, default=2.0)
    p = sub.add_parser("export", help="write the best config for reuse")
    p.add_argument("--run-dir", default="progress")
    p.add_argument("--format", default="yaml", choices=["yaml", "rlzoo"])
    p.add_argument("--output", default=None, help="file to write (default: in the run dir)")


def build_parser() -> argparse.ArgumentParser:
    """The full `automl` parser with all subcommands."""
    parser = _Parser(prog="automl", description="Staged AutoML for PPO under one budget.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    _add_run(sub)
    _add_tools(sub)
    return parser


def run_config_from(args, argv) -> RunConfig:
    """Turn parsed `run` flags into a validated RunConfig."""
    from automl.run.runconfig import RunConfig

    kwargs = {k: v for k, v in vars(args).items() if k not in ("command", "from_run") and v is not None}
    if kwargs.pop("config", None):  # seed 003's config file: its values as flags (automl/cli/run_config_file.py)
        from automl.cli.run_config_file import config_flags, given_flags
        kwargs.update(config_flags(args.config, given_flags(build_parser(), argv)))
    if args.from_run is not None:  # the preset centred on that run's best, spelled PRESET@RUN_DIR
        from automl.search.presets import centred_on
        kwargs["preset"] = centred_on(args.preset, args.from_run)
    if args.preset:
        # A preset's run_defaults fill in what the command line left unsaid.
        from automl.search.presets import load_preset
        defaults = load_preset(args.preset).run_defaults or {}
        for key in ("hp_trials", "seeds", "search_method"):
            if key in defaults and key not in kwargs:
                kwargs[key] = defaults[key]
    for flag in ("dry_run", "fresh", "quiet", "keep_checkpoints"):
        kwargs.pop(flag, None)
    from automl.run.modes import mode_flags

    own = {flag.dest for _, flag in mode_flags()}
    kwargs["mode_options"] = {k: kwargs.pop(k) for k in list(kwargs) if k in own}
    return RunConfig(**kwargs, fresh=args.fresh, dry_run=args.dry_run, quiet=args.quiet,
                     keep_checkpoints=args.keep_checkpoints,
                     command="automl " + shlex.join(argv))


def _analyze_metric(args) -> str:
    """``--objective`` (checked against the objectives' names) or else ``--metric``."""
    if args.objective is None:
        return args.metric
    from automl.core.names import OBJECTIVES

    if args.objective not in OBJECTIVES:
        raise AutoMLError(f"--objective: unknown value {args.objective!r} (allowed: {', '.join(OBJECTIVES)})")
    if not args.risk >= 0:
        raise AutoMLError(f"--risk: must be a number >= 0 (got {args.risk!r})")
    return {"mean": "episode_reward_mean"}.get(args.objective, args.objective)


def _dispatch(args, argv) -> int:
    if args.command == "run":
        cfg = run_config_from(args, argv)  # validate flags before torch/optuna are imported
        from automl.run import driver
        return driver.main(cfg)
    if args.command == "validate":
        from automl.cli.validate import summary
        print(summary(args.file))
        return 0
    if args.command == "train":
        from automl.cli import train as train_cmd
        seed_list = _parse_seed_list(args.seed_list)
        train_cmd.run(args.config, seeds=args.seeds, seed_list=seed_list, env=args.env,
                      run_dir=args.run_dir, device=args.device, total_steps=args.trial_steps,
                      n_jobs=args.n_jobs, tune=args.tune, tune_mode=args.tune_mode, tune_replay=args.tune_replay,
                      eval_every=args.eval_every, trainer=args.trainer, startup_trials=args.startup_trials,
                      production=args.tune_production)
        return 0
    if args.command == "tune":
        from automl.cli import tune
        return tune.command(args.action, args.run_dir, mode=args.mode, setting=args.setting, out=args.out)
    if args.command == "analyze":
        from automl.analysis import output as analyze
        from rich.console import Console
        report = analyze.run(args.run_dir, metric=_analyze_metric(args), sort=args.sort, top=args.top,
                             importance=args.importance, risk=args.risk)
        Console().print(analyze.table(report))
        return 0
    if args.command == "status":
        from automl.cli import status
        return status.show(args.run_dir, follow=args.follow, interval=args.interval)
    if args.command == "export":
        from automl.cli import export
        path = export.export(args.run_dir, fmt=args.format, output=args.output)
        print(f"wrote {path}")
        return 0
    raise AutoMLError(f"unknown command {args.command!r} (allowed: {', '.join(SUBCOMMANDS)})")


def _parse_seed_list(text):
    if text is None:
        return None
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise AutoMLError(f"--seed-list: {text!r} is not a comma-separated list of integers "
                          "(allowed: e.g. 0,1,2)") from None


def main(argv=None) -> int:
    """Entry point of the `automl` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help")):
        argv = ["run", *argv]
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args, argv)
    except AutoMLError as exc:
        print(f"automl: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("automl: interrupted", file=sys.stderr)
        return 130
