"""Keras-Tuner-style tuners over SearchEngine: override run_trial, grid enumeration, resume, PPO training."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from automl import BayesianOptimization, GridSearch, HyperParameters, Hyperband, Objective, RandomSearch
from automl.core.errors import AutoMLError


def build(hp):
    return {"x": hp.Float("x", 0.0, 1.0), "net": hp.Choice("net", [[8], [16, 16]]), "flag": hp.Boolean("flag")}


class Quadratic(RandomSearch):
    def run_trial(self, hp, **kwargs):
        p = build(hp)
        return {"score": -(p["x"] - 0.4) ** 2 + (0.01 if p["flag"] else 0.0), "layers": len(p["net"])}


def test_overridden_run_trial_and_results(tmp_path, capsys):
    tuner = Quadratic(objective=Objective("score", "max"), max_trials=8, directory=tmp_path, project_name="q")
    result = tuner.search()
    assert result.n_complete == 8
    best = tuner.get_best_hyperparameters(2)
    assert best[0]["x"] == result.best_params["x"] and isinstance(best[0], HyperParameters)
    assert build(best[0]) == {k: best[0][k] for k in ("x", "net", "flag")}  # rebuilds the winner
    top = tuner.oracle.get_best_trials(1)[0]
    assert top.score == result.best_value and top.metrics["layers"] in (1, 2)
    tuner.results_summary(1)
    assert "Trial" in capsys.readouterr().out
    assert (tmp_path / "q" / "q.db").is_file()


def test_resume_and_overwrite(tmp_path):
    kw = dict(objective=Objective("score", "max"), directory=tmp_path, project_name="r")
    Quadratic(max_trials=4, **kw).search()
    assert len(Quadratic(max_trials=6, **kw).search().trials) == 6  # overwrite=False continues
    assert len(Quadratic(max_trials=3, overwrite=True, **kw).search().trials) == 3


def test_grid_search_visits_each_combination_once(tmp_path):
    seen = []

    class Grid(GridSearch):
        def run_trial(self, hp, **kwargs):
            p = self._build(hp)
            seen.append((p["a"], tuple(p["net"])))
            return p["a"] * len(p["net"])

    hm = lambda hp: {"a": hp.Int("a", 1, 3), "net": hp.Choice("net", [[8], [16, 16]])}  # noqa: E731
    result = Grid(hm, objective="value", max_trials=50, directory=tmp_path, project_name="g").search()
    assert sorted(seen) == sorted((a, n) for a in (1, 2, 3) for n in ((8,), (16, 16)))
    assert result.best_value == 6
    with pytest.raises(AutoMLError, match="not enumerable"):
        Grid(lambda hp: {"x": hp.Float("x", 0, 1)}, directory=tmp_path, project_name="g2").search()


def test_failures_and_bayesian(tmp_path):
    class Flaky(BayesianOptimization):
        def run_trial(self, hp, **kwargs):
            x = hp.Float("x", 0.0, 1.0)
            if x > 0.8:
                raise RuntimeError("diverged")
            return -(x - 0.3) ** 2

    result = Flaky(objective="value", max_trials=12, directory=tmp_path, project_name="f", seed=2).search()
    assert len(result.trials) == 12 and abs(result.best_params["x"] - 0.3) < 0.15
    over = [t.number for t in result.trials if t.params["x"] > 0.8]
    failed = [t.number for t in result.trials if t.state == "failed" and "diverged" in t.error]
    assert over and failed == over  # seed 2 draws some x > 0.8: exactly those failed, with their error kept
    assert all(t.state == "complete" for t in result.trials if t.number not in over)


def test_hyperband_schedule_is_keras_tuners_brackets():
    from automl.api.hyperband import schedule

    # max_epochs 9, factor 3: three brackets; each round keeps the best 1/3 for 3x the epochs
    assert [(r.bracket, r.round, r.size, r.epochs) for r in schedule(9, 3)] == [
        (2, 0, 3, 1), (2, 1, 1, 3), (2, 2, 1, 9), (1, 0, 3, 3), (1, 1, 1, 9), (0, 0, 3, 9)]
    assert [(r.size, r.epochs) for r in schedule(27, 3) if r.bracket == 3] == [(4, 1), (2, 3), (1, 9), (1, 27)]
    with pytest.raises(AutoMLError, match="Hyperband: factor: 1 "):
        schedule(9, 1)


def test_hyperband_as_seed_002_writes_it_runs_its_brackets_awaits_an_async_build_and_times_trials(tmp_path):
    # seed 002: an async build(hp), Hyperband(build, objective=Objective(...), max_epochs=..., factor=...),
    # tuner.oracle.get_best_trials(1)[0] carries the metrics and the trial's duration
    import asyncio

    async def build_program(hp):
        await asyncio.sleep(0)
        return {"temperature": hp.Float("temperature", 0.0, 1.0, default=0.0),
                "use_chain_of_thought": hp.Boolean("use_chain_of_thought", default=True)}

    class Program(Hyperband):
        def run_trial(self, hp, epochs=None, **kwargs):
            p = self._build(hp)
            return {"val_reward": 1.0 - abs(p["temperature"] - 0.3) + 0.01 * epochs, "epochs": epochs}

    tuner = Program(build_program, objective=Objective("val_reward", direction="max"), max_epochs=9, factor=3,
                    seed=1234, directory=tmp_path, project_name="gsm8k_hp_search", overwrite=True)
    tuner.search()
    trials = sorted(tuner.engine.study.trials, key=lambda t: t.number)
    assert [t.user_attrs["hyperband"]["epochs"] for t in trials] == [1, 1, 1, 3, 9, 3, 3, 3, 9, 9, 9, 9]
    assert [t.value - 0.01 * t.user_attrs["hyperband"]["epochs"] for t in trials] == pytest.approx(
        [1.0 - abs(t.params["temperature"] - 0.3) for t in trials])
    # each later round trains the best config of the round before again, for factor x the epochs
    first = max(trials[0:3], key=lambda t: t.value)
    assert trials[3].params == trials[4].params == first.params
    assert trials[8].params == max(trials[5:8], key=lambda t: t.value).params
    best = tuner.oracle.get_best_trials(1)[0]
    assert best.metrics["epochs"] == 9 and best.duration is not None and best.duration >= 0.0
    assert best.score == max(t.value for t in trials)


def test_default_run_trial_trains_ppo_on_batched_cartpole(tmp_path):
    def build_ppo(hp):
        return {"learning_rate": hp.Float("learning_rate", 3e-4, 3e-3, sampling="log"),
                "num_envs": 64, "rollouts": 32, "mini_batches": 4, "learning_epochs": hp.Int("learning_epochs", 2, 4)}

    tuner = RandomSearch(build_ppo, max_trials=2, directory=tmp_path, project_name="ppo")
    result = tuner.search(env="cartpole", total_steps=4096, eval_episodes=16, seeds=(0, 1))
    assert result.n_complete == 2
    for t in result.trials:
        assert t.metrics["steps"] >= 2 * 4096 and t.value == t.metrics["episode_reward_mean"] > 0
        assert set(t.params) == {"learning_rate", "learning_epochs"}
        # the trial keeps the CLI's config record: per-seed results from the worker processes, and its score
        record = t.config
        assert record.state == "complete" and [s["seed"] for s in record.seeds] == [0, 1]
        assert record.params["learning_rate"] == t.params["learning_rate"] and record.params["num_envs"] == 64
        assert t.value == record.score["mean"] == pytest.approx(
            sum(s["episode_reward_mean"] for s in record.seeds) / 2, abs=1e-3)
    assert not tuner._runners  # search() stopped its worker processes


def test_hyperband_epochs_are_env_steps_on_the_default_ppo_trial(tmp_path):
    async def build_ppo(hp):  # an async build is awaited on the default path too
        return {"learning_rate": hp.Float("learning_rate", 3e-4, 3e-3, sampling="log"), "num_envs": 16,
                "rollouts": 32, "mini_batches": 2, "learning_epochs": 2}

    tuner = Hyperband(build_ppo, max_epochs=3, factor=3, directory=tmp_path, project_name="hb")
    result = tuner.search(env="cartpole", total_steps=1536, eval_episodes=4)   # an epoch: 1536 / 3 = 512 steps
    epochs = [t.user_attrs["hyperband"]["epochs"] for t in sorted(tuner.engine.study.trials, key=lambda t: t.number)]
    assert epochs == [1, 1, 3, 3, 3] and result.n_complete == 5
    assert [t.metrics["steps"] for t in sorted(result.trials, key=lambda t: t.number)] == [512 * e for e in epochs]


def test_a_crashing_ppo_config_fails_its_trial_and_the_search_goes_on(tmp_path):
    def build_ppo(hp):
        epochs = hp.Int("learning_epochs", 1, 2)
        # mini_batches that do not divide the batch: the trainer raises in the worker, for epochs == 2 only
        return {"num_envs": 16, "rollouts": 16, "mini_batches": 1 if epochs == 1 else 7, "learning_epochs": epochs}

    result = GridSearch(build_ppo, max_trials=2, directory=tmp_path, project_name="crash").search(
        env="cartpole", total_steps=512, eval_episodes=4)
    by_epochs = {t.params["learning_epochs"]: t for t in result.trials}
    assert by_epochs[1].state == "complete" and by_epochs[2].state == "failed"
    assert by_epochs[2].error.startswith("seed 0: exception: AutoMLError") and "mini_batches: 7" in by_epochs[2].error
    assert by_epochs[2].config.seeds[0]["state"] == "failed" and by_epochs[1].config.seeds[0]["steps"] >= 512


def test_a_script_without_a_main_guard_trains_in_worker_processes(tmp_path):
    # spawned workers would re-run such a script; the tuners' workers do not import __main__
    script = tmp_path / "tune.py"
    script.write_text(
        "from automl import RandomSearch\n"
        "tuner = RandomSearch(lambda hp: {'num_envs': 16, 'rollouts': 16, 'mini_batches': 2,\n"
        "                                 'learning_rate': hp.Float('learning_rate', 1e-4, 1e-3)},\n"
        f"                     max_trials=1, directory={str(tmp_path)!r}, project_name='s')\n"
        "print('complete:', tuner.search(env='cartpole', total_steps=512, eval_episodes=4).n_complete)\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0 and "complete: 1" in out.stdout, out.stderr[-2000:]
