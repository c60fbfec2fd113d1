"""Seed 003's ``hyperparameter_optimization:`` file read for the Python API, without the API's classes (so
``SearchSpace.from_yaml`` and ``SearchConfig.from_yaml`` use it with no import back): the validated file,
its search space added to a space, and the SearchConfig fields its keys ask for. ``automl.api.seed003``
builds the SearchSpace and SearchConfig from them.
"""
from __future__ import annotations

from typing import Any, Literal, cast, overload

from automl.core import seed003
from automl.core.config import load_yaml
from automl.core.errors import AutoMLError

# the seed's algorithm words -> (strategy, sampler)
ALGORITHMS = {"bayesian": ("bayesian", "tpe"), "tpe": ("bayesian", "tpe"), "cmaes": ("bayesian", "cmaes"),
              "qmc": ("bayesian", "qmc"), "nsga2": ("bayesian", "nsga2"), "random": ("random", "tpe"),
              "grid": ("grid", "tpe"), "hyperband": ("hyperband", "tpe")}


@overload
def parse_file(path, *, strict: Literal[True] = ...) -> seed003.HPOFile: ...
@overload
def parse_file(path, *, strict: bool) -> seed003.HPOFile | None: ...
def parse_file(path, *, strict: bool = True) -> seed003.HPOFile | None:
    """The validated file; with ``strict=False`` None when the file is not in seed 003's format."""
    raw = load_yaml(path)
    if not seed003.is_hpo(raw):
        if strict:
            raise AutoMLError(f"{path}: top level: no {seed003.KEY!r} key (allowed: seed 003's "
                              f"{seed003.KEY}: mapping)")
        return None
    return seed003.parse(raw, str(path))


def add_params(space, hpo: seed003.HPOFile):
    """Add the file's search_space (float/int/categorical, min/max, log, step, choices) to ``space`` (a
    SearchSpace); returns it."""
    for p in hpo.params:
        if p.type == "categorical":
            space.add_categorical(p.name, list(p.choices))
            continue
        low, high = cast(float, p.low), cast(float, p.high)  # a numeric param has both (seed003.parse_param)
        if p.type == "int":
            space.add_int(p.name, int(low), int(high), step=int(p.step or 1), log=p.log)
        else:
            space.add_float(p.name, float(low), float(high), log=p.log, step=p.step)
    if hpo.cross_validation is not None or hpo.n_folds is not None:  # the objective's own folds
        space.add_fixed("cross_validation", hpo.folds != 1)
        space.add_fixed("n_folds", hpo.folds)
    return space


def config_kwargs(hpo: seed003.HPOFile) -> dict[str, Any]:
    """The SearchConfig fields the file's keys ask for."""
    strategy, sampler = ALGORITHMS[hpo.algorithm]
    kwargs: dict[str, Any] = {"strategy": strategy, "sampler": hpo.sampler or sampler}
    if hpo.metrics:
        names = tuple(n for n, _ in hpo.metrics)
        directions = tuple(d for _, d in hpo.metrics)
        if len(names) == 1:
            kwargs.update(metric=names[0], direction=directions[0])
        else:
            kwargs.update(metric=names[0], direction=directions[0], metrics=names, directions=directions)
    if hpo.pruner is not None:
        kwargs["pruner"] = hpo.pruner
    if hpo.early_stopping is not None:
        kwargs["enable_pruning"] = hpo.early_stopping
    for key, value in (("n_trials", hpo.n_trials), ("timeout", hpo.timeout_s), ("patience", hpo.patience),
                       ("n_jobs", hpo.n_jobs), ("seed", hpo.seed)):
        if value is not None:
            kwargs[key] = value
    if hpo.constraints:
        kwargs["constraints"] = hpo.constraints
    return kwargs
