"""SearchConfig(directions=[...], constraints=[...]) and the Pareto results in the Python API (seed 003's
multi-objective optimisation and OptimizationObjective constraints), on the code the CLI's --metrics and
--constraint use (automl.core.objectives, Optuna's samplers with constraints_func)."""
from __future__ import annotations

import re

import pytest

from automl import SearchConfig, SearchEngine, SearchSpace
from automl.core.errors import AutoMLError
from automl.core.objectives import parse_constraint

# a 3 x 2 grid: (f1, f2) = (x, 1 - x + y); the front is y = 0: (0, 1), (0.5, 0.5), (1, 0); its knee (0.5, 0.5)
GRID = SearchSpace().add_categorical("x", [0.0, 0.5, 1.0]).add_categorical("y", [0.0, 1.0])


def _two(p):
    return p["x"], 1.0 - p["x"] + p["y"]


def test_the_seeds_directions_give_the_known_pareto_front_knee_first(tmp_path):
    cfg = SearchConfig(strategy="grid", n_trials=6, directions=["minimize", "minimize"], study_dir=str(tmp_path))
    result = SearchEngine(cfg).search(_two, GRID)
    front = [(t.params["x"], t.params["y"]) for t in result.best_trials]
    assert front[0] == (0.5, 0.0) and sorted(front) == [(0.0, 0.0), (0.5, 0.0), (1.0, 0.0)]
    assert result.best_params == {"x": 0.5, "y": 0.0} and result.best_value == (0.5, 0.5)
    assert all(len(t.values) == 2 for t in result.trials) and result.n_complete == 6


def test_constraints_exclude_infeasible_trials_with_the_clis_violation(tmp_path):
    cfg = SearchConfig(strategy="grid", n_trials=6, directions=["minimize", "minimize"], metrics=["f1", "f2"],
                       constraints=["f1 >= 0.5"], study_dir=str(tmp_path))
    result = SearchEngine(cfg).search(_two, GRID)
    assert sorted((t.params["x"], t.params["y"]) for t in result.best_trials) == [(0.5, 0.0), (1.0, 0.0)]
    x0 = next(t for t in result.trials if t.params == {"x": 0.0, "y": 0.0})
    cli = parse_constraint("f1 >= 0.5", any_metric=True).violation({"f1": 0.0})  # the CLI's own arithmetic
    assert x0.violations == [cli] == [0.5] and not x0.feasible


def test_optunas_own_front_with_constraints_func_matches_best_trials(tmp_path):
    space = SearchSpace().add_float("x", 0.0, 1.0).add_float("y", 0.0, 1.0)
    cfg = SearchConfig(strategy="bayesian", sampler="tpe", n_trials=16, directions=["minimize", "minimize"],
                       metrics=["f1", "f2"], constraints=["f2 <= 0.8"], study_dir=str(tmp_path))
    engine = SearchEngine(cfg)
    result = engine.search(_two, space)
    assert {t.number for t in engine.study.best_trials} == {t.number for t in result.best_trials}  # Optuna agrees
    assert result.best_trials and all(t.metrics["f2"] <= 0.8 for t in result.best_trials)


def test_one_objective_with_the_seeds_min_max_constraints_picks_the_best_feasible(tmp_path):
    space = SearchSpace().add_categorical("x", [1.0, 2.0, 3.0, 4.0])
    cfg = SearchConfig(strategy="grid", n_trials=4, metric="score", direction="maximize",
                       constraints={"cost": (None, 2.5)}, study_dir=str(tmp_path))   # OptimizationObjective's form
    result = SearchEngine(cfg).search(lambda p: {"score": p["x"], "cost": p["x"]}, space)
    assert result.best_params == {"x": 2.0} and result.best_value == 2.0      # x = 3 and 4 score more but cost too much
    assert [t.number for t in result.best_trials] == [result.trials[[t.params["x"] for t in result.trials].index(2.0)].number]


def test_bad_multi_objective_settings_are_one_line(tmp_path):
    for kwargs, words in [(dict(directions=["minimize", "minimize"], sampler="cmaes"),
                           "sampler: cmaes optimises one objective (allowed with several directions"),
                          (dict(directions=["minimize", "minimize"], strategy="hyperband"), "strategy: hyperband"),
                          (dict(directions=["minimize"], metrics=["a", "b"]), "metrics: 2 names for 1 directions"),
                          (dict(directions=["down"]), "directions: unknown 'down'"),
                          (dict(constraints=["a == 1"]), "is not one comparison")]:
        with pytest.raises(AutoMLError, match=re.escape(words)):
            SearchConfig(**kwargs)
    cfg = SearchConfig(strategy="random", n_trials=2, directions=["minimize", "minimize"], study_dir=str(tmp_path))
    with pytest.raises(AutoMLError, match=re.escape("objective: returned 3 values for 2 objectives")):
        SearchEngine(cfg).search(lambda p: (1.0, 2.0, 3.0), GRID)    # as a wrong return type with one objective
