"""Python API: SearchEngine / SearchSpace / SearchConfig, with known answers (seed 000's gate 1)."""
from __future__ import annotations

import dataclasses
import math
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import automl
from automl import SearchConfig, SearchEngine, SearchSpace
from automl.core.errors import AutoMLError

ROOT = Path(__file__).resolve().parents[1]


def _quadratic(p):
    return -(p["x"] - 0.3) ** 2


def _space():
    return SearchSpace().add_float("x", 0.0, 1.0)


def test_top_level_names_are_lazy():
    code = ("import sys, automl; heavy = [m for m in ('optuna', 'torch') if m in sys.modules]; "
            "from automl import SearchEngine, SearchConfig, SearchSpace, SearchResult, TrialManager, "
            "LearningRateFinder, LRFinderConfig, RandomSearch, BayesianOptimization, Hyperband, GridSearch, "
            "Objective, HyperParameters; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    with pytest.raises(AttributeError):
        automl.NotAThing  # noqa: B018


def test_random_search_improves_on_first_trial(tmp_path):
    engine = SearchEngine(SearchConfig(strategy="random", n_trials=10, study_dir=str(tmp_path), seed=3))
    result = engine.search(_quadratic, _space())
    assert len(result.trials) == 10 and result.n_complete == 10
    first = result.trials[0].value
    assert engine.best_value() > first
    assert engine.best_params()["x"] == result.best_params["x"]
    assert abs(engine.best_params()["x"] - 0.3) < abs(result.trials[0].params["x"] - 0.3)
    assert (tmp_path / "automl_search.db").is_file()


@pytest.mark.parametrize("strategy,sampler", [("bayesian", "tpe"), ("bayesian", "cmaes"), ("hyperband", "tpe")])
def test_model_based_strategies_find_the_optimum(tmp_path, strategy, sampler):
    config = SearchConfig(strategy=strategy, sampler=sampler, n_trials=20, study_dir=str(tmp_path), seed=0)
    result = SearchEngine(config).search(_quadratic, _space())
    assert abs(result.best_params["x"] - 0.3) < 0.1


def test_grid_enumerates_every_combination(tmp_path):
    space = SearchSpace().add_categorical("a", [1, 2, 3]).add_categorical("net", [[8], [16, 16]])
    seen = []
    config = SearchConfig(strategy="grid", n_trials=50, study_dir=str(tmp_path))
    result = SearchEngine(config).search(lambda p: seen.append(p) or p["a"] * len(p["net"]), space)
    assert sorted((p["a"], tuple(p["net"])) for p in seen) == sorted(
        (a, n) for a in (1, 2, 3) for n in ((8,), (16, 16)))
    assert result.best_value == 6 and result.best_params == {"a": 3, "net": [16, 16]}


def test_minimize_and_dict_metrics(tmp_path):
    config = SearchConfig(strategy="random", n_trials=8, study_dir=str(tmp_path), metric="loss", direction="min")
    result = SearchEngine(config).search(lambda p: {"loss": (p["x"] - 0.5) ** 2, "acc": 1.0}, _space())
    assert result.direction == "minimize"
    assert result.best_value == min(t.value for t in result.trials)
    assert result.trials[0].metrics["acc"] == 1.0


def test_failures_are_recorded_and_the_search_goes_on(tmp_path):
    def objective(p):
        if p["x"] < 0.45:
            raise RuntimeError("boom")
        return float("nan") if p["x"] > 0.7 else p["x"]

    result = SearchEngine(SearchConfig(strategy="random", n_trials=12, study_dir=str(tmp_path))).search(objective, _space())
    states = {t.state for t in result.trials}
    assert len(result.trials) == 12 and states == {"complete", "failed"}
    failed = [t for t in result.trials if t.state == "failed"]
    assert any("RuntimeError: boom" in t.error for t in failed) and any("nan" in t.error for t in failed)
    assert all(t.value is None for t in failed)
    assert 0.45 <= result.best_value <= 0.7


def test_all_pruned_gives_a_clear_result(tmp_path):
    def objective(p, ctx):
        raise __import__("optuna").TrialPruned("always")

    engine = SearchEngine(SearchConfig(strategy="random", n_trials=4, study_dir=str(tmp_path)))
    result = engine.search(objective, _space())
    assert result.best_params is None and result.best_value is None
    assert "no complete trial (4 pruned)" in result.message
    with pytest.raises(AutoMLError, match="no complete trial"):
        engine.best_params()


def test_reported_values_feed_the_pruner(tmp_path):
    def objective(p, ctx):
        for step in range(8):
            ctx.report(p["x"] * (step + 1), step)
        return p["x"]

    config = SearchConfig(strategy="random", n_trials=16, study_dir=str(tmp_path), pruner="median", seed=1)
    result = SearchEngine(config).search(objective, _space())
    pruned = [t for t in result.trials if t.state == "pruned"]
    assert pruned and all(t.intermediate for t in pruned)
    assert result.best_value == max(t.value for t in result.trials if t.value is not None)


def test_conditional_subspace_and_closure(tmp_path):
    sub = SearchSpace("deep").add_int("extra_layers", 1, 3)
    space = SearchSpace().add_categorical("deep", [0, 1]).add_conditional("deep_part", "deep == 1", sub)
    calls = []
    config = SearchConfig(strategy="random", n_trials=12, study_dir=str(tmp_path))
    SearchEngine(config).search(lambda p: calls.append(dict(p)) or 1.0, space)
    assert {c["deep"] for c in calls} == {0, 1}
    assert all(("extra_layers" in c) == (c["deep"] == 1) for c in calls)
    with pytest.raises(AutoMLError, match="not defined before"):
        SearchSpace().add_conditional("s", "missing > 1", sub)


def test_from_config_class_and_sample():
    @dataclasses.dataclass
    class Cfg:
        learning_rate: float = 3e-4
        n_layers: int = 2
        activation: str = "tanh"
        batch: int = 64

    space = SearchSpace.from_config_class(Cfg, {"learning_rate": (1e-5, 1e-2, "log"), "n_layers": (1, 4),
                                                "activation": ["tanh", "relu"]})
    draws = [space.sample(seed=s) for s in range(20)]
    assert all(isinstance(d["n_layers"], int) and 1 <= d["n_layers"] <= 4 for d in draws)
    assert all(1e-5 <= d["learning_rate"] <= 1e-2 and d["batch"] == 64 for d in draws)
    assert {d["activation"] for d in draws} == {"tanh", "relu"}
    assert space.sample(seed=5) == space.sample(seed=5)
    Cfg(**draws[0])  # complete configs
    with pytest.raises(AutoMLError, match="unknown field"):
        SearchSpace.from_config_class(Cfg, {"nope": (0, 1)})


def test_yaml_space_constraints_reject(tmp_path):
    space = SearchSpace.from_yaml(ROOT / "configs" / "spaces" / "cartpole.yaml")
    assert "learning_rate" in space.names
    sub = SearchSpace().add_float("a", 0, 1).add_float("b", 0, 1).add_constraint("a + b > 1")
    result = SearchEngine(SearchConfig(strategy="random", n_trials=10, study_dir=str(tmp_path))).search(
        lambda p: p["a"] + p["b"], sub)
    over = [t.number for t in result.trials if t.params["a"] + t.params["b"] > 1]
    rejected = [t.number for t in result.trials if t.state == "failed" and "rejected" in t.error]
    assert over and rejected == over  # some draws broke the constraint (known for this seed), exactly those were refused
    assert all(t.state == "complete" for t in result.trials if t.number not in over)
    assert result.best_value == max(t.params["a"] + t.params["b"] for t in result.trials if t.number not in over) <= 1


@pytest.mark.parametrize("kwargs,match", [({"strategy": "annealing"}, "strategy"), ({"n_trials": 0}, "n_trials"),
                                          ({"direction": "up"}, "direction"), ({"pruner": "x"}, "pruner")])
def test_bad_config_is_one_line(kwargs, match):
    with pytest.raises(AutoMLError, match=match) as err:
        SearchConfig(**kwargs)
    assert "\n" not in str(err.value) and "allowed" in str(err.value)


def test_missing_metric_stops_the_search(tmp_path):
    config = SearchConfig(strategy="random", n_trials=5, study_dir=str(tmp_path), metric="acc")
    with pytest.raises(AutoMLError, match="'acc'"):
        SearchEngine(config).search(lambda p: {"loss": 1.0}, _space())


def test_two_jobs_in_threads(tmp_path):
    config = SearchConfig(strategy="random", n_trials=8, n_jobs=2, study_dir=str(tmp_path))
    assert len(SearchEngine(config).search(_quadratic, _space()).trials) == 8


SCRIPT = textwrap.dedent("""
    import sys, time
    from automl import SearchConfig, SearchEngine, SearchSpace
    calls = 0
    def objective(p):
        global calls
        calls += 1
        if calls > int(sys.argv[2]):  # blocks until the test kills the process: the kill cannot miss the search
            time.sleep(3600)
        return -(p["x"] - 0.3) ** 2
    config = SearchConfig(strategy="random", n_trials=12, study_dir=sys.argv[1], study_name="killed")
    SearchEngine(config).search(objective, SearchSpace().add_float("x", 0.0, 1.0))
""")


def _wait_for_finished_trials(proc, db: Path, n: int, timeout_s: float = 120.0) -> bool:
    """Poll the study the subprocess writes until it holds n finished trials (False if it exits first)."""
    from automl.api import study_io

    deadline = time.time() + timeout_s  # a fresh clone compiles every .pyc on the first import
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if "killed" in study_io.study_names(db):  # the subprocess created the storage and the study
            if study_io.finished(study_io.open_study(db.parent, "killed", direction="maximize")) >= n:
                return True
    return False


def test_resume_after_sigkill_keeps_trials(tmp_path):
    script = tmp_path / "search.py"
    script.write_text(SCRIPT)
    with open(tmp_path / "stderr.txt", "w") as err:
        proc = subprocess.Popen([sys.executable, str(script), str(tmp_path), "3"], cwd=ROOT, stderr=err)
        try:
            reached = _wait_for_finished_trials(proc, tmp_path / "killed.db", 3)
            killed = proc.poll() is None
        finally:
            proc.kill()  # SIGKILL; a no-op when it already exited (no os.kill on a reaped pid)
            proc.wait()
    stderr = (tmp_path / "stderr.txt").read_text()[-2000:]
    assert reached, f"the search subprocess never finished 3 trials (exit {proc.returncode}): {stderr}"
    assert killed, f"the search subprocess exited before it was killed (exit {proc.returncode}): {stderr}"
    assert proc.returncode == -signal.SIGKILL
    engine = SearchEngine(SearchConfig(strategy="random", n_trials=12, study_dir=str(tmp_path), study_name="killed"))
    before = {t.number: t.params for t in engine.resume(tmp_path / "killed.db", _quadratic, _space()).trials
              if t.state == "complete" and t.number < 3}
    result = engine.result()
    assert len(before) == 3
    counted = [t for t in result.trials if t.state in ("complete", "failed", "pruned")]
    assert len(counted) == 12 and all(t.state != "running" for t in result.trials)
    assert {t.number: t.params for t in result.trials if t.number in before} == before
    assert math.isfinite(engine.best_value())
    assert engine.resume(tmp_path / "killed.db").n_complete >= 12  # nothing left: no objective needed
