"""Seed 003's `hyperparameter_optimization:` YAML (its two examples copied into tests/data/) loads in the Python
API as a SearchSpace + SearchConfig for any objective (the seed's language-model parameters included), and as
a PPO run (`automl run --config FILE`) when its names are PPO parameters; other names and keys with no
meaning here are refused in one line that says what to use."""
from __future__ import annotations

import math

import optuna
import pytest
from _cli import ROOT, automl

from automl import SearchConfig, SearchEngine, SearchSpace
from automl.api import seed003 as api_seed003
from automl.cli.main import build_parser, run_config_from
from automl.core import seed003
from automl.core.errors import AutoMLError

DATA = ROOT / "tests" / "data"
BASIC, ADVANCED, PPO = (str(DATA / f"seed003_{n}.yaml") for n in ("basic", "advanced", "ppo"))


def test_the_seeds_basic_example_is_a_space_and_engine_settings():
    space, cfg = api_seed003.load(BASIC, study_dir="unused")
    d = space.distributions()
    assert list(d) == ["learning_rate", "batch_size", "weight_decay", "warmup_steps"]
    assert (d["learning_rate"].low, d["learning_rate"].high, d["learning_rate"].log) == (1e-5, 1e-3, True)
    assert (d["weight_decay"].low, d["weight_decay"].high, d["weight_decay"].log) == (0.0, 0.1, False)
    assert isinstance(d["warmup_steps"], optuna.distributions.IntDistribution)
    assert (d["warmup_steps"].low, d["warmup_steps"].high, d["warmup_steps"].log) == (100, 5000, True)
    assert list(d["batch_size"].choices) == [4, 8, 16, 32]
    assert space.fixed == {"cross_validation": True, "n_folds": 5}   # the objective does its own folds
    assert (cfg.strategy, cfg.sampler, cfg.n_trials, cfg.timeout) == ("bayesian", "tpe", 100, 24 * 3600.0)
    assert (cfg.metric, cfg.direction, cfg.multi) == ("validation_loss", "minimize", False)
    assert SearchSpace.from_yaml(BASIC).names == space.names                    # the seed's own spelling
    assert SearchConfig.from_yaml(BASIC).metric == "validation_loss"


def test_the_seeds_advanced_example_searches_its_language_model_space_on_three_objectives(tmp_path):
    space, cfg = api_seed003.load(ADVANCED, study_dir=str(tmp_path), n_trials=10, sampler="nsga2")
    assert space.names[:3] == ("hidden_size", "num_layers", "num_attention_heads") and len(space) == 11
    assert cfg.metrics == ("validation_loss", "training_time", "memory_usage")
    assert cfg.directions == ("minimize",) * 3 and (cfg.patience, cfg.enable_pruning) == (10, True)

    def objective(p):  # the seed's multi-objective form: a tuple of (validation_loss, training_time, memory_usage)
        loss = (math.log10(p["learning_rate"]) + 4) ** 2 + p["dropout_rate"]
        return loss, p["num_layers"] * p["hidden_size"] / 1e3, p["batch_size"] * p["hidden_size"] / 1e2

    result = SearchEngine(cfg).search(objective, space)
    assert result.n_complete == 10 and result.directions == ["minimize"] * 3
    points = {t.number: tuple(t.values) for t in result.trials}
    dominated = {a for a in points for b in points
                 if all(y <= x for x, y in zip(points[a], points[b])) and points[a] != points[b]}
    assert {t.number for t in result.best_trials} == set(points) - dominated   # exactly the Pareto front
    assert result.best_params == result.best_trials[0].params                  # the knee first


def test_the_seed_files_keys_are_checked_in_one_line(tmp_path):
    cases = {
        "  n_trials: 5\n  searh_space: {}\n": "unknown key 'searh_space' (allowed: algorithm, n_trials",
        "  search_space:\n    lr: {type: double, min: 1, max: 2}\n": "search_space.lr.type: 'double' (allowed: float, int, categorical)",
        "  search_space:\n    lr: {type: float, min: 2, max: 1}\n": "min (2) must be < max (1)",
        "  search_space:\n    lr: {type: float, min: 1, max: 2}\n  evaluation: {n_folds: 0}\n": "n_folds: 0 (allowed: an integer >= 1)",
        "  search_space:\n    lr: {type: float, min: 1, max: 2}\n  evaluation: {folds: 3}\n": "unknown key 'folds' (allowed: metric, primary_metric",
    }
    for body, words in cases.items():
        path = tmp_path / "hpo.yaml"
        path.write_text("hyperparameter_optimization:\n" + body)
        with pytest.raises(AutoMLError, match=None) as err:
            SearchSpace.from_yaml(path)
        assert words in str(err.value) and "\n" not in str(err.value)


def test_as_a_ppo_run_the_file_becomes_the_runs_flags_and_command_line_flags_win():
    argv = ["run", "--config", PPO, "--env", "cartpole"]
    cfg = run_config_from(build_parser().parse_args(argv), argv)
    assert (cfg.mode, cfg.search_method, cfg.hp_trials, cfg.seeds, cfg.pruner) == ("hp", "bayesian", 2, 2, "none")
    assert cfg.budget_hours == pytest.approx(0.05) and cfg.preset == PPO
    assert cfg.metrics == "episode_reward_mean:max,train_time_s:min,peak_memory_mb:min"  # the seed's words mapped
    assert cfg.constraints == ("peak_memory_mb <= 100000",)
    argv = ["run", "--config", PPO, "--env", "cartpole", "--seeds", "3", "--budget-hours=0.5"]
    cfg = run_config_from(build_parser().parse_args(argv), argv)
    assert (cfg.seeds, cfg.budget_hours, cfg.hp_trials) == (3, 0.5, 2)


def test_as_a_ppo_run_only_the_files_parameters_are_searched():
    from automl.run.runconfig import RunConfig
    from automl.run.inputs import resolve_inputs

    spec = resolve_inputs(RunConfig(env="cartpole", preset=PPO, mode="hp")).spec
    assert spec.names == ("learning_rate", "rollouts", "learning_epochs")
    lr = spec.param("learning_rate")
    assert (lr.type, lr.low, lr.high) == ("loguniform", 1e-4, 3e-3)
    assert spec.param("rollouts").choices == (16, 32) and spec.fixed["num_envs"] == 64  # the rest at the priors


def test_automl_run_config_dry_run_and_the_seeds_own_examples_refused_in_one_line(tmp_path):
    out = automl("run", "--config", PPO, "--env", "cartpole", "--run-dir", str(tmp_path / "r"), "--dry-run")
    assert out.returncode == 0, out.stderr
    assert "mode: hp" in out.stdout and "seeds: tuning [0, 1]" in out.stdout and "+seed003_ppo" in out.stdout
    for path, words in ((BASIC, "weight_decay, warmup_steps are not PPO parameters (allowed: learning_rate, "),
                        (ADVANCED, "hidden_size, num_layers, num_attention_heads, gradient_accumulation_steps")):
        out = automl("run", "--config", path, "--env", "cartpole", "--run-dir", str(tmp_path / "x"), "--dry-run")
        assert out.returncode == 2 and words in out.stderr and len(out.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("edit, words", [
    ("    direction: \"maximize\"\n    patience: 10\n", "evaluation.patience: a PPO run has no patience stop"),
    ("    direction: \"minimize\"\n", "episode_reward_mean (minimize) as the only metric"),
])
def test_keys_with_no_meaning_in_a_ppo_run_are_refused_with_what_to_use(tmp_path, edit, words):
    text = (DATA / "seed003_ppo.yaml").read_text()
    text = text.replace('    secondary_metrics: ["training_time", "memory_usage"]\n', "")
    text = text.replace('    direction: "maximize"\n', edit)
    path = tmp_path / "hpo.yaml"
    path.write_text(text)
    with pytest.raises(AutoMLError) as err:
        seed003.run_flags(seed003.load(path))
    assert words in str(err.value)


def test_a_supervised_metric_is_refused_naming_this_projects_metrics(tmp_path):
    text = (DATA / "seed003_ppo.yaml").read_text().replace('"episode_reward_mean"', '"validation_loss"')
    path = tmp_path / "hpo.yaml"
    path.write_text(text)
    with pytest.raises(AutoMLError, match="'validation_loss' is a supervised model's metric "
                                          r"\(allowed: episode_reward_mean, success_rate"):
        seed003.run_flags(seed003.load(path))


def test_a_ppo_runs_task_metric_without_a_direction_is_maximized(tmp_path):
    text = (DATA / "seed003_ppo.yaml").read_text().replace('    direction: "maximize"\n', "")
    path = tmp_path / "hpo.yaml"
    path.write_text(text)
    assert seed003.run_flags(seed003.load(path))["metrics"].startswith("episode_reward_mean:max,")
    assert api_seed003.config_of(seed003.load(path)).directions[0] == "minimize"   # the API keeps Optuna's default


def test_patience_stops_a_trial_after_that_many_reports_without_improvement(tmp_path):
    cfg = SearchConfig(strategy="random", n_trials=1, patience=2, enable_pruning=False, study_dir=str(tmp_path))

    def objective(p, ctx):          # maximized: 1, 2, then 2 and 1.5 bring nothing new: stopped at the 4th report
        for value in (1.0, 2.0, 2.0, 1.5, 9.0):
            ctx.report(value)
        return 9.0

    trial = SearchEngine(cfg).search(objective, SearchSpace().add_float("x", 0.0, 1.0)).trials[0]
    assert trial.state == "pruned" and sorted(trial.intermediate) == [0, 1, 2, 3]
