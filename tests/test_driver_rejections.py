"""The driver when the space refuses proposals or runs out of them, on the real driver loop with a fake clock
and simulated seed jobs (tests/_scripted.py), so every outcome is known and no machine speed matters.

* A proposal a constraint rejects is recorded (state ``rejected``, the constraint as its reason), told FAIL to
  its sampler and to the record study, never trained, and not counted against ``--hp-trials``.
* ``MAX_REJECTS`` rejected proposals in a row: the space counts as exhausted (status ``search_exhausted``).
* A grid walked to its end: the same status, after exactly the grid's points (the constraint applied up front).
"""
import os
import shutil
import tempfile
from pathlib import Path

import optuna
import pytest
import yaml
from _cli import state
from _scripted import FakeClock, ScriptedExecutor

from automl.run import driver
from automl.run.opening import prepare
from automl.run.phases import MAX_REJECTS
from automl.run.runconfig import RunConfig

SPACE = """\
search_space_id: rejecting_cartpole
fixed: {{seed: 0, num_envs: 32, n_timesteps: 8192, discount_factor: 0.98, lambda_param: 0.8, rollouts: 32,
        mini_batches: 2}}
searchable:
  learning_rate:   {{type: {lr_type}, {lr_range}, prior: 1.0e-3}}
  learning_epochs: {{type: choice, values: [2, 4], prior: 4}}
constraints:
  - "{constraint}"
"""
SOME = "learning_rate > 1.0e-3 and learning_epochs > 3"
ALL_BUT_THE_PRIOR = "learning_rate > 1.0e-3 or learning_rate < 1.0e-3"
EXHAUSTED = "the hp search space is exhausted"


def _breaks(params: dict, constraint: str) -> bool:
    lr, epochs = params["learning_rate"], params["learning_epochs"]
    if constraint == SOME:
        return lr > 1.0e-3 and epochs > 3
    return lr != 1.0e-3


@pytest.fixture
def where(tmp_path):
    """The run directory's parent: on tmpfs where there is one. A rejected proposal costs ~30 SQLite commits
    (ask, record, tell): MAX_REJECTS of them took a minute on a busy disk, ~15 s on tmpfs."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(dir=shm, prefix="automl-test-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def run(tmp_path, constraint: str, *, method: str = "random", grid: bool = False, **kw):
    """The real driver on a fake clock over the space with ``constraint``; (exit code, state, executor, run dir)."""
    lr = dict(lr_type="choice", lr_range="values: [1.0e-3, 2.0e-3]") if grid else \
        dict(lr_type="loguniform", lr_range="low: 3.0e-4, high: 3.0e-3")
    space = tmp_path / "space.yaml"
    space.write_text(SPACE.format(constraint=constraint, **lr))
    clock, made = FakeClock(), []

    def factory(n):
        made.append(ScriptedExecutor(n, clock))
        return made[-1]

    opts = dict(env="cartpole", space=str(space), run_dir=str(tmp_path / "run"), budget_hours=2.0, mode="hp",
                search_method=method, trainer="torch", device="cpu", seed_batching="off", quiet=True,
                trial_steps=8192, eval_every=4096, eval_episodes=8, n_jobs=2, seeds=2, top_k=1)
    opts.update(kw)
    rc = driver.run(prepare(RunConfig(**{"ladder": "off", **opts}), clock=clock, executor_factory=factory))
    return rc, state(tmp_path / "run"), made[0], tmp_path / "run"


def _studies(run_dir):
    url = f"sqlite:///{run_dir / 'study.db'}"
    return (optuna.load_study(study_name="automl", storage=url).get_trials(),
            optuna.load_study(study_name="automl-hp", storage=url).get_trials())


def test_rejected_proposals_are_recorded_told_fail_never_trained_and_not_counted(where):
    rc, st, ex, run_dir = run(where, SOME, hp_trials=8)
    assert rc == 0 and st["status"] == "finished" and st["stop_reason"] is None
    hp = [t for t in st["trials"] if t["kind"] == "hp"]
    rejected = [t for t in hp if t["state"] == "rejected"]
    trained = [t for t in hp if t["state"] != "rejected"]
    assert len(trained) == 8 and all(t["state"] == "complete" for t in trained)     # the quota, rejections aside
    assert rejected, "this seed's random search proposes some configs the constraint rejects"
    assert all(_breaks(t["params"], SOME) for t in rejected)
    assert not any(_breaks(t["params"], SOME) for t in trained)
    assert {t["reason"] for t in rejected} == {f"constraint: {SOME}"}
    assert all(not t.get("seeds") for t in rejected)
    # only trained configs were submitted, each on both tuning seeds
    submitted = sorted(j for j in ex.submitted if j.split(":")[1:2] == ["hp"])
    assert submitted == sorted(f"{t['config_id']}:hp:{s}" for t in trained for s in (0, 1))
    record, sampler = _studies(run_dir)
    by_id = {t.user_attrs.get("config_id"): t for t in record}
    for t in rejected:
        assert by_id[t["config_id"]].state.name == "FAIL" and by_id[t["config_id"]].user_attrs["rejected"]
    assert [t.state.name for t in sampler].count("FAIL") == len(rejected)
    assert [t.state.name for t in sampler].count("COMPLETE") == len(trained)
    assert all(_breaks(t.params, SOME) == (t.state.name == "FAIL") for t in sampler)


def test_max_rejects_in_a_row_ends_the_search_as_exhausted(where):
    rc, st, ex, run_dir = run(where, ALL_BUT_THE_PRIOR, hp_trials=5)
    assert rc == 0 and st["status"] == "search_exhausted" and st["stop_reason"] == EXHAUSTED
    hp = [t for t in st["trials"] if t["kind"] == "hp"]
    assert [(t["config_id"], t["state"]) for t in hp[:1]] == [("config_000", "complete")]      # the prior
    assert [t["state"] for t in hp[1:]] == ["rejected"] * MAX_REJECTS                       # then nothing new
    assert {j.split(":")[0] for j in ex.submitted if ":hp:" in j} == {"config_000"}
    record, sampler = _studies(run_dir)
    assert [t.state.name for t in sampler] == ["COMPLETE"] + ["FAIL"] * MAX_REJECTS
    assert [t.state.name for t in record if t.user_attrs.get("kind") == "hp"] == ["COMPLETE"] + ["FAIL"] * MAX_REJECTS
    # the run still re-checks what it tuned: the prior is the held-out winner and is tested
    best = yaml.safe_load((run_dir / "best.yaml").read_text())
    assert best["config_id"] == "config_000" and best["test_score"]["n_seeds"] == 2


def test_a_grid_walked_to_its_end_trains_each_allowed_point_once_then_stops_as_exhausted(where):
    rc, st, ex, run_dir = run(where, SOME, method="grid", grid=True, hp_trials=8)
    assert rc == 0 and st["status"] == "search_exhausted" and st["stop_reason"] == EXHAUSTED
    hp = [t for t in st["trials"] if t["kind"] == "hp"]
    # the grid in file order (itertools.product), (2e-3, 4 epochs) dropped by the constraint, nothing rejected
    assert [(t["config_id"], t["params"], t["state"]) for t in hp] == [
        ("config_000", {"learning_rate": 1e-3, "learning_epochs": 2}, "complete"),
        ("config_001", {"learning_rate": 1e-3, "learning_epochs": 4}, "complete"),
        ("config_002", {"learning_rate": 2e-3, "learning_epochs": 2}, "complete")]
    assert sorted(j for j in ex.submitted if ":hp:" in j) == [f"config_00{i}:hp:{s}" for i in range(3) for s in (0, 1)]
    _, sampler = _studies(run_dir)
    assert [t.state.name for t in sampler] == ["COMPLETE"] * 3
    assert [t["kind"] for t in st["trials"]].count("heldout") == 2 and st["test"]
