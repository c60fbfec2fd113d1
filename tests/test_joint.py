"""--mode joint (one search over HPs and reward weights) and the test phase (the winner and the
baseline re-trained on test seeds, the score that selected nothing)."""
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
import yaml
from _cli import ROOT, TINY, automl, state
from test_driver_semantics import per_seed, run_script, sim

from automl.core.errors import AutoMLError
from automl.run import driver
from automl.run.runconfig import RunConfig
from automl.search import space as space_mod
from automl.search.joint import JointSearch

TEST_BASE = 2000  # test seeds: base seed (0) + 2000 + i


def test_the_joint_space_holds_every_hp_and_weight_with_its_bounds_and_priors():
    import envs
    from automl.core.config import load_space

    spec = load_space(str(space_mod.default_space_path("navigation")))
    terms = envs.reward_config("navigation")["terms"]
    defaults = {k: float(t["default"]) for k, t in terms.items()}
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    search = JointSearch(study, spec, terms, defaults)
    dists = search.distributions()
    searched = {k for k, t in terms.items() if float(t["low"]) < float(t["high"])}
    assert set(dists) == {p.name for p in spec.params} | {f"reward.{k}" for k in searched}
    for k in searched:
        assert (dists[f"reward.{k}"].low, dists[f"reward.{k}"].high) == (float(terms[k]["low"]), float(terms[k]["high"]))
    for p in spec.params:
        assert dists[p.name] == space_mod.distributions(spec)[p.name]
    search.warm_start()
    first = search.ask()                       # the first proposal: the priors and the default weights
    assert first.params == space_mod.prior_params(spec) and first.weights == defaults
    assert first.ticket == (study, study.trials[0]._trial_id)
    for _ in range(5):
        p = search.ask()                       # then both vary, each within its bounds
        params, weights = p.params, p.weights
        assert set(weights) == set(terms) and set(params) == {p.name for p in spec.params}
        assert all(float(terms[k]["low"]) <= weights[k] <= float(terms[k]["high"]) for k in terms)
    assert len({tuple(sorted(search.ask().weights.items())) for _ in range(3)}) == 3


def test_joint_mode_is_refused_with_grid_and_an_unknown_objective_is_one_line():
    with pytest.raises(AutoMLError, match="grid cannot enumerate the continuous reward weights"):
        RunConfig(mode="joint", search_method="grid")
    assert RunConfig(mode="joint", ladder="off").pruner_name == "hyperband"
    assert RunConfig(mode="joint", pruner="none").pruner_name == "none"
    assert RunConfig(mode="joint").pruner_name == "none"  # the ladder is the multi-fidelity search
    out = automl("--objective", "median", "--dry-run")
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].endswith("(allowed: mean, iqm, lcb, mean-std)")
    out = automl("--risk", "-1", "--dry-run")
    assert out.returncode != 0 and "--risk: must be a number >= 0" in out.stderr


def test_a_joint_run_searches_hps_and_weights_together_then_tests_the_winner_on_unseen_seeds(tmp_path):
    script = run_script({
        ("config_000", "joint"): per_seed([0.1, 0.1]),   # the baseline: priors and default weights
        ("config_002", "joint"): per_seed([0.9, 0.9]),
        ("config_002", "heldout"): per_seed([0.7, 0.8]),
        ("config_000", "heldout"): per_seed([0.2, 0.2]),
        ("config_002", "test"): lambda seed: {"episode_reward_mean": 0.6 if seed == TEST_BASE else 0.4},
        ("config_000", "test"): per_seed([0.3, 0.3]),
    })
    ctx, _, _ = sim(tmp_path, script=script, mode="joint", hp_trials=2, reward_generations=1,
                    reward_population=2, seeds=2, top_k=1, pruner="none")
    assert driver.run(ctx) == 0
    st = state(tmp_path / "run")
    joint = [t for t in st["trials"] if t["kind"] == "joint"]
    assert [t["config_id"] for t in joint] == ["config_000", "config_001", "config_002", "config_003"]  # 1 x (2 + 2)
    assert joint[0]["reward_weights"] == {"alive": 1.0, "cart_position": 0.0, "pole_angle": 0.0}
    assert len({tuple(sorted(t["reward_weights"].items())) for t in joint}) == 4  # weights searched every time
    assert len({tuple(sorted(t["params"].items())) for t in joint}) == 4          # and HPs with them
    assert st["best"]["config_id"] == "config_002"
    # the joint sampler was told every score (nothing left running), the HP and reward samplers never asked
    url = f"sqlite:///{tmp_path / 'run' / 'study.db'}"
    told = optuna.load_study(study_name="automl-joint", storage=url).get_trials()
    assert [t.state.name for t in told] == ["COMPLETE"] * 4 and told[2].value == pytest.approx(0.9, abs=0.03)
    # the test phase: the held-out winner and the baseline on seeds 2000.., reported beside the held-out score
    tests = {t["config_id"]: t for t in st["trials"] if t["kind"] == "test"}
    assert set(tests) == {"config_002", "config_000"}
    assert all([s["seed"] for s in t["seeds"]] == [TEST_BASE, TEST_BASE + 1] for t in tests.values())
    assert st["seeds"]["test"] == [TEST_BASE, TEST_BASE + 1]
    assert [(t["config_id"], t["baseline"]) for t in st["test"]] == [("config_002", False), ("config_000", True)]
    best = yaml.safe_load((tmp_path / "run" / "best.yaml").read_text())
    assert best["config_id"] == "config_002" and best["heldout_score"]["mean"] == pytest.approx(0.75, abs=0.03)
    assert best["test_score"]["mean"] == pytest.approx(0.5, abs=0.03)              # lower: it selected nothing
    assert best["baseline"]["test_score"]["mean"] == pytest.approx(0.3, abs=0.03)
    assert best["test_seeds"] == [TEST_BASE, TEST_BASE + 1]


@pytest.mark.slow  # overlaps a default test; make test-slow runs it
def test_mean_std_picks_the_config_whose_seeds_agree(tmp_path):
    script = run_script({
        ("config_000", "hp"): per_seed([0.1] * 4),
        ("config_001", "hp"): per_seed([0.0, 0.0, 1.0, 1.0]),   # mean 0.5, std 0.577: mean-std < 0
        ("config_002", "hp"): per_seed([0.4] * 4),              # mean 0.4, std 0: mean-std 0.4
    })
    ctx, _, _ = sim(tmp_path, script=script, mode="hp", hp_trials=3, seeds=4, top_k=1, objective="mean-std", risk=1.0)
    assert driver.run(ctx) == 0
    assert state(tmp_path / "run")["best"]["config_id"] == "config_002"
    (tmp_path / "m").mkdir()
    ctx, _, _ = sim(tmp_path / "m", script=script, mode="hp", hp_trials=3, seeds=4, top_k=1, objective="mean")
    assert driver.run(ctx) == 0
    assert state(tmp_path / "m" / "run")["best"]["config_id"] == "config_001"
    # a run re-ranked later from its recorded per-seed values: automl analyze --objective mean-std [--risk K]
    run_dir = str(tmp_path / "m" / "run")
    report = tmp_path / "m" / "run" / "analysis" / "hyperparameter_importance.yaml"

    def top(*flags):
        out = automl("analyze", "--run-dir", run_dir, "--top", "10", *flags)
        assert out.returncode == 0, out.stderr
        return next(c for c in yaml.safe_load(report.read_text())["top_10_configs"] if c["kind"] == "hp")

    assert top()["config_id"] == "config_001"                              # by the mean: 0.5
    best = top("--objective", "mean-std")                                  # 0.4 - 0 beats 0.5 - 0.577
    assert best["config_id"] == "config_002" and best["mean-std"] == pytest.approx(0.4, abs=0.03)
    assert top("--objective", "mean-std", "--risk", "0.1")["config_id"] == "config_001"   # 0.5 - 0.058 beats 0.4
    bad = automl("analyze", "--run-dir", run_dir, "--objective", "median")
    assert bad.returncode != 0 and "--objective: unknown value 'median' (allowed: mean, iqm, lcb, mean-std)" in bad.stderr


def command(run_dir):
    return ["--mode", "joint", "--env", "cartpole", "--ladder", "off", "--space", TINY, "--budget-hours", "0.3", "--hp-trials", "2",
            "--reward-generations", "1", "--reward-population", "2", "--seeds", "2", "--n-jobs", "1", "--top-k", "1",
            "--trial-steps", "8192", "--eval-every", "4096", "--eval-episodes", "8", "--pruner", "none",
            "--search-method", "random", "--run-dir", str(run_dir), "--quiet"]


@pytest.mark.slow  # overlaps a default test; make test-slow runs it
def test_a_joint_run_killed_with_sigkill_resumes_with_the_same_command(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "automl", *command(run_dir)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    done_before, deadline = [], time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        try:
            st = state(run_dir)
            done_before = [t for t in st["trials"] if t["kind"] == "joint" and t["state"] == "complete"]
        except (OSError, yaml.YAMLError, TypeError):
            pass
        if done_before:
            break
        time.sleep(0.2)
    assert proc.poll() is None and done_before, f"the run ended before it could be killed: {proc.stderr.read()}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(2.0)  # the workers die with the driver (parent-death signal)

    again = automl(*command(run_dir))
    assert again.returncode == 0, again.stderr
    st = state(run_dir)
    joint = [t for t in st["trials"] if t["kind"] == "joint"]
    ids = [t["config_id"] for t in joint]
    assert len(ids) == 4 and len(set(ids)) == 4                                          # none lost, none twice
    # a kill between creating a record trial and naming it leaves a failed, never-trained trial: its
    # number is skipped (by design, see automl/run/resume.py), nothing else is
    url = f"sqlite:///{run_dir / 'study.db'}"
    record = {t.number: t for t in optuna.load_study(study_name="automl", storage=url).get_trials()}
    for n in set(range(int(ids[-1][-3:]) + 1)) - {int(i[-3:]) for i in ids}:
        assert record[n].state.name == "FAIL" and "config_id" not in record[n].user_attrs
    assert all(t["state"] == "complete" and sorted(s["seed"] for s in t["seeds"]) == [0, 1] for t in joint)
    for before in done_before:  # what was recorded before the kill is kept as it was
        after = next(t for t in joint if t["config_id"] == before["config_id"])
        assert after["seeds"] == before["seeds"] and after["reward_weights"] == before["reward_weights"]
    sampler = optuna.load_study(study_name="automl-joint", storage=url).get_trials()
    # the in-flight one re-attached and told; one asked by the killed run but never recorded is failed
    assert [t.state.name for t in sampler].count("COMPLETE") == 4 and "RUNNING" not in {t.state.name for t in sampler}
    assert st["test"] and yaml.safe_load((run_dir / "best.yaml").read_text())["test_score"] is not None
