"""Keras-Tuner-style tuners (RandomSearch, BayesianOptimization, Hyperband, GridSearch) on SearchEngine.

    def build(hp):
        return {"learning_rate": hp.Float("learning_rate", 1e-4, 3e-3, sampling="log"), "num_envs": 64}

    tuner = RandomSearch(build, objective=Objective("episode_reward_mean", "max"), max_trials=8,
                         directory="studies", project_name="cartpole_lr")
    tuner.search(env="cartpole", total_steps=20_000)
    best_hp = tuner.get_best_hyperparameters(1)[0]

search(**kwargs) calls run_trial(hp, **kwargs) per trial; ``build`` may be ``async def`` (it is awaited). The default run_trial trains PPO on every seed
with the CLI's machinery, automl.run.seed_pool (build(hp) returns a dict of PPO params: worker processes,
the trainer ``auto`` picks, pruning over all live seeds), or calls .learn() on the SB3 model build(hp)
returns; override run_trial to return a float or a dict of metrics instead.
Trials live in SQLite ``<directory>/<project_name>/<project_name>.db``: overwrite=False resumes.
``Hyperband(max_epochs=..., factor=...)`` runs Keras Tuner's bracket schedule (``automl.api.hyperband``).
"""
from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import optuna

from automl.api import study_io
from automl.api.engine import SearchConfig, SearchEngine, TrialFailed, run_trial
from automl.api.hyperparameters import HyperParameters
from automl.api.study_io import SearchResult
from automl.core.errors import AutoMLError
from automl.core.record import State

if TYPE_CHECKING:
    from automl.run.seed_pool import SeedPool

PPO_METRICS = ("success_rate", "shaped_return", "reference_return")


@dataclass(frozen=True)
class Objective:
    """The metric to optimize and its direction ('max'/'min' or 'maximize'/'minimize')."""

    name: str
    direction: str = "max"

    def __post_init__(self):
        if self.direction not in study_io.DIRECTIONS:
            raise AutoMLError(f"Objective: direction: {self.direction!r} (allowed: max, min, maximize, minimize)")


@dataclass
class TunerTrial:
    """A finished trial as Keras Tuner shows it: id, hyperparameters, score, metrics, status."""

    trial_id: str
    hyperparameters: HyperParameters
    score: float | None
    metrics: dict
    status: str
    number: int
    duration: float | None = None   # seconds from the trial's start to its end (Optuna's datetimes)


class Oracle:
    """The tuner's record keeper: get_best_trials(n) reads the study."""

    def __init__(self, tuner: Tuner):
        self.tuner = tuner

    def get_best_trials(self, num_trials: int = 1) -> list[TunerTrial]:
        """The best `num_trials` complete trials, best first."""
        res = self.tuner.results()
        ranked = [r for r in study_io.rank(res.trials, res.direction) if r.value is not None]
        return [TunerTrial(r.trial_id, HyperParameters.from_values(r.params), r.value, r.metrics,
                           "COMPLETED", r.number, r.duration_s) for r in ranked[:num_trials]]


class Tuner:
    """Base tuner: a build(hp) hypermodel, an objective, and a strategy from automl.search.strategies."""

    strategy = "random"
    default_pruner = "none"

    def __init__(self, hypermodel: Callable | None = None, objective: Objective | str = "episode_reward_mean",
                 max_trials: int = 10, seed: int | None = 0, directory: str | Path = ".",
                 project_name: str = "untitled_project", overwrite: bool = False, *,
                 hyperparameters: HyperParameters | None = None, pruner: str | None = None,
                 min_resource: int = 1, reduction_factor: int = 3, n_jobs: int = 1,
                 timeout_per_trial: float | None = None, seed_workers: int = 1):
        self.hypermodel = hypermodel
        self.objective = objective if isinstance(objective, Objective) else Objective(str(objective), "max")
        self.hyperparameters = hyperparameters
        self.directory, self.project_name = Path(directory), project_name
        pruner = pruner or self.default_pruner
        self.config = SearchConfig(
            strategy=self.strategy, n_trials=max_trials, metric=self.objective.name,
            direction=self.objective.direction, enable_pruning=pruner != "none",
            pruner="asha" if pruner == "none" else pruner, min_resource=min_resource,
            reduction_factor=reduction_factor, study_dir=str(self.directory / project_name),
            study_name=project_name, n_jobs=n_jobs, timeout_per_trial=timeout_per_trial, seed=seed)
        self.engine = SearchEngine(self.config)
        self.oracle = Oracle(self)
        self._overwrite = overwrite
        self.seed_workers = seed_workers  # worker processes per trial for the default run_trial's seeds
        self._local = threading.local()
        self._runners: list[SeedPool] = []

    # ------------------------------------------------------------------ the loop
    def search(self, **kwargs: Any) -> SearchResult:
        """Run trials until max_trials are finished (continuing a stored study); kwargs go to run_trial."""
        spec = self._grid_space() if self.strategy == "grid" else None
        timeout = self.config.timeout_per_trial

        def trial_fn(trial: optuna.Trial) -> float | list[float]:
            hp = HyperParameters(trial, timeout=timeout)

            def call(params: dict, trial: optuna.Trial):
                try:
                    return self.run_trial(hp, **kwargs)
                finally:
                    trial.set_user_attr("params", study_io.plain(hp.values))
                    for key, value in self._trial_attrs().items():
                        trial.set_user_attr(key, value)

            return run_trial(trial, lambda t: {}, call, self.config.metric)

        overwrite, self._overwrite = self._overwrite, False  # only the first search() starts over
        try:
            return self.engine.optimize(trial_fn, spec, overwrite=overwrite)
        finally:
            self.close()

    def _trial_attrs(self) -> dict:
        """What a trial records beside its params (Hyperband: its bracket, round and epochs)."""
        return {}

    def close(self) -> None:
        """Stop the worker processes that trained PPO trials (search() does this when it returns)."""
        for runner in self._runners:
            runner.close()
        self._runners.clear()
        self._local = threading.local()

    def _grid_space(self):
        hp = self.hyperparameters or HyperParameters()
        if self.hyperparameters is None and self.hypermodel is not None:
            self._build(hp)  # dry run with defaults: declares the space, as Keras Tuner does
        if not hp.specs:
            raise AutoMLError(f"{type(self).__name__}: no hyperparameters to enumerate (allowed: a hypermodel, "
                              f"or hyperparameters= declaring hp.Choice/hp.Int/... in advance)")
        return hp.space()

    def _build(self, hp: HyperParameters) -> Any:
        if self.hypermodel is None:
            raise AutoMLError(f"{type(self).__name__}: no hypermodel (allowed: pass build(hp), or override run_trial)")
        build = getattr(self.hypermodel, "build", self.hypermodel)
        return awaited(build(hp))

    def run_trial(self, hp: HyperParameters, env: str = "cartpole", total_steps: int = 50_000,
                  seeds: Sequence[int] = (0,), eval_every: int | None = None, eval_episodes: int = 32,
                  device: str = "cpu", reward_weights: Mapping | None = None, trainer: str = "auto") -> dict | float:
        """Build with hp and train: PPO params -> every seed through automl.run.seed_pool (``trainer``: auto |
        sb3 | torch); an SB3 model -> learn() + evaluate."""
        built = self._build(hp)
        if isinstance(built, Mapping):
            return self._train_params(dict(built), hp, env=env, total_steps=total_steps, seeds=seeds,
                                      eval_every=eval_every, eval_episodes=eval_episodes, device=device,
                                      reward_weights=reward_weights, trainer=trainer)
        if hasattr(built, "learn") and hasattr(built, "policy"):
            return self._train_model(built, total_steps, eval_episodes)
        raise AutoMLError(f"{type(self).__name__}: build(hp) returned {type(built).__name__} "
                          f"(allowed: a dict of PPO params or an SB3 model)")

    def _train_params(self, params: dict, hp: HyperParameters, *, seeds: Sequence[int], **train: Any) -> dict:
        """Train on every seed with the CLI's machinery (automl.run.seed_pool): worker processes, pruning on
        evaluation k over all live seeds, a ConfigRecord kept in the trial's ``record`` attribute."""
        trial = hp.trial
        name = f"trial_{trial.number:03d}" if trial is not None else "config"
        record = self._runner().train(trial, params, seeds=seeds, deadline=hp.deadline, config_id=name,
                                      timeout_s=self.config.timeout_per_trial, **train)
        if trial is not None:
            trial.set_user_attr("record", study_io.plain(record.to_dict()))
        if record.state == State.PRUNED:
            raise optuna.TrialPruned(record.reason or "pruned")
        bad = next((s for s in record.seeds if s.get("state") != State.COMPLETE), None)
        if record.state == State.STOPPED_AT_DEADLINE:  # (config_state: any seed stopped, or one missing)
            raise TrialFailed(f"stopped at timeout_per_trial ({record.reason or 'deadline'})")
        if bad is not None:
            raise TrialFailed(f"seed {bad.get('seed')}: {bad.get('reason') or bad.get('stop_reason') or bad.get('state')}")
        metrics = {"episode_reward_mean": record.score["mean"], "iqm": record.score["iqm"],
                   "n_seeds": record.score["n_seeds"], "steps": sum(int(s.get("steps", 0)) for s in record.seeds),
                   "wall_s": sum(float(s.get("wall_s", 0.0)) for s in record.seeds)}
        for metric in PPO_METRICS:
            value = record.metric(metric)
            if value is not None:
                metrics[metric] = value
        return metrics

    def _runner(self):
        """This thread's SeedPool (Optuna runs n_jobs > 1 trials in threads; one thread drives a pool)."""
        from automl.run.seed_pool import SeedPool  # worker processes start only when a trial trains PPO

        runner = getattr(self._local, "runner", None)
        if runner is None:
            runner = self._local.runner = SeedPool(self.seed_workers)
            self._runners.append(runner)
        return runner

    def _train_model(self, model: Any, total_steps: int, eval_episodes: int) -> dict:
        from stable_baselines3.common.evaluation import evaluate_policy  # only for SB3 models the user built

        start = time.time()
        model.learn(total_steps)
        # floats: return_episode_rewards is left False
        mean, std = cast("tuple[float, float]", evaluate_policy(model, model.get_env(), n_eval_episodes=eval_episodes))
        return {"episode_reward_mean": float(mean), "episode_reward_std": float(std),
                "steps": int(model.num_timesteps), "wall_s": time.time() - start}

    # ------------------------------------------------------------------ results
    def results(self) -> SearchResult:
        """Every stored trial of this project (SearchResult)."""
        if self.engine.study is None:
            self.engine.study = study_io.open_study(self.config.study_dir, self.config.study_name,
                                                    direction=self.config.direction)
        return self.engine.result()

    def get_best_hyperparameters(self, num_trials: int = 1) -> list[HyperParameters]:
        """HyperParameters of the best trials, best first: build(hp) on one rebuilds that config."""
        return [t.hyperparameters for t in self.oracle.get_best_trials(num_trials)]

    def results_summary(self, num_trials: int = 10) -> None:
        """Print the best `num_trials` trials (hyperparameters and score), as Keras Tuner does."""
        res = self.results()
        print(f"Results summary\nResults in {Path(self.config.study_dir)}\nShowing {num_trials} best trials\n"
              f"Objective(name={self.objective.name!r}, direction={res.direction!r})\n{res.message}")
        for t in self.oracle.get_best_trials(num_trials):
            print(f"\nTrial {t.trial_id} summary\nHyperparameters:")
            for key, value in t.hyperparameters.values.items():
                print(f"{key}: {value}")
            print(f"Score: {t.score}")


def awaited(value: Any) -> Any:
    """``value``, or what it resolves to when it is awaitable (an ``async def build(hp)``): run on a fresh event
    loop, or on a helper thread's when this thread already runs one (a notebook)."""
    if not inspect.isawaitable(value):
        return value

    async def wait():
        return await value

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wait())
    out: dict = {}

    def run() -> None:
        try:
            out["value"] = asyncio.run(wait())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            out["error"] = exc

    helper = threading.Thread(target=run)
    helper.start()
    helper.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


class RandomSearch(Tuner):
    """Random sampling (Optuna RandomSampler)."""

    strategy = "random"


class BayesianOptimization(Tuner):
    """Model-based sampling (multivariate TPE)."""

    strategy = "bayesian"


class Hyperband(Tuner):
    """Keras Tuner's Hyperband: brackets of successive halving over epochs (``automl.api.hyperband``).

    ``Hyperband(build, objective, max_epochs=9, factor=3)``: each bracket starts ``size`` new configs for a few
    epochs and trains the best 1/factor of them again for ``factor`` times the epochs, up to ``max_epochs``;
    ``hyperband_iterations`` repeats the whole schedule. For PPO an epoch is ``steps_per_epoch`` env steps
    (default: the ``total_steps`` given to search() / max_epochs, so the last round trains total_steps); a
    promoted config trains again from scratch at its new length (Hyperband as published; no checkpoint is
    carried between rounds). An overridden run_trial gets ``epochs=`` (as Keras Tuner passes it to fit).
    Each search() runs the whole schedule: with overwrite=False its trials join the stored ones.
    """

    strategy = "random"   # round 0 of a bracket samples configs at random, as Keras Tuner's oracle does

    def __init__(self, hypermodel: Callable | None = None, objective: Objective | str = "episode_reward_mean",
                 max_epochs: int = 100, factor: int = 3, hyperband_iterations: int = 1, *,
                 steps_per_epoch: int | None = None, **kwargs: Any):
        from automl.api.hyperband import schedule

        kwargs.pop("max_trials", None)  # Keras Tuner's Hyperband derives it from the schedule
        kwargs.setdefault("pruner", "none")  # the brackets stop configs; an Optuna pruner may still be asked for
        self.rounds = schedule(max_epochs, factor) * int(hyperband_iterations)
        self.max_epochs, self.factor, self.steps_per_epoch = int(max_epochs), int(factor), steps_per_epoch
        super().__init__(hypermodel, objective, max(1, sum(r.size for r in self.rounds)), **kwargs)
        self._round = None  # the schedule's round running now (automl.api.hyperband.Round)

    def search(self, **kwargs: Any) -> SearchResult:
        """Every bracket's rounds in order: new configs at round 0, the best of the round before after it."""
        from automl.api.hyperband import run_schedule

        return run_schedule(self, super().search, kwargs)

    def _trial_attrs(self) -> dict:
        r = self._round
        return {} if r is None else {"hyperband": {"bracket": r.bracket, "round": r.round, "epochs": r.epochs}}

    # Keras Tuner's Hyperband signature (epochs second); every caller here passes keywords
    def run_trial(self, hp: HyperParameters, epochs: int | None = None,  # type: ignore[override]
                  total_steps: int = 50_000, **kwargs: Any) -> dict | float:
        """The default trial for ``epochs`` epochs: PPO for epochs x steps_per_epoch env steps."""
        per_epoch = self.steps_per_epoch or max(1, int(total_steps) // self.max_epochs)
        return super().run_trial(hp, total_steps=per_epoch * int(epochs or self.max_epochs), **kwargs)


class GridSearch(Tuner):
    """Every combination of the declared hp.Choice / hp.Int / stepped hp.Float values, each once."""

    strategy = "grid"
