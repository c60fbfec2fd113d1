"""Scaling out, on real servers started here on loopback: a local Ray cluster (head plus one more node)
and a PostgreSQL server. Each test is skipped, with the reason, when a component it uses is missing (Ray
for the cluster; psycopg2, the PostgreSQL binaries or, as root, runuser and the postgres user for the
server); `.ci/run` installs them all and fails on such a skip (tests/_servers.py: require)."""
import json
import subprocess
import sys
import time

import optuna
import pytest
import yaml

from _cli import ROOT, TINY, state
from _servers import Postgres, RayCluster, require


@pytest.fixture(scope="module")
def cluster():
    require("ray")
    c = RayCluster()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def postgres():
    require("postgresql")
    pg = Postgres()
    yield pg
    pg.stop()


def test_the_ray_executor_keeps_the_local_executor_s_contract(cluster):
    out = subprocess.run([sys.executable, str(ROOT / "tests" / "_ray_contract.py"), cluster.address], cwd=ROOT,
                         env=cluster.env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    done, reports = got["done"], got["reports"]
    assert "already queued or running" in got["duplicate"]
    assert done["add"]["ok"] and done["add"]["value"] == 5
    assert done["boom"]["state"] == "failed" and "ZeroDivisionError" in done["boom"]["reason"]
    assert done["nan"]["state"] == "failed" and done["nan"]["reason"] == "nan in result"
    assert [p for j, p in reports if j == "count"] == [0, 1, 2, 3, 4] and done["count"]["value"] == 5
    assert done["stop"]["value"]["stop_reason"] == "pruned" and done["stop"]["stop_reason"] == "pruned"
    assert done["hang"]["state"] == "timeout" and done["hang"]["reason"] == "timeout after 3s"


def _command(run_dir, cluster, postgres):
    return [sys.executable, "-m", "automl", "--mode", "stage", "--env", "cartpole", "--ladder", "off", "--space", TINY,
            "--budget-hours", "0.3", "--hp-trials", "2", "--reward-generations", "1", "--reward-population", "2",
            "--seeds", "2", "--n-jobs", "2", "--top-k", "1", "--trial-steps", "65536", "--eval-every", "16384",
            "--eval-episodes", "8", "--search-method", "random", "--pruner", "none", "--executor", "ray",
            "--ray-address", cluster.address, "--storage", postgres.url, "--run-dir", str(run_dir), "--quiet"]


def _seeds(st) -> dict:
    return {(t["config_id"], t["kind"], s["seed"]): s for t in st["trials"] for s in t["seeds"]}


def test_a_staged_run_on_ray_and_postgresql_loses_a_node_and_finishes_with_every_seed_kept(cluster, postgres,
                                                                                           tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(_command(run_dir, cluster, postgres), cwd=ROOT, env=cluster.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    before, end = {}, time.time() + 400
    while time.time() < end and proc.poll() is None:
        if (run_dir / "automl_state.yaml").exists():
            before = _seeds(state(run_dir))
        if before and cluster.node_runs_task():
            break
        time.sleep(0.5)
    assert proc.poll() is None and before, "the run ended before the extra node ran a job"
    cluster.kill_node()
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    st = state(run_dir)
    after = _seeds(st)
    assert all(after[k] == v for k, v in before.items())          # every seed recorded before the loss is kept
    lost = st["lost_jobs"]
    assert lost and all(x["attempt"] == 1 and x["reason"] for x in lost)
    for x in lost:                                                 # ... and every lost job was run again
        config_id, kind, seed = x["job_id"].split(":")
        assert after[(config_id, kind, int(seed))]["state"] in ("complete", "failed")
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert sum(e["event"] == "job_lost" for e in events) == len(lost)
    assert st["status"] == "finished"
    # the studies live in PostgreSQL, named after the run directory
    record = optuna.load_study(study_name="run:automl", storage=postgres.url)
    assert len(record.trials) == len(st["trials"])
    assert not (run_dir / "study.db").exists()


@pytest.mark.slow  # tests/test_lease.py checks the lease's answers; this is the end-to-end run on PostgreSQL
def test_a_second_driver_on_a_live_run_is_refused_and_a_killed_one_resumes(postgres, tmp_path):
    cmd = [sys.executable, "-m", "automl", "--mode", "hp", "--env", "cartpole", "--ladder", "off", "--space", TINY, "--budget-hours",
           "0.3", "--hp-trials", "3", "--seeds", "2", "--n-jobs", "1", "--top-k", "1", "--trial-steps", "8192",
           "--eval-every", "4096", "--eval-episodes", "8", "--search-method", "random", "--storage", postgres.url,
           "--run-dir", str(tmp_path / "run2"), "--quiet"]
    first = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lease = tmp_path / "run2" / "driver.lease"
    end = time.time() + 120
    while time.time() < end and not (tmp_path / "run2" / "automl_state.yaml").exists():
        time.sleep(0.2)
    second = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert second.returncode == 2 and "another driver (pid" in second.stderr and "Traceback" not in second.stderr
    assert json.loads(lease.read_text())["pid"] == first.pid
    first.kill()
    first.wait()
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    st = yaml.safe_load((tmp_path / "run2" / "automl_state.yaml").read_text())
    assert st["status"] == "finished" and not lease.exists()
    assert len(optuna.load_study(study_name="run2:automl", storage=postgres.url).trials) == len(st["trials"])


def test_a_plain_postgresql_url_opens_with_the_driver_that_is_installed(postgres):
    from automl.search import studies

    plain = postgres.url.replace("postgresql+psycopg2://", "postgresql://")   # as the README writes it
    study = studies.open_study(plain, "plain:automl")
    study.enqueue_trial({"x": 1.0})
    trials = optuna.load_study(study_name="plain:automl", storage=postgres.url).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.WAITING]      # it is in the server's database
