"""Registries: search method -> Optuna sampler factory, pruner name -> Optuna pruner factory.

One dict each, no if-chains: adding a method is one line here and its name in
``automl.core.names.SEARCH_METHODS`` / ``PRUNERS`` (the list the command line checks without Optuna;
tests/test_strategies.py checks that both agree). Every sampler is seeded, so the same seed and the
same results give the same sequence of configs.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import optuna

from automl.search import space
from automl.core.config import SpaceSpec
from automl.core.errors import AutoMLError
from automl.core.names import default_pruner_for  # noqa: F401 (re-exported: strategies.default_pruner_for)


def _grid(seed: int | None, spec: SpaceSpec, **_) -> optuna.samplers.BaseSampler:
    # GridSampler's seed shuffles the visiting order; the grid itself is every combination
    return optuna.samplers.GridSampler(space.grid_search_space(spec), seed=seed)


def _random(seed: int | None, spec: SpaceSpec, **_) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


def _tpe(seed: int | None, spec: SpaceSpec, constraints_func=None, startup_trials: int | None = None):
    # multivariate TPE models interactions (lr x epochs) that independent TPE misses; with several
    # objectives it is Optuna's multi-objective TPE; constraints_func: --constraint; startup_trials:
    # --startup-trials, the random trials before TPE models anything (seed 001: "Bayesian stuck:
    # increase initial random trials"; None: Optuna's 10)
    startup: dict[str, Any] = {} if startup_trials is None else {"n_startup_trials": int(startup_trials)}
    with warnings.catch_warnings():  # multivariate is "experimental" in Optuna's terms; stable for years
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constraints_func=constraints_func, **startup)


def _nsga2(seed: int | None, spec: SpaceSpec, constraints_func=None, population: int = 8):
    # NSGA-II (several objectives, --constraint through constraints_func); a generation of `population`
    # configs (Optuna's default of 50 is more configs than most budgets here train)
    return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(2, population),
                                         constraints_func=constraints_func)


def _cmaes(seed: int | None, spec: SpaceSpec, startup_trials: int | None = None, **_) -> optuna.samplers.BaseSampler:
    # CMA-ES handles only numeric params; categorical ones (layer sizes) go to a seeded random sampler
    return optuna.samplers.CmaEsSampler(seed=seed, independent_sampler=optuna.samplers.RandomSampler(seed=seed),
                                        warn_independent_sampling=False, n_startup_trials=int(startup_trials or 1))


def _qmc(seed: int | None, spec: SpaceSpec, **_) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():  # QMCSampler is flagged experimental; its interface is all we use
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.QMCSampler(seed=seed, scramble=True,
                                          independent_sampler=optuna.samplers.RandomSampler(seed=seed),
                                          warn_independent_sampling=False, warn_asynchronous_seeding=False)


SamplerFactory = Callable[..., optuna.samplers.BaseSampler]  # (seed, spec, **options)
SEARCH_METHODS: dict[str, SamplerFactory] = {
    "grid": _grid,
    "random": _random,
    "bayesian": _tpe,
    "tpe": _tpe,
    "cmaes": _cmaes,
    "qmc": _qmc,
    "hyperband": _tpe,  # TPE proposes, the Hyperband pruner (default_pruner_for) allocates budget
    "nsga2": _nsga2,
}


def _none(min_resource, max_resource, reduction_factor) -> optuna.pruners.BasePruner:
    return optuna.pruners.NopPruner()


def _median(min_resource, max_resource, reduction_factor) -> optuna.pruners.BasePruner:
    warmup = 0 if min_resource == "auto" else min_resource
    return optuna.pruners.MedianPruner(n_warmup_steps=warmup)


def _asha(min_resource, max_resource, reduction_factor) -> optuna.pruners.BasePruner:
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=min_resource, reduction_factor=reduction_factor)


def _hyperband(min_resource, max_resource, reduction_factor) -> optuna.pruners.BasePruner:
    min_resource = 1 if min_resource == "auto" else min_resource
    return optuna.pruners.HyperbandPruner(min_resource=min_resource, max_resource=max_resource,
                                          reduction_factor=reduction_factor)


PrunerFactory = Callable[[int | str, int | str, int], optuna.pruners.BasePruner]
PRUNERS: dict[str, PrunerFactory] = {
    "none": _none,
    "median": _median,
    "asha": _asha,
    "hyperband": _hyperband,
}


def _lookup(registry: dict, name: object, flag: str):
    if name not in registry:
        raise AutoMLError(f"command line: {flag}: unknown {name!r} (allowed: {', '.join(registry)})")
    return registry[name]


def make_sampler(method: str, *, seed: int | None, spec: SpaceSpec, constraints_func=None,
                 population: int = 8, startup_trials: int | None = None) -> optuna.samplers.BaseSampler:
    """The seeded Optuna sampler for `--search-method method` over `spec` (``constraints_func``: the
    --constraint violations, for the samplers that model them: tpe and nsga2; ``startup_trials``:
    --startup-trials, the random trials TPE and CMA-ES take before modelling, None: Optuna's default)."""
    factory = _lookup(SEARCH_METHODS, method, "--search-method")
    if startup_trials is not None and (isinstance(startup_trials, bool) or not isinstance(startup_trials, int)
                                       or startup_trials < 1):
        raise AutoMLError(f"command line: --startup-trials: {startup_trials!r} (allowed: an integer >= 1)")
    if factory is _nsga2:
        return factory(seed, spec, constraints_func=constraints_func, population=population)
    if factory is _tpe:
        return factory(seed, spec, constraints_func=constraints_func, startup_trials=startup_trials)
    if factory is _cmaes:
        return factory(seed, spec, startup_trials=startup_trials)
    return factory(seed, spec)


def _resource(value: object, name: str, minimum: int) -> int | str:
    if value == "auto":
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise AutoMLError(f"command line: --{name.replace('_', '-')}: {value!r} (allowed: an integer >= {minimum} "
                          f"or 'auto')")
    return value


def make_pruner(name: str, *, min_resource: int | str = 1, max_resource: int | str = "auto",
                reduction_factor: int = 3) -> optuna.pruners.BasePruner:
    """The Optuna pruner for `--pruner name`; resources count intermediate reports (evaluations)."""
    factory = _lookup(PRUNERS, name, "--pruner")
    min_resource = _resource(min_resource, "min_resource", 1)
    max_resource = _resource(max_resource, "max_resource", 1)
    if isinstance(reduction_factor, bool) or not isinstance(reduction_factor, int) or reduction_factor < 2:
        raise AutoMLError(f"command line: --reduction-factor: {reduction_factor!r} (allowed: an integer >= 2)")
    if isinstance(min_resource, int) and isinstance(max_resource, int) and max_resource < min_resource:
        raise AutoMLError(f"command line: --max-resource: {max_resource} < min_resource {min_resource} "
                          f"(allowed: max_resource >= min_resource)")
    return factory(min_resource, max_resource, reduction_factor)


# GridSampler cannot complete a partially given trial (it raises), so grid warm-starts only from a full prior
NEEDS_COMPLETE_PRIOR = {"grid"}


def warm_start(method: str, spec: SpaceSpec) -> dict:
    """Encoded prior params to `study.enqueue_trial(...)` first; {} when there is nothing to enqueue."""
    prior = space.prior_params(spec)
    if method in NEEDS_COMPLETE_PRIOR and len(prior) < len(spec.params):
        return {}
    return space.encode_params(spec, prior)
