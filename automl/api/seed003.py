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

from typing import Any

from automl.api.engine import SearchConfig
from automl.api.search_space import SearchSpace
from automl.api.seed003_file import ALGORITHMS, add_params, config_kwargs, parse_file  # noqa: F401 - the file's API
from automl.core import seed003


def space_of(hpo: seed003.HPOFile) -> SearchSpace:
    """The file's search_space (float/int/categorical, min/max, log, step, choices) as a SearchSpace."""
    return add_params(SearchSpace(seed003.KEY), hpo)


def config_of(hpo: seed003.HPOFile, **overrides: Any) -> SearchConfig:
    """The SearchConfig the file's keys ask for; ``overrides`` (SearchConfig fields) win."""
    return SearchConfig(**{**config_kwargs(hpo), **overrides})


def load(path, **overrides: Any) -> tuple[SearchSpace, SearchConfig]:
    """(SearchSpace, SearchConfig) of a seed-003 file; ``overrides`` are SearchConfig fields (e.g. study_dir)."""
    hpo = parse_file(path)
    return space_of(hpo), config_of(hpo, **overrides)
