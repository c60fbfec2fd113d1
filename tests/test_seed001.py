"""Seed 001's words on the command line (issue 27): `scripts/train.py --env ENV` trains the space's priors with no
config, `--preset fine-tune --from RUN_DIR` centres on that run's best, `--startup-trials N` (TPE's random
trials first), and the "Deep" [256, 256, 256] architecture in the shipped spaces."""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from automl.cli.main import build_parser, main, run_config_from
from automl.core.config import load_space
from automl.core.errors import AutoMLError
from automl.search import presets, space, strategies
from _cli import ROOT

CARTPOLE = space.CONFIGS_DIR / "spaces" / "cartpole.yaml"


def test_train_script_with_only_env_trains_the_spaces_priors(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), "--env", "cartpole", "--seed-list", "0",
                        "--trial-steps", "4096", "--device", "cpu", "--run-dir", str(tmp_path / "run")],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    results = yaml.safe_load((tmp_path / "run" / "results.yaml").read_text())
    spec = load_space(CARTPOLE)
    assert results["config"] == str(CARTPOLE) and results["env"] == "cartpole"
    assert results["params"] == space.merged(spec, space.prior_params(spec))
    assert [(s["seed"], s["state"], s["steps"]) for s in results["seeds"]] == [(0, "complete", 4096)]


def test_train_without_config_or_env_is_one_line(capsys):
    assert main(["train"]) == 2
    assert capsys.readouterr().err == ("automl: error: --config: missing (allowed: a config file, or --env "
                                       "cartpole|navigation|acrobot|pendulum|mountaincar|<gym id> to train that "
                                       "env's shipped space's priors)\n")


def _best_run(tmp_path):
    run = tmp_path / "earlier"
    run.mkdir()
    best = {"learning_rate": 2e-3, "rollouts": 64, "num_envs": 128, "discount_factor": 0.99}
    (run / "best.yaml").write_text(yaml.safe_dump({"config_id": "config_007", "params": best}))
    return run, best


def test_fine_tune_from_a_run_dir_centres_on_its_best(tmp_path):
    run, best = _best_run(tmp_path)
    spec = load_space(CARTPOLE)
    args = ["run", "--env", "cartpole", "--preset", "fine-tune", "--from", str(run)]
    cfg = run_config_from(build_parser().parse_args(args), args)
    assert cfg.preset == f"fine-tune@{run}" and cfg.hp_trials == 20       # the preset's run_defaults still apply
    tuned = presets.apply_preset(spec, presets.load_preset(cfg.preset))
    assert tuned == presets.apply_preset(spec, presets.load_preset("fine-tune"), best_params=best)
    lr = tuned.param("learning_rate")
    assert (lr.low, lr.high, lr.prior) == (pytest.approx(2e-3 / 3), 3e-3, 2e-3)   # x/3 .. x3, clipped at 3e-3
    assert tuned.param("rollouts").choices == (32, 64) and tuned.param("num_envs").choices == (64, 128, 256)
    assert space.prior_params(tuned)["discount_factor"] == 0.99                    # the warm start is that best
    priors = presets.apply_preset(spec, presets.load_preset("fine-tune"))
    assert priors.param("learning_rate").prior == 1e-3                           # without --from: the priors


def test_from_needs_a_preset_and_a_run_with_a_best_config(tmp_path, capsys):
    assert main(["run", "--env", "cartpole", "--from", str(tmp_path), "--dry-run"]) == 2
    assert "--from: needs --preset" in capsys.readouterr().err
    assert main(["run", "--env", "cartpole", "--preset", "fine-tune", "--from", str(tmp_path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"--from: {tmp_path / 'best.yaml'}: does not exist" in err and err.count("\n") == 1


def test_startup_trials_reach_tpe_from_the_command_line():
    args = ["run", "--env", "cartpole", "--startup-trials", "25"]
    cfg = run_config_from(build_parser().parse_args(args), args)
    assert cfg.startup_trials == 25
    spec = load_space(CARTPOLE)
    tpe = strategies.make_sampler("tpe", seed=0, spec=spec, startup_trials=cfg.startup_trials)
    assert tpe._n_startup_trials == 25
    assert strategies.make_sampler("tpe", seed=0, spec=spec)._n_startup_trials == 10          # Optuna's default
    assert strategies.make_sampler("cmaes", seed=0, spec=spec, startup_trials=5)._n_startup_trials == 5
    with pytest.raises(AutoMLError, match=r"--startup-trials: must be > 0 \(got 0\)"):
        run_config_from(build_parser().parse_args(["run", "--startup-trials", "0"]), [])


def test_tpe_draws_its_startup_trials_at_random():
    import optuna

    def first(n_startup, k):
        sampler = strategies.make_sampler("tpe", seed=3, spec=load_space(CARTPOLE), startup_trials=n_startup)
        study = optuna.create_study(sampler=sampler)
        study.optimize(lambda t: -(t.suggest_float("x", -1, 1) - 0.5) ** 2, n_trials=k)
        return [t.params["x"] for t in study.trials]

    rand = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    rand.optimize(lambda t: t.suggest_float("x", -1, 1), n_trials=12)
    # with 12 startup trials TPE's first 12 draws are its seeded random sampler's; with 3, draw 4 on is TPE's
    assert first(12, 12) == [t.params["x"] for t in rand.trials]
    assert first(3, 12)[:3] == first(12, 12)[:3] and first(3, 12)[3:] != first(12, 12)[3:]


@pytest.mark.parametrize("name", ["navigation", "ppo_default"])
def test_the_shipped_spaces_offer_seed_001s_deep_architecture(name):
    spec = load_space(space.CONFIGS_DIR / "spaces" / f"{name}.yaml")
    assert (256, 256, 256) in spec.param("policy_hidden_layer_sizes").choices
    assert presets.apply_preset(spec, presets.load_preset("full")).param("policy_hidden_layer_sizes").choices[-1] == \
        (256, 256, 256)
