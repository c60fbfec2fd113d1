"""Tests for automl.exec.executor: results, failures (exception, NaN, timeout, killed worker), stop, orphans.

Worker-side job functions live in tests/_jobs.py: spawned workers get the driver's
sys.path, where pytest put this directory.
"""
import dataclasses
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import _jobs
from automl.core.stop import StopReason
from automl.exec.executor import (
    Done, Job, LocalProcessExecutor, Report, contains_nonfinite, make_executor,
)

TESTS_DIR = Path(__file__).resolve().parent


@pytest.fixture
def ex():
    executor = LocalProcessExecutor(2, preload=())  # no torch import: workers start in ~0.2 s
    yield executor
    executor.shutdown(grace_s=1.0)


def collect(executor, n_done, timeout=20.0, on_event=None):
    """Poll until `n_done` Done events arrived; return (reports by job_id, results by job_id)."""
    reports, results = {}, {}
    end = time.monotonic() + timeout
    while len(results) < n_done:
        assert time.monotonic() < end, f"only {len(results)} of {n_done} jobs finished"
        for event in executor.poll(timeout=0.5):
            if on_event is not None:
                on_event(event)
            if isinstance(event, Report):
                reports.setdefault(event.job_id, []).append(event.payload)
            else:
                results[event.result.job_id] = event.result
    return reports, results


def wait_report(executor, job_id, timeout=20.0):
    """Poll until the first report of `job_id`; return its payload."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for event in executor.poll(timeout=0.5):
            assert not isinstance(event, Done), f"unexpected {event}"
            if isinstance(event, Report) and event.job_id == job_id:
                return event.payload
    raise AssertionError(f"no report from {job_id}")


def test_results_come_back_with_values_and_tags(ex):
    for i in range(6):
        ex.submit(Job(f"j{i}", _jobs.add, {"a": i, "b": 10}, tag=("config_001", i)))
    ex.submit(Job("by_name", "_jobs:add", {"a": 2, "b": 3}, tag="s"))
    _, results = collect(ex, 7)
    for i in range(6):
        r = results[f"j{i}"]
        assert (r.ok, r.state, r.value, r.tag, r.reason) == (True, "complete", i + 10, ("config_001", i), "")
        assert r.wall_s >= 0 and r.worker_pid in ex.worker_pids()
    assert results["by_name"].value == 5 and results["by_name"].tag == "s"


def test_jobs_run_in_parallel_on_distinct_workers(ex):
    ex.submit(Job("a", _jobs.until_stopped))
    ex.submit(Job("b", _jobs.until_stopped))
    assert ex.idle_slots() == 0
    end = time.monotonic() + 10
    while len(ex.running()) < 2 and time.monotonic() < end:
        ex.poll(0.1)
    running = ex.running()
    assert set(running) == {"a", "b"}
    assert {info.pid for info in running.values()} == set(ex.worker_pids())
    for job_id in running:
        ex.request_stop(job_id, "done")
    collect(ex, 2)
    assert ex.idle_slots() == 2


def test_exception_is_a_failed_result_and_pool_keeps_working(ex):
    ex.submit(Job("bad", _jobs.boom, tag=1))
    ex.submit(Job("good", _jobs.add, {"a": 1, "b": 1}))
    _, results = collect(ex, 2)
    bad = results["bad"]
    assert (bad.ok, bad.state, bad.value) == (False, "failed", None)
    assert bad.reason == "exception: ZeroDivisionError: division by zero"
    assert "_jobs.py" in bad.detail  # the traceback, for the log
    assert results["good"].value == 2
    ex.submit(Job("no_module", "no_such_module:f"))
    ex.submit(Job("unpicklable", _jobs.unpicklable_result))
    ex.submit(Job("after", _jobs.add, {"a": 3, "b": 4}))
    results = collect(ex, 3)[1]
    assert results["no_module"].reason.startswith("exception: ModuleNotFoundError")
    assert results["unpicklable"].reason.startswith("exception: result not picklable")
    assert results["after"].value == 7


def test_job_may_start_its_own_processes(ex):
    ex.submit(Job("parent", _jobs.start_child_process))
    r = collect(ex, 1)[1]["parent"]
    assert r.ok, r.reason
    assert r.value == 0


def test_nan_in_result_is_failed(ex):
    ex.submit(Job("nan", _jobs.nan_result))
    r = collect(ex, 1)[1]["nan"]
    assert (r.ok, r.state, r.reason) == (False, "failed", "nan in result")
    assert "['seeds'][1]['reward']" in r.detail
    assert math.isnan(r.value["seeds"][1]["reward"])  # kept so the driver can record what there was


def test_timeout_kills_and_replaces_the_worker(ex):
    ex.submit(Job("slow", _jobs.sleep_forever, timeout_s=1.0, tag="t"))
    pid = wait_report(ex, "slow")
    ex.submit(Job("next", _jobs.add, {"a": 1, "b": 2}))
    _, results = collect(ex, 2)
    slow = results["slow"]
    assert (slow.ok, slow.state, slow.reason, slow.tag) == (False, "timeout", "timeout after 1s", "t")
    assert slow.wall_s >= 1.0
    assert results["next"].value == 3
    assert _gone(pid, within=5.0)
    assert pid not in ex.worker_pids()
    _wait_workers(ex, 2)


def test_killed_worker_fails_its_job_and_is_replaced(ex):
    ex.submit(Job("victim", _jobs.sleep_forever, tag=("config_002", 1)))
    pid = wait_report(ex, "victim")
    assert ex.running()["victim"].pid == pid
    os.kill(pid, signal.SIGKILL)
    r = collect(ex, 1)[1]["victim"]
    assert (r.ok, r.state, r.reason, r.tag) == (False, "failed", "worker died (signal 9)", ("config_002", 1))
    _wait_workers(ex, 2)
    assert pid not in ex.worker_pids()
    for i in range(3):  # more jobs than the surviving worker alone: the replacement takes some
        ex.submit(Job(f"n{i}", _jobs.add, {"a": i, "b": 0}))
    assert {k: r.value for k, r in collect(ex, 3)[1].items()} == {"n0": 0, "n1": 1, "n2": 2}


def test_request_stop_reaches_the_running_job(ex):
    ex.submit(Job("long", _jobs.until_stopped, {"max_s": 30.0}))
    wait_report(ex, "long")
    assert ex.request_stop("long", "pruned at eval 3")
    assert ex.running()["long"].stop_reason == "pruned at eval 3"
    r = collect(ex, 1, timeout=5.0)[1]["long"]
    assert r.ok and r.state == "complete" and r.stop_reason == "pruned at eval 3"
    assert r.value["stop_reason"] == "pruned at eval 3" and r.value["waited_s"] < 60.0  # a generous ceiling
    assert not ex.request_stop("long", "too late")  # settled jobs are not live


def test_a_stop_reaches_the_job_with_its_reason(ex):
    """The reason is an enum the job reads (never the text); the text is what it records."""
    ex.submit(Job("cut", _jobs.until_stopped, {"max_s": 30.0}))
    wait_report(ex, "cut")
    assert ex.request_stop("cut", StopReason.INTERRUPTED)
    r = collect(ex, 1, timeout=30.0)[1]["cut"]
    assert r.value["stop_reason"] == "interrupted" and r.value["stop_reason"].reason is StopReason.INTERRUPTED
    assert r.stop_reason.reason is StopReason.INTERRUPTED


def test_stop_requested_before_start_is_seen_at_start():
    with LocalProcessExecutor(1, preload=()) as ex:
        ex.submit(Job("first", _jobs.until_stopped))
        wait_report(ex, "first")
        ex.submit(Job("queued", _jobs.until_stopped))
        assert ex.pending() == ["queued"] and ex.idle_slots() == 0
        assert ex.request_stop("queued", "deadline")
        ex.request_stop("first", "stop")
        results = collect(ex, 2)[1]
        assert results["queued"].value["stop_reason"] == "deadline"
        assert results["queued"].value["polls"] == 1  # the stop was there when it started: its first look saw it


def test_reports_arrive_in_order(ex):
    ex.submit(Job("a", _jobs.count, {"n": 300}))
    ex.submit(Job("b", _jobs.count, {"n": 300}))
    order = []
    reports, results = collect(ex, 2, on_event=lambda e: order.append(
        (e.job_id if isinstance(e, Report) else "done:" + e.result.job_id)))
    assert reports["a"] == list(range(300)) and reports["b"] == list(range(300))
    # a job's Done comes after all its reports
    assert order.index("done:a") > max(i for i, k in enumerate(order) if k == "a")
    assert results["a"].value == 300


def test_cancel_queued_and_running():
    with LocalProcessExecutor(1, preload=()) as ex:
        ex.submit(Job("run", _jobs.sleep_forever))
        ex.submit(Job("wait", _jobs.add, {"a": 1, "b": 1}))
        pid = wait_report(ex, "run")
        assert ex.cancel("wait", "not needed")
        assert ex.cancel("run")
        results = collect(ex, 2)[1]
        assert (results["wait"].state, results["wait"].reason) == ("cancelled", "not needed")
        assert results["run"].state == "cancelled" and not results["run"].ok
        assert _gone(pid, within=5.0)
        assert not ex.cancel("run")
        ex.submit(Job("after", _jobs.add, {"a": 2, "b": 2}))
        assert collect(ex, 1)[1]["after"].value == 4


def test_submit_checks():
    with make_executor("local", n_jobs=1, preload=()) as ex:
        ex.submit(Job("x", _jobs.until_stopped))
        with pytest.raises(ValueError, match="already queued or running"):
            ex.submit(Job("x", _jobs.add))
        with pytest.raises(ValueError, match="'y': fn or kwargs cannot be sent to a worker process"):
            ex.submit(Job("y", lambda channel: 1))  # a lambda cannot be sent to a worker: fail in the caller
        with pytest.raises(ValueError, match="channel"):
            ex.submit(Job("z", _jobs.add, {"a": 1, "b": 2, "channel": None}))
        with pytest.raises(ValueError, match="timeout_s"):
            ex.submit(Job("z", _jobs.add, {"a": 1, "b": 2}, timeout_s=0))
        assert ex.pending() + list(ex.running()) == ["x"]
        ex.request_stop("x")
        collect(ex, 1)
    with pytest.raises(ValueError, match="allowed: local, ray"):
        make_executor("slurm")


def test_worker_has_one_torch_thread():
    with LocalProcessExecutor(1) as ex:  # default preload: torch imported once at worker start
        ex.submit(Job("t", _jobs.thread_info))
        r = collect(ex, 1, timeout=30.0)[1]["t"]
    assert r.value["torch_threads"] == 1 and r.value["omp"] == "1"
    assert r.value["pid"] != os.getpid()


def test_shutdown_stops_running_jobs_cooperatively():
    ex = LocalProcessExecutor(2, preload=())
    ex.submit(Job("coop", _jobs.until_stopped))
    ex.submit(Job("stubborn", _jobs.sleep_forever))
    ex.submit(Job("queued", _jobs.add, {"a": 1, "b": 1}))
    wait_report(ex, "coop")
    pids = ex.worker_pids()
    # without the kill it would wait forever (pytest-timeout fails a hang); the stubborn job's state says
    # it was killed, not that it ended on its own
    results = {e.result.job_id: e.result for e in ex.shutdown(grace_s=1.0) if isinstance(e, Done)}
    assert results["coop"].ok and results["coop"].value["stop_reason"] == "shutdown"
    assert results["stubborn"].state == "cancelled" and "shutdown" in results["stubborn"].reason
    assert results["queued"].state == "cancelled"
    assert all(_gone(pid, within=3.0) for pid in pids)
    assert ex.shutdown() == []
    with pytest.raises(RuntimeError):
        ex.poll(0)


DRIVER = """
import signal, sys, time
sys.path[:0] = [{tests!r}]
import _jobs
from automl.exec.executor import Job, LocalProcessExecutor, Report

def main():
    signal.signal(signal.SIGINT, signal.default_int_handler)
    ex = LocalProcessExecutor(1, preload=())
    try:
        ex.submit(Job("long", _jobs.{fn}))
        while True:
            for event in ex.poll(1.0):
                if isinstance(event, Report):
                    print("worker", ex.running()["long"].pid, flush=True)
    finally:
        for event in ex.shutdown(grace_s=2.0):
            print("final", event.result.state, event.result.stop_reason, flush=True)

if __name__ == "__main__":
    main()
"""


def _start_parent(tmp_path, fn):
    """A minimal process that owns an executor (these test the executor's worker cleanup; the real
    driver is killed and interrupted in tests/test_cli.py and tests/test_driver_failures.py)."""
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(DRIVER.format(tests=str(TESTS_DIR), fn=fn)))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith("worker "), line
    return proc, int(line.split()[1])


def test_parent_kill9_leaves_no_orphan_worker(tmp_path):
    driver, worker_pid = _start_parent(tmp_path, "sleep_forever")
    assert _alive(worker_pid)
    driver.kill()
    driver.wait(timeout=5)
    assert _gone(worker_pid, within=5.0)


CHILD_WITHOUT_PRCTL = """
import os, sys, time
import automl.exec.workers as workers
sys.platform = "not-linux"  # skip prctl: only the watchdog thread is left to notice the parent's death
workers.die_with_parent(os.getppid())
print(os.getpid(), flush=True)
time.sleep(60)
"""
MIDDLE = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1]], stdout=subprocess.PIPE, text=True)
print(child.stdout.readline().strip(), flush=True)
time.sleep(60)
"""


def test_watchdog_kills_worker_when_parent_dies_without_prctl():
    middle = subprocess.Popen([sys.executable, "-c", MIDDLE, CHILD_WITHOUT_PRCTL], stdout=subprocess.PIPE, text=True)
    child_pid = int(middle.stdout.readline())
    assert _alive(child_pid)
    middle.kill()
    middle.wait(timeout=5)
    assert _gone(child_pid, within=5.0)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_parent_sigterm_or_ctrl_c_shuts_workers_down(tmp_path, sig):
    driver, worker_pid = _start_parent(tmp_path, "until_stopped")
    driver.send_signal(sig)
    out, _ = driver.communicate(timeout=10)
    assert "final complete shutdown" in out  # the job was asked to stop and its result came back
    assert _gone(worker_pid, within=5.0)


def test_contains_nonfinite():
    @dataclasses.dataclass
    class SeedResult:
        reward: float
        curve: list

    assert not contains_nonfinite({"a": [1, 2.5, "nan", None, True], "b": np.arange(3)})
    assert contains_nonfinite({"a": [1.0, {"b": float("nan")}]})
    assert contains_nonfinite((1.0, float("-inf")))
    assert contains_nonfinite(SeedResult(1.0, [0.5, float("inf")]))
    assert contains_nonfinite(np.array([1.0, np.nan]))
    assert contains_nonfinite(np.float32("nan"))
    cyclic = [1.0]
    cyclic.append(cyclic)
    assert not contains_nonfinite(cyclic)


def _alive(pid):
    """True while `pid` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _gone(pid, within):
    end = time.monotonic() + within
    while time.monotonic() < end:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def _wait_workers(ex, n, timeout=10.0):
    """Replacement workers start in the background; poll until `n` are alive."""
    end = time.monotonic() + timeout
    while len(ex.worker_pids()) < n and time.monotonic() < end:
        ex.poll(0.1)
    assert len(ex.worker_pids()) == n
