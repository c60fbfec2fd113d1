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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna

from automl.search import strategies, studies
from automl.api import scoring, study_io, study_meta
from automl.api.scoring import split_value
from automl.api.search_space import SearchSpace
from automl.api.study_io import SearchResult
from automl.core.config import SpaceSpec
from automl.core.errors import AutoMLError
from automl.core.names import PRUNERS
from automl.exec.workers import LocalChannel

STRATEGIES = ("grid", "random", "bayesian", "hyperband")
SAMPLERS = ("tpe", "cmaes", "random", "qmc", "nsga2")
MULTI_SAMPLERS = ("tpe", "random", "qmc", "nsga2")  # samplers that optimise several objectives
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
    directions: tuple = ()  # several objectives (seed 003: directions=['minimize', 'minimize']); one: `direction`
    metrics: tuple = ()  # the objectives' names (dict keys, or the positions of a returned tuple)
    constraints: tuple = ()  # 'memory_usage <= 2048' strings or {metric: (min, max)}; broken ones never win
    timeout: float | None = None  # seconds for the whole search (Optuna's study.optimize timeout)
    patience: int | None = None  # stop a trial after this many report()s without improvement

    def __post_init__(self):
        _choice("strategy", self.strategy, STRATEGIES)
        _choice("sampler", self.sampler, SAMPLERS)
        _choice("pruner", self.pruner, PRUNERS)
        _choice("direction", self.direction, tuple(study_io.DIRECTIONS))
        object.__setattr__(self, "direction", study_io.DIRECTIONS[self.direction])
        self._check_objectives()
        for name, low in (("n_trials", 1), ("n_jobs", 1), ("min_resource", 1), ("reduction_factor", 2)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise AutoMLError(f"SearchConfig: {name}: {value!r} (allowed: an integer >= {low})")
        if self.timeout_per_trial is not None and not self.timeout_per_trial > 0:
            raise AutoMLError(f"SearchConfig: timeout_per_trial: {self.timeout_per_trial!r} (allowed: seconds > 0 or None)")
        if not str(self.study_name).strip():
            raise AutoMLError("SearchConfig: study_name: empty (allowed: a name)")

    def _check_objectives(self) -> None:
        for d in self.directions:
            _choice("directions", d, tuple(study_io.DIRECTIONS))
        directions = tuple(study_io.DIRECTIONS[d] for d in self.directions)
        metrics = tuple(str(m) for m in ([self.metrics] if isinstance(self.metrics, str) else self.metrics))
        if metrics and not directions:
            directions = (self.direction,) * len(metrics)
        if metrics and len(metrics) != len(directions):
            raise AutoMLError(f"SearchConfig: metrics: {len(metrics)} names for {len(directions)} directions "
                              f"(allowed: one name per direction)")
        if len(directions) == 1:
            object.__setattr__(self, "direction", directions[0])
            object.__setattr__(self, "metric", metrics[0] if metrics else self.metric)
        object.__setattr__(self, "directions", directions)
        object.__setattr__(self, "metrics", metrics)
        object.__setattr__(self, "constraints", scoring.constraint_texts(self.constraints))
        self.scoring  # the constraints parse
        if self.multi and (self.strategy == "hyperband" or (self.strategy == "bayesian" and self.sampler not in MULTI_SAMPLERS)):
            what = "strategy: hyperband" if self.strategy == "hyperband" else f"sampler: {self.sampler}"
            raise AutoMLError(f"SearchConfig: {what} optimises one objective (allowed with several directions: "
                              f"strategy random or grid, or bayesian with sampler {', '.join(MULTI_SAMPLERS)})")
        for name, value in (("timeout", self.timeout), ("patience", self.patience)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
                raise AutoMLError(f"SearchConfig: {name}: {value!r} (allowed: a number > 0 or None)")

    @property
    def multi(self) -> bool:
        """Several objectives (a multi-objective study, results on a Pareto front)."""
        return len(self.directions) > 1

    @property
    def scoring(self) -> scoring.Scoring:
        """Objective names, directions and parsed constraints (automl.api.scoring)."""
        return scoring.Scoring.of(self.metric, self.directions or (self.direction,), self.metrics, self.constraints)

    @classmethod
    def from_yaml(cls, path, **overrides) -> SearchConfig:
        """The engine settings of seed 003's hyperparameter_optimization: file (automl.api.seed003)."""
        from automl.api.seed003_file import config_kwargs, parse_file

        return cls(**{**config_kwargs(parse_file(path)), **overrides})

    @property
    def method(self) -> str:
        """The automl.search.strategies search method: grid, random, the bayesian sampler, or hyperband (TPE)."""
        return self.sampler if self.strategy == "bayesian" else self.strategy

    @property
    def pruner_name(self) -> str:
        """The automl.search.strategies pruner: hyperband for that strategy, else `pruner` when pruning is on
        (none with several objectives: Optuna prunes one objective only)."""
        if self.multi:
            return "none"
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

    def __init__(self, trial: optuna.Trial, timeout: float | None, *, multi: bool = False,
                 patience: int | None = None, direction: str = "maximize"):
        self.trial = trial
        self.number = trial.number
        self._deadline = time.time() + timeout if timeout else None
        self._step = 0
        self._multi = multi  # several objectives: Optuna neither stores nor prunes intermediate values
        self._patience, self._sign = patience, 1.0 if direction == "maximize" else -1.0
        self._best, self._since = -math.inf, 0

    def report(self, value: float, step: int | None = None) -> None:
        """Record an intermediate value; raises optuna.TrialPruned when the pruner stops this trial (or when
        SearchConfig.patience reports in a row brought no improvement)."""
        step = self._step if step is None else int(step)
        self._step = step + 1
        if not self._multi:
            self.trial.report(float(value), step)
        if self._deadline is not None and time.time() > self._deadline:
            raise TrialFailed(f"stopped: timeout_per_trial exceeded at step {step}")
        if self._patience is not None:
            better = self._sign * float(value) > self._best
            self._best, self._since = (self._sign * float(value), 0) if better else (self._best, self._since + 1)
            if self._since >= self._patience:
                raise optuna.TrialPruned(f"no improvement in {self._patience} reports (patience) at step {step}")
        if self.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step}")

    def should_prune(self) -> bool:
        """Whether the pruner would stop this trial now (never with several objectives)."""
        return not self._multi and self.trial.should_prune()

    def channel(self):
        """A channel for automl.train.sb3_train.train_seed(channel=...): its evaluations feed this trial's pruner."""
        return PruneChannel(None if self._multi else self.trial)

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


def run_trial(trial: optuna.Trial, sample: Callable, call: Callable, metric: str,
              score: scoring.Scoring | None = None) -> float | list[float]:
    """One trial: sample params, call the objective, record metrics (and constraint violations, with
    ``score``); failures become TrialFailed. Several objectives: a list of values."""
    try:
        return _run_trial(trial, sample, call, metric, score)
    except TrialFailed as exc:
        LOG.warning("trial %d failed (recorded, the search goes on): %s", trial.number, exc)
        raise


def _run_trial(trial: optuna.Trial, sample: Callable, call: Callable, metric: str,
               score: scoring.Scoring | None = None) -> float | list[float]:
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
    values, metrics = score.split(out) if score is not None and score.multi else _one(split_value(out, metric))
    trial.set_user_attr("metrics", metrics)
    if score is not None and score.constraints:  # Optuna's constraints_func reads them (<= 0 holds)
        trial.set_user_attr(studies.VIOLATIONS, score.violations(metrics))
    bad = next((v for v in values if not math.isfinite(v)), None)
    if bad is not None:
        trial.set_user_attr("error", f"objective returned {bad}")
        raise TrialFailed(f"objective returned {bad}")
    return values if len(values) > 1 else values[0]


def _one(split: tuple[float, dict]) -> tuple[list[float], dict]:
    return [split[0]], split[1]


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
        (SearchConfig.metric is optimized; with several directions a tuple or a dict holding
        SearchConfig.metrics); ctx.report(value, step) feeds the pruner.
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
        cfg = self.config
        timeout, score = cfg.timeout_per_trial, cfg.scoring

        def call(params: dict, trial: optuna.Trial):
            if not with_ctx:
                return objective_fn(params)
            return objective_fn(params, TrialContext(trial, timeout, multi=cfg.multi, patience=cfg.patience,
                                                     direction=cfg.directions[0] if cfg.directions else cfg.direction))

        def sample(trial: optuna.Trial) -> dict:
            params = space.suggest(trial)
            rejected = space.violated(params)
            if rejected:
                trial.set_user_attr("rejected", True)
                raise AutoMLError(f"rejected by constraint {rejected[0]!r}")
            return params

        return self.optimize(lambda trial: run_trial(trial, sample, call, cfg.metric, score), space.spec,
                             describe=lambda study: study_meta.record(study, objective_fn, space, cfg))

    def optimize(self, trial_fn: Callable[[optuna.Trial], float | Sequence[float]], spec: SpaceSpec | None = None,
                 *, overwrite: bool = False, describe: Callable | None = None) -> SearchResult:
        """Run ``trial_fn(trial) -> float`` (raising TrialFailed / TrialPruned) up to n_trials; the shared loop.
        ``describe(study)`` records what a later resume(study_path) needs."""
        cfg = self.config
        existing = study_io.study_names(study_io.db_path(cfg.study_dir, cfg.study_name))
        n_before = 0
        if cfg.study_name in existing and not overwrite:
            n_before = len(study_io.open_study(cfg.study_dir, cfg.study_name, direction=cfg.direction,
                                               directions=cfg.directions).trials)
        # the sampler is reseeded past the stored trials so a resumed search does not replay its first draws
        seed = None if cfg.seed is None else cfg.seed + n_before
        sampler = strategies.make_sampler(cfg.method, seed=seed, spec=spec or SpaceSpec("api", "<api>"),
                                          constraints_func=cfg.scoring.constraints_func())
        pruner = strategies.make_pruner(cfg.pruner_name, min_resource=cfg.min_resource,
                                        reduction_factor=cfg.reduction_factor)
        self.study = study_io.open_study(cfg.study_dir, cfg.study_name, direction=cfg.direction,
                                         directions=cfg.directions, sampler=sampler, pruner=pruner, overwrite=overwrite)
        if describe is not None:
            describe(self.study)
        study_io.retry_interrupted(self.study)
        remaining = cfg.n_trials - study_io.finished(self.study)
        if remaining > 0:
            verbosity = optuna.logging.get_verbosity()
            optuna.logging.set_verbosity(optuna.logging.ERROR)  # failures are logged in one line below, no traceback
            try:
                self.study.optimize(trial_fn, n_trials=remaining, n_jobs=cfg.n_jobs, catch=(TrialFailed,),
                                    gc_after_trial=False, timeout=cfg.timeout)
            finally:
                optuna.logging.set_verbosity(verbosity)
        return self.result()

    def resume(self, study_path: str | Path, objective_fn: Callable | None = None,
               space: SearchSpace | None = None) -> SearchResult:
        """Continue the study stored at ``study_path`` (a .db file or its directory) up to n_trials.

        The objective and space are the ones given here, else this engine's last search()'s, else the ones
        the study recorded (the objective's module:qualname, imported; the space; the config's settings
        where this engine's config keeps the defaults). What cannot be found is named in one line.
        """
        db, name = study_io.locate(study_path, None if Path(study_path).is_file() else self.config.study_name)
        meta = study_meta.stored(db, name)
        self.config = replace(study_meta.config(meta, self.config, SearchConfig()), study_dir=str(db.parent),
                              study_name=name)
        objective_fn, space = objective_fn or self._objective, space or self._space
        if objective_fn is None or space is None:
            self.study = study_io.open_study(db.parent, name, direction=self.config.direction,
                                             directions=self.config.directions)
            if study_io.finished(self.study) >= self.config.n_trials:
                return self.result()
            objective_fn = objective_fn or study_meta.objective(meta, str(db))
            space = space or study_meta.space(meta, str(db))
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

    def best_value(self) -> float | tuple[float, ...]:
        """Value of the best complete trial (a tuple with several objectives); AutoMLError when none completed."""
        res = self.result()
        if res.best_value is None:
            raise AutoMLError(f"study {res.study_name!r}: {res.message}")
        return res.best_value
