"""Seed 003's ``hyperparameter_optimization:`` YAML in the Python API: a SearchSpace over any names (the
seed's language-model parameters included) plus the SearchConfig its keys ask for, for a user's objective.

    space, config = load("hpo.yaml")          # or SearchSpace.from_yaml / SearchConfig.from_yaml
    result = SearchEngine(config).search(objective, space)

How each key maps (README "Seed 003's config file"): algorithm/sampler -> strategy and sampler; n_trials;
timeout_hours/timeout -> timeout (the whole search); evaluation.metric/primary_metric + direction ->
metric/direction, with secondary_metrics -> metrics + directions (several objectives, secondaries
minimized unless written name:max); constraints -> constraints; early_stopping -> enable_pruning;
patience -> patience; parallel/n_jobs -> n_jobs; seed. cross_validation/n_folds have no engine meaning
(the objective does the folds): they reach the objective as the fixed params ``cross_validation`` and
``n_folds``.
"""
from __future__ import annotations

from typing import Any, Literal, cast, overload

from automl.api.engine import SearchConfig
from automl.api.search_space import SearchSpace
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


def space_of(hpo: seed003.HPOFile) -> SearchSpace:
    """The file's search_space (float/int/categorical, min/max, log, step, choices) as a SearchSpace."""
    space = SearchSpace(seed003.KEY)
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


def config_of(hpo: seed003.HPOFile, **overrides: Any) -> SearchConfig:
    """The SearchConfig the file's keys ask for; ``overrides`` (SearchConfig fields) win."""
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
    return SearchConfig(**{**kwargs, **overrides})


def load(path, **overrides: Any) -> tuple[SearchSpace, SearchConfig]:
    """(SearchSpace, SearchConfig) of a seed-003 file; ``overrides`` are SearchConfig fields (e.g. study_dir)."""
    hpo = parse_file(path)
    return space_of(hpo), config_of(hpo, **overrides)
