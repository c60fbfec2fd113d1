"""SearchEngine: run an objective over a SearchSpace with the CLI's samplers, pruners and storage.

    engine = SearchEngine(SearchConfig(strategy="random", n_trials=10, study_dir="studies"))
    result = engine.search(lambda p: -(p["x"] - 0.3) ** 2, SearchSpace().add_float("x", 0, 1))

Samplers and pruners come from automl.search.strategies, sampling from automl.search.space (via SearchSpace),
storage is SQLite ``<study_dir>/<study_name>.db``. With n_jobs == 1 the objective runs in the
calling thread (closures and lambdas work); n_jobs > 1 runs trials in Optuna's threads.
"""
from __future__ import annotations

import inspect
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna

from automl.search import strategies
from automl.api import study_io
from automl.api.search_space import SearchSpace
from automl.api.study_io import SearchResult
from automl.core.config import SpaceSpec
from automl.core.errors import AutoMLError
from automl.core.names import PRUNERS
from automl.exec.workers import LocalChannel

STRATEGIES = ("grid", "random", "bayesian", "hyperband")
SAMPLERS = ("tpe", "cmaes", "random", "qmc")
LOG = logging.getLogger("automl.api")


@dataclass(frozen=True)
class SearchConfig:
    """How to search (the seed's SearchConfig, plus ``seed``); validated on creation."""

    strategy: str = "bayesian"  # grid | random | bayesian | hyperband
    n_trials: int = 100
    metric: str = "episode_reward_mean"  # the key optimized when the objective returns a dict
    direction: str = "maximize"  # maximize | minimize
    sampler: str = "tpe"  # for bayesian: tpe | cmaes | random (| qmc)
    enable_pruning: bool = True
    pruner: str = "asha"  # asha | hyperband | median | none (hyperband strategy always uses hyperband)
    min_resource: int = 1  # intermediate reports before pruning may start
    reduction_factor: int = 3
    study_dir: str = "studies/"
    study_name: str = "automl_search"
    n_jobs: int = 1
    timeout_per_trial: float | None = 3600  # seconds, checked at every report() (cooperative)
    seed: int | None = 0

    def __post_init__(self):
        _choice("strategy", self.strategy, STRATEGIES)
        _choice("sampler", self.sampler, SAMPLERS)
        _choice("pruner", self.pruner, PRUNERS)
        _choice("direction", self.direction, tuple(study_io.DIRECTIONS))
        object.__setattr__(self, "direction", study_io.DIRECTIONS[self.direction])
        for name, low in (("n_trials", 1), ("n_jobs", 1), ("min_resource", 1), ("reduction_factor", 2)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise AutoMLError(f"SearchConfig: {name}: {value!r} (allowed: an integer >= {low})")
        if self.timeout_per_trial is not None and not self.timeout_per_trial > 0:
            raise AutoMLError(f"SearchConfig: timeout_per_trial: {self.timeout_per_trial!r} (allowed: seconds > 0 or None)")
        if not str(self.study_name).strip():
            raise AutoMLError("SearchConfig: study_name: empty (allowed: a name)")

    @property
    def method(self) -> str:
        """The automl.search.strategies search method: grid, random, the bayesian sampler, or hyperband (TPE)."""
        return self.sampler if self.strategy == "bayesian" else self.strategy

    @property
    def pruner_name(self) -> str:
        """The automl.search.strategies pruner: hyperband for that strategy, else `pruner` when pruning is on."""
        if self.strategy == "hyperband":
            return strategies.default_pruner_for("hyperband")
        return self.pruner if self.enable_pruning else "none"


def _choice(key: str, value: object, allowed: tuple) -> None:
    if value not in allowed:
        raise AutoMLError(f"SearchConfig: {key}: unknown {value!r} (allowed: {', '.join(allowed)})")


class TrialFailed(Exception):
    """The objective raised or returned a non-finite value: the trial is recorded failed, the search goes on."""


class TrialContext:
    """Handed to objectives taking a second argument: report intermediate values for pruning."""

    def __init__(self, trial: optuna.Trial, timeout: float | None):
        self.trial = trial
        self.number = trial.number
        self._deadline = time.time() + timeout if timeout else None
        self._step = 0

    def report(self, value: float, step: int | None = None) -> None:
        """Record an intermediate value; raises optuna.TrialPruned when the pruner stops this trial."""
        step = self._step if step is None else int(step)
        self._step = step + 1
        self.trial.report(float(value), step)
        if self._deadline is not None and time.time() > self._deadline:
            raise TrialFailed(f"stopped: timeout_per_trial exceeded at step {step}")
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step}")

    def should_prune(self) -> bool:
        """Whether the pruner would stop this trial now."""
        return self.trial.should_prune()

    def channel(self):
        """A channel for automl.train.sb3_train.train_seed(channel=...): its evaluations feed this trial's pruner."""
        return PruneChannel(self.trial)

    def set_user_attr(self, key: str, value: Any) -> None:
        """Store extra information with the trial."""
        self.trial.set_user_attr(key, study_io.plain(value))


class PruneChannel(LocalChannel):
    """A trainer's channel (``automl.exec``'s in-process one) whose evaluations feed the trial's pruner:
    a prune decision is a stop request, as the run's scheduler makes it."""

    def __init__(self, trial: optuna.Trial | None):
        super().__init__()
        self.trial = trial

    def report(self, payload: Mapping) -> None:
        """Report one evaluation (eval_index, value) as an intermediate value."""
        super().report(payload)
        if self.trial is None:
            return
        self.trial.report(float(payload["value"]), int(payload["eval_index"]))
        if not self.stop_requested() and self.trial.should_prune():
            self.stop(f"pruned at evaluation {payload['eval_index']}")

    @property
    def reason(self) -> str | None:
        """Why training was asked to stop (None: it was not)."""
        return self.stop_reason()


def split_value(out: Any, metric: str) -> tuple[float, dict]:
    """(value to optimize, metrics) from an objective's float or dict of metrics."""
    if isinstance(out, Mapping):
        if metric not in out:
            raise AutoMLError(f"objective: returned metrics {', '.join(map(str, out)) or 'none'} without "
                              f"{metric!r} (allowed: a float, or a dict holding SearchConfig.metric)")
        metrics = study_io.plain(dict(out))
        out = out[metric]
    else:
        metrics = None
    try:
        value = float(out)
    except (TypeError, ValueError):
        raise AutoMLError(f"objective: returned {type(out).__name__} (allowed: a number or a dict of numbers)") from None
    return value, metrics if metrics is not None else {metric: study_io.plain(value)}


def run_trial(trial: optuna.Trial, sample: Callable, call: Callable, metric: str) -> float:
    """One trial: sample params, call the objective, record metrics; failures become TrialFailed."""
    try:
        return _run_trial(trial, sample, call, metric)
    except TrialFailed as exc:
        LOG.warning("trial %d failed (recorded, the search goes on): %s", trial.number, exc)
        raise


def _run_trial(trial: optuna.Trial, sample: Callable, call: Callable, metric: str) -> float:
    try:
        params = sample(trial)
    except AutoMLError as exc:  # e.g. a rejecting constraint: this config, not the search, failed
        trial.set_user_attr("error", str(exc))
        raise TrialFailed(str(exc)) from None
    trial.set_user_attr("params", study_io.plain(params))
    try:
        out = call(params, trial)
    except optuna.TrialPruned:
        raise
    except TrialFailed as exc:
        trial.set_user_attr("error", str(exc))
        raise
    except Exception as exc:  # the objective crashed on this config (AutoMLError too): record it, go on
        trial.set_user_attr("error", study_io.one_line(exc))
        raise TrialFailed(study_io.one_line(exc)) from exc
    value, metrics = split_value(out, metric)
    trial.set_user_attr("metrics", metrics)
    if not math.isfinite(value):
        trial.set_user_attr("error", f"objective returned {value}")
        raise TrialFailed(f"objective returned {value}")
    return value


def _wants_context(fn: Callable) -> bool:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


class SearchEngine:
    """search(objective_fn, space) -> SearchResult; resume(study_path); best_params(); best_value()."""

    def __init__(self, config: SearchConfig | None = None):
        self.config = config or SearchConfig()
        self.study: optuna.Study | None = None
        self._objective: Callable | None = None
        self._space: SearchSpace | None = None

    @property
    def storage(self) -> str:
        """The SQLite URL of this engine's study."""
        return study_io.sqlite_url(study_io.db_path(self.config.study_dir, self.config.study_name))

    def search(self, objective_fn: Callable, space: SearchSpace) -> SearchResult:
        """Run trials until the study holds n_trials finished ones (an existing study is continued).

        objective_fn(params) or objective_fn(params, ctx) returns a float or a dict of metrics
        (SearchConfig.metric is optimized); ctx.report(value, step) feeds the pruner.
        """
        if not isinstance(space, SearchSpace):
            raise AutoMLError(f"SearchEngine.search: space is {type(space).__name__} (allowed: a SearchSpace)")
        if not callable(objective_fn):
            raise AutoMLError("SearchEngine.search: objective_fn is not callable (allowed: a function of params)")
        if self.config.strategy == "grid" and space.has_conditionals:
            raise AutoMLError("SearchEngine: strategy: grid cannot enumerate conditional sub-spaces "
                              "(allowed: random, bayesian or hyperband)")
        self._objective, self._space = objective_fn, space
        with_ctx = _wants_context(objective_fn)
        timeout = self.config.timeout_per_trial

        def call(params: dict, trial: optuna.Trial):
            return objective_fn(params, TrialContext(trial, timeout)) if with_ctx else objective_fn(params)

        def sample(trial: optuna.Trial) -> dict:
            params = space.suggest(trial)
            rejected = space.violated(params)
            if rejected:
                trial.set_user_attr("rejected", True)
                raise AutoMLError(f"rejected by constraint {rejected[0]!r}")
            return params

        return self.optimize(lambda trial: run_trial(trial, sample, call, self.config.metric), space.spec)

    def optimize(self, trial_fn: Callable[[optuna.Trial], float], spec: SpaceSpec | None = None,
                 *, overwrite: bool = False) -> SearchResult:
        """Run ``trial_fn(trial) -> float`` (raising TrialFailed / TrialPruned) up to n_trials; the shared loop."""
        cfg = self.config
        existing = study_io.study_names(study_io.db_path(cfg.study_dir, cfg.study_name))
        n_before = 0
        if cfg.study_name in existing and not overwrite:
            n_before = len(study_io.open_study(cfg.study_dir, cfg.study_name, direction=cfg.direction).trials)
        # the sampler is reseeded past the stored trials so a resumed search does not replay its first draws
        seed = None if cfg.seed is None else cfg.seed + n_before
        sampler = strategies.make_sampler(cfg.method, seed=seed, spec=spec or SpaceSpec("api", "<api>"))
        pruner = strategies.make_pruner(cfg.pruner_name, min_resource=cfg.min_resource,
                                        reduction_factor=cfg.reduction_factor)
        self.study = study_io.open_study(cfg.study_dir, cfg.study_name, direction=cfg.direction,
                                         sampler=sampler, pruner=pruner, overwrite=overwrite)
        study_io.retry_interrupted(self.study)
        remaining = cfg.n_trials - study_io.finished(self.study)
        if remaining > 0:
            verbosity = optuna.logging.get_verbosity()
            optuna.logging.set_verbosity(optuna.logging.ERROR)  # failures are logged in one line below, no traceback
            try:
                self.study.optimize(trial_fn, n_trials=remaining, n_jobs=cfg.n_jobs, catch=(TrialFailed,),
                                    gc_after_trial=False)
            finally:
                optuna.logging.set_verbosity(verbosity)
        return self.result()

    def resume(self, study_path: str | Path, objective_fn: Callable | None = None,
               space: SearchSpace | None = None) -> SearchResult:
        """Continue the study stored at ``study_path`` (a .db file or its directory) up to n_trials.

        The objective and space are the ones given here, else those of this engine's last search().
        """
        db, name = study_io.locate(study_path, None if Path(study_path).is_file() else self.config.study_name)
        self.config = replace(self.config, study_dir=str(db.parent), study_name=name)
        objective_fn, space = objective_fn or self._objective, space or self._space
        if objective_fn is None or space is None:
            self.study = study_io.open_study(db.parent, name, direction=self.config.direction)
            if study_io.finished(self.study) < self.config.n_trials:
                raise AutoMLError(f"{db}: resume: trials remain but no objective is known "
                                  f"(allowed: resume(path, objective_fn, space) or search() first)")
            return self.result()
        return self.search(objective_fn, space)

    def result(self) -> SearchResult:
        """The SearchResult of this engine's study as stored now."""
        return study_io.result(self._require_study(), storage=self.storage)

    def _require_study(self) -> optuna.Study:
        if self.study is None:
            raise AutoMLError("SearchEngine: no study yet (allowed: call search() or resume() first)")
        return self.study

    def best_params(self) -> dict:
        """Params of the best complete trial; AutoMLError when none completed."""
        res = self.result()
        if res.best_params is None:
            raise AutoMLError(f"study {res.study_name!r}: {res.message}")
        return res.best_params

    def best_value(self) -> float:
        """Value of the best complete trial; AutoMLError when none completed."""
        res = self.result()
        if res.best_value is None:
            raise AutoMLError(f"study {res.study_name!r}: {res.message}")
        return res.best_value
