"""A run with several objectives and a constraint, as a user runs it (--metrics, --constraint, --pick)."""
import optuna
import pytest
import yaml

from automl.core.objectives import Objective, knee, pareto_front
from _cli import TINY, automl, state

OBJ = (Objective("episode_reward_mean", "max"), Objective("train_time_s", "min"))
LIMIT = 56
INFEASIBLE = {"config_002", "config_003", "config_004"}


def command(run_dir, *extra):
    return ["--mode", "hp", "--env", "cartpole", "--ladder", "off", "--space", TINY, "--budget-hours", "0.3", "--hp-trials", "5",
            "--seeds", "2", "--n-jobs", "2", "--top-k", "3", "--trial-steps", "4096", "--eval-every", "2048",
            "--eval-episodes", "8", "--metrics", "episode_reward_mean:max,train_time_s:min", "--run-dir",
            str(run_dir), "--quiet", *extra]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("mo") / "run"
    # a constraint that some configs break: seed 0's five tuning configs (CPU, deterministic) score 63.4,
    # 77.7, 46.5, 49.6 and 38.8, so configs 002-004 are infeasible (56 sits in the widest gap)
    out = automl(*command(run_dir, "--constraint", f"episode_reward_mean >= {LIMIT}"))
    assert out.returncode == 0, out.stderr
    return run_dir


def test_the_state_file_s_front_is_the_brute_force_front_of_the_feasible_tuning_configs(run):
    st = state(run)
    tuned = [t for t in st["trials"] if t["kind"] == "hp" and t["state"] == "complete"]
    assert len(tuned) >= 4
    for t in tuned:  # every config carries its objectives, violation and feasibility
        s = t["score"]
        assert set(s["objectives"]) == {"episode_reward_mean", "train_time_s"}
        assert s["objectives"]["episode_reward_mean"] == pytest.approx(s["mean"], rel=1e-5)
        times = [seed["wall_s"] for seed in t["seeds"]]
        assert s["objectives"]["train_time_s"] == pytest.approx(sum(times) / len(times), rel=1e-3, abs=0.01)
        v = s["violations"][f"episode_reward_mean >= {LIMIT}"]
        assert v == pytest.approx(max(0.0, LIMIT - s["mean"]), abs=1e-4) and s["feasible"] == (v == 0.0)
    assert {t["config_id"] for t in tuned if not t["score"]["feasible"]} == INFEASIBLE
    feasible = [t for t in tuned if t["score"]["feasible"]]
    assert {t["config_id"] for t in feasible} == {"config_000", "config_001"}
    points = [[t["score"]["objectives"][o.name] for o in OBJ] for t in feasible]
    expect = {feasible[i]["config_id"] for i in pareto_front(points, OBJ)}
    assert {r["config_id"] for r in st["pareto"]["front"]} == expect
    assert {r["config_id"] for r in st["pareto"]["infeasible"]} == INFEASIBLE


def test_the_winner_is_the_knee_of_the_held_out_front_and_is_feasible(run):
    st, best = state(run), yaml.safe_load((run / "best.yaml").read_text())
    held = st["pareto"]["heldout_front"]
    assert best["config_id"] == held[0]["config_id"] and best["pick"] == "knee"
    assert knee([[r[o.name] for o in OBJ] for r in held], OBJ) == 0
    assert best["constraints"]["feasible"] and best["front"] == held
    infeasible = {t["config_id"] for t in st["trials"] if t["kind"] == "hp" and t["score"] and not t["score"]["feasible"]}
    assert infeasible == INFEASIBLE and best["config_id"] not in infeasible   # an infeasible config is never crowned
    assert not {r["config_id"] for r in held} & INFEASIBLE                  # nor re-checked on held-out seeds


def test_the_sampler_study_is_multi_objective_with_the_constraints_recorded(run):
    study = optuna.load_study(study_name="automl-hp", storage=f"sqlite:///{run / 'study.db'}")
    assert study.directions == [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert done and all(len(t.values) == 2 for t in done)
    assert all(t.system_attrs.get("constraints") == t.user_attrs["violations"] for t in done)


def test_analyze_prints_the_front_and_writes_its_png_and_csv(run):
    out = automl("analyze", "--run-dir", str(run))
    assert out.returncode == 0, out.stderr
    assert "Pareto front (held-out values; pick: knee)" in out.stdout and "(pick)" in out.stdout
    assert (run / "analysis" / "pareto_front.png").stat().st_size > 10_000
    rows = (run / "analysis" / "pareto_front.csv").read_text().splitlines()
    assert rows[0].startswith("config_id,kind,episode_reward_mean,train_time_s,feasible,on_front")


@pytest.mark.parametrize("extra, message", [
    (("--pick", "speed"), "--pick: 'speed' (allowed: knee, episode_reward_mean, train_time_s)"),
    (("--search-method", "cmaes"), "--search-method: cmaes optimises one objective"),
    (("--constraint", "speed > 1"), "--constraint: 'speed > 1' names 'speed'"),
    (("--mode", "pbt"), "--metrics/--constraint: not with --mode pbt"),
    (("--executor", "slurm"), "--executor: unknown value 'slurm' (allowed: local, ray)"),
    (("--ray-address", "auto"), "--ray-address: needs --executor ray"),
])
def test_bad_objective_and_executor_flags_are_one_line(tmp_path, extra, message):
    out = automl(*command(tmp_path / "r", *extra), "--dry-run")
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr


def test_a_journal_file_storage_holds_the_run_s_studies_named_after_the_run_dir(tmp_path):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    journal = tmp_path / "shared" / "studies.log"
    journal.parent.mkdir()
    run_dir = tmp_path / "myrun"
    out = automl("--mode", "hp", "--env", "cartpole", "--ladder", "off", "--space", TINY, "--budget-hours", "0.3", "--hp-trials", "2",
                 "--seeds", "1", "--n-jobs", "1", "--top-k", "1", "--trial-steps", "2048", "--eval-every", "1024",
                 "--eval-episodes", "4", "--storage", f"journal:{journal}", "--run-dir", str(run_dir), "--quiet")
    assert out.returncode == 0, out.stderr
    storage = JournalStorage(JournalFileBackend(str(journal)))
    names = {s.study_name for s in optuna.get_all_study_summaries(storage)}
    assert {"myrun:automl", "myrun:automl-hp"} <= names and not (run_dir / "study.db").exists()
    assert len(optuna.load_study(study_name="myrun:automl", storage=storage).trials) == len(state(run_dir)["trials"])
