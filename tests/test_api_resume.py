"""SearchEngine.resume(study_path) from the study alone (seed 000's `resume(self, study_path) -> SearchResult`):
the study records the objective (module:qualname), the space and the config; a new process continues it.
What cannot be recorded (a lambda, a callable condition) is asked for in one line."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from _api_objectives import quadratic, two_costs
from _cli import ROOT

from automl import SearchConfig, SearchEngine, SearchSpace
from automl.core.errors import AutoMLError

RESUME = """
import json, sys
from automl import SearchConfig, SearchEngine
result = SearchEngine(SearchConfig(n_trials=int(sys.argv[2]))).resume(sys.argv[1])   # nothing but the path
print(json.dumps({"n": result.n_complete, "best": result.best_params, "directions": result.directions,
                  "params": {t.number: t.params for t in result.trials}}))
"""


def _resume_in_a_new_process(path, n_trials):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", RESUME, str(path), str(n_trials)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_new_process_resumes_from_the_study_path_alone(tmp_path):
    space = SearchSpace().add_float("x", 0.0, 1.0).add_fixed("width", 3)
    first = SearchEngine(SearchConfig(strategy="random", n_trials=5, study_dir=str(tmp_path), seed=1))
    before = {t.number: t.params for t in first.search(quadratic, space).trials}
    seen = _resume_in_a_new_process(tmp_path / "automl_search.db", 12)
    assert seen["n"] == 12                                         # 7 more trials of the recorded objective
    assert {int(k): v for k, v in seen["params"].items() if int(k) < 5} == before   # the first five untouched
    assert all(p["width"] == 3 for p in seen["params"].values())   # the recorded space, fixed values included
    assert abs(seen["best"]["x"] - 0.3) < 0.2                      # the known optimum is approached


def test_the_recorded_config_brings_its_directions_back(tmp_path):
    space = SearchSpace().add_categorical("x", [0.0, 0.5, 1.0]).add_categorical("y", [0.0, 1.0])
    SearchEngine(SearchConfig(strategy="random", n_trials=3, directions=["minimize", "minimize"],
                              study_dir=str(tmp_path))).search(two_costs, space)
    seen = _resume_in_a_new_process(tmp_path, 5)                  # a directory holding one study
    assert seen["n"] == 5 and seen["directions"] == ["minimize", "minimize"]


def test_what_the_study_cannot_hold_is_asked_for_in_one_line(tmp_path):
    space = SearchSpace().add_float("x", 0.0, 1.0)
    SearchEngine(SearchConfig(strategy="random", n_trials=2, study_dir=str(tmp_path))).search(lambda p: p["x"], space)
    with pytest.raises(AutoMLError) as err:
        SearchEngine(SearchConfig(n_trials=4)).resume(tmp_path / "automl_search.db")
    assert "is a lambda or a nested function, which cannot be imported (allowed: resume(study_path, objective_fn)" \
        in str(err.value)
    assert SearchEngine(SearchConfig(n_trials=4)).resume(tmp_path / "automl_search.db", quadratic).n_complete == 4

    cond = SearchSpace().add_float("x", 0.0, 1.0).add_conditional("more", lambda p: p["x"] > 0.5,
                                                                  SearchSpace().add_float("z", 0.0, 1.0))
    SearchEngine(SearchConfig(strategy="random", n_trials=2, study_dir=str(tmp_path / "c"))).search(quadratic, cond)
    with pytest.raises(AutoMLError, match=r"the condition of 'more' is a callable, which a study cannot store "
                                          r"\(allowed: an expression string\) \(allowed: resume\(study_path, "
                                          r"objective_fn, space\)\)"):
        SearchEngine(SearchConfig(n_trials=4)).resume(tmp_path / "c")
