"""TrialManager (seed 000's gate 3): CSV with every param and metric, non-trivial importances, CLI run dirs."""
from __future__ import annotations

import csv

import pytest
from matplotlib.figure import Figure

from _synthetic_runs import DRIVERS, make_trials, write_run
from automl import SearchConfig, SearchEngine, SearchSpace, TrialManager
from automl.core.errors import AutoMLError


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("api_study")
    space = (SearchSpace().add_float("a", 0, 1).add_float("b", 0, 1).add_float("inert", 0, 1)
             .add_categorical("net", [[8], [16, 16]]))

    def objective(p):  # a and b matter equally, the others do not; some trials fail
        if p["inert"] > 0.9:
            raise ValueError("unlucky")
        return {"score": p["a"] + p["b"], "aux": p["inert"]}

    SearchEngine(SearchConfig(strategy="random", n_trials=30, study_dir=str(path), study_name="syn",
                              metric="score")).search(objective, space)
    return path


def test_export_csv_has_every_param_and_metric(study_dir, tmp_path):
    path = TrialManager(study_dir).export_csv(tmp_path / "trials.csv")
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 30
    assert {"number", "state", "value", "a", "b", "inert", "net", "score", "aux", "error"} <= set(rows[0])
    done = [r for r in rows if r["state"] == "complete"]
    assert all(abs(float(r["score"]) - (float(r["a"]) + float(r["b"]))) < 1e-9 for r in done)
    assert any(r["state"] == "failed" and "unlucky" in r["error"] for r in rows)


def test_importance_ranks_the_params_that_matter(study_dir):
    importance = TrialManager(study_dir).get_importance()
    assert set(importance) == {"a", "b", "inert", "net"}
    assert min(importance["a"], importance["b"]) > 2 * max(importance["inert"], importance["net"])
    assert sum(v > 0.2 for v in importance.values()) == 2


def test_best_trials_get_trial_and_plots(study_dir):
    tm = TrialManager(study_dir, "syn")
    best = tm.get_best_trials(3)
    assert [t.value for t in best] == sorted((t.value for t in tm.trials() if t.value is not None), reverse=True)[:3]
    assert tm.get_trial(best[0].trial_id).params == best[0].params
    assert isinstance(tm.plot_optimization_history(), Figure)
    assert isinstance(tm.plot_param_importances(), Figure)
    with pytest.raises(AutoMLError, match="no study 'other'"):
        TrialManager(study_dir, "other")


def test_log_trial_standalone(tmp_path):
    tm = TrialManager(tmp_path / "manual", metric="loss", direction="minimize")
    for i in range(12):
        tm.log_trial({"x": i / 11, "y": (i * 5 % 12) / 11, "opt": "adam"}, {"loss": (i / 11 - 0.5) ** 2}, f"t{i}")
    again = TrialManager(tmp_path / "manual")  # reopens the stored study, direction included
    assert again.direction == "minimize" and again.get_trial("t3").params["opt"] == "adam"
    assert again.get_best_trials(1)[0].trial_id in ("t5", "t6")
    assert set(again.get_importance()) == {"x", "y"}  # numeric params are the study's coordinates
    with pytest.raises(AutoMLError, match="already logged"):
        tm.log_trial({"x": 0.0}, {"loss": 1.0}, "t3")


def test_cli_run_directory(tmp_path):
    run = write_run(tmp_path / "run", make_trials(n_configs=20))
    tm = TrialManager(run)
    assert tm.cli and len(tm.trials()) == 20
    importance = tm.get_importance()
    assert max(importance, key=importance.get) in DRIVERS
    rows = list(csv.DictReader(tm.export_csv(tmp_path / "cli.csv").open()))
    assert len(rows) == 20 and "learning_rate" in rows[0]
    assert tm.get_best_trials(1)[0].trial_id.startswith("config_")
    first = tm.trials()[0]  # a CLI trial carries its core ConfigRecord; params are its decoded vector
    assert first.config is tm.run.configs[0] and first.config.config_id == first.trial_id
    assert first.params["reward.collision"] == first.config.reward_weights["collision"]
    with pytest.raises(AutoMLError, match="read-only"):
        tm.log_trial({"x": 1}, {"value": 1.0})
