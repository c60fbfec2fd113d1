"""The Ray executor's timeout, cancel and lost-task paths on a real local Ray (tests/_ray_paths.py, run once in
its own process): a job past its timeout is stopped (its worker process killed) and recorded as such; cancel
drops a queued job and kills a running one, each with a result saying so; a task whose worker dies is
reported lost and run once more, and a second loss fails the seed under the driver's Scheduler while the
config's other seed completes. The contract shared with the local executor is in test_scaling_out.py.
"""
import json
import os
import subprocess
import sys

import pytest
from _cli import ROOT
from _servers import require

LOST = "lost twice: WorkerCrashedError: "  # then Ray's own words


@pytest.fixture(scope="module")
def seen():
    require("ray")  # skipped with the reason (a failure under CI, which installs it) when Ray is missing
    tests = str(ROOT / "tests")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": os.pathsep.join([tests, str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, str(ROOT / "tests" / "_ray_paths.py")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=540)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    return json.loads(next(line for line in reversed(out.stdout.splitlines()) if line.startswith("{")))


def test_a_job_past_its_timeout_is_stopped_and_recorded(seen):
    t = seen["timeout"]
    assert (t["ok"], t["state"], t["reason"]) == (False, "timeout", "timeout after 2s")
    assert t["wall_s"] >= 2.0 and t["pid"] and t["worker_killed"] and t["running_after"] == []
    # under the scheduler: the seed is recorded failed with the reason
    slow = [rec for cid, seed, rec in seen["scheduler"]["seeds_done"] if cid == "config_slow"]
    assert [(r["seed"], r["state"], r["reason"]) for r in slow] == [(0, "failed", "timeout after 2s")]


def test_cancel_drops_a_queued_job_and_kills_a_running_one(seen):
    c = seen["cancel"]
    assert c["pending_before"] == ["queued"]
    assert (c["cancel_queued"], c["cancel_running"], c["cancel_unknown"], c["cancel_again"]) == (True, True, False, False)
    assert c["done"] == {"queued": {"ok": False, "state": "cancelled", "reason": "not needed"},
                         "a": {"ok": False, "state": "cancelled", "reason": "pruned by the test"}}
    assert c["a_killed"] and c["b_alive"]                       # only the cancelled job's worker was killed
    assert c["running_after"] == ["b"] and c["pending_after"] == []


def test_a_task_lost_twice_fails_its_seed_and_the_config_goes_on(seen):
    s = seen["scheduler"]
    assert len(s["killed"]) == 2 and len(set(s["killed"])) == 2   # each attempt ran in a fresh worker, killed
    assert [(x["job_id"], x["attempt"]) for x in s["lost"]] == [("config_lost:hp:0", 1), ("config_lost:hp:0", 2)]
    assert all(x["reason"].startswith("WorkerCrashedError") for x in s["lost"])
    records = {seed: rec for cid, seed, rec in s["seeds_done"] if cid == "config_lost"}
    assert records[0]["state"] == "failed" and records[0]["reason"].startswith(LOST)
    assert (records[1]["state"], records[1]["episode_reward_mean"]) == ("complete", 0.5)
    assert sorted(s["configs_done"]) == ["config_lost", "config_slow"]
