"""Run in its own process (Ray is started here, and its workers import tests/_jobs.py): the Ray executor's
timeout, cancel and lost-task paths on a real local Ray, first on the executor alone, then under the
driver's Scheduler. Prints what happened as JSON for tests/test_ray_paths.py.

    PYTHONPATH=tests:. python tests/_ray_paths.py

Nothing here waits a fixed time: each step polls for the event it needs, with a generous ceiling.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time

import optuna

import _jobs
from _failures import alive
from _sim import FakeClock
from automl.exec.executor import Done, Job, Lost, Report, make_executor
from automl.run.budget import Budget, Throughput
from automl.run.configrun import ConfigEnded, ConfigRun, JobLost, SeedEnded, SeedJobs
from automl.run.scheduler import Scheduler

CEILING_S = 120.0


def _until(ex, what, done=lambda events: False, act=lambda: None) -> list:
    """Poll ``ex`` (calling ``act`` between polls) until ``done(events so far)``; every event seen."""
    events, end = [], time.monotonic() + CEILING_S
    while not done(events):
        if time.monotonic() > end:
            raise TimeoutError(f"waited {CEILING_S:.0f} s for {what}; saw {events}")
        events += ex.poll(0.1)
        act()
    return events


def _gone(pid: int) -> bool:
    end = time.monotonic() + CEILING_S
    while alive(pid) and time.monotonic() < end:
        time.sleep(0.05)
    return not alive(pid)


def _done(events, job_id):
    return next((e.result for e in events if isinstance(e, Done) and e.result.job_id == job_id), None)


def _reported_pid(events, job_id):
    return next((e.payload for e in events if isinstance(e, Report) and e.job_id == job_id), None)


def timeout(ex) -> dict:
    """A job that ignores stop requests and runs past its 2 s timeout (on a worker already up: a first job
    warms the cluster, so a loaded machine's slow worker start does not eat the 2 s before the job reports)."""
    ex.submit(Job("warm", _jobs.add, {"a": 1, "b": 1}))
    _until(ex, "the warm-up job", lambda ev: _done(ev, "warm") is not None)
    ex.submit(Job("hang", _jobs.sleep_forever, timeout_s=2.0))
    events = _until(ex, "the timeout", lambda ev: _done(ev, "hang") is not None)
    r, pid = _done(events, "hang"), _reported_pid(events, "hang")
    return {"ok": r.ok, "state": r.state, "reason": r.reason, "wall_s": r.wall_s, "pid": pid,
            "worker_killed": pid is not None and _gone(pid), "running_after": list(ex.running())}


def cancel(ex) -> dict:
    """Two jobs on the two slots, a third queued: cancel the queued one, then a running one, then unknowns."""
    for job_id in ("a", "b", "queued"):
        ex.submit(Job(job_id, _jobs.sleep_forever, timeout_s=600.0))
    events = _until(ex, "both running jobs' pids", lambda ev: all(_reported_pid(ev, j) for j in ("a", "b")))
    pids = {j: _reported_pid(events, j) for j in ("a", "b")}
    out = {"pending_before": ex.pending(), "cancel_queued": ex.cancel("queued", "not needed")}
    out["cancel_running"] = ex.cancel("a", "pruned by the test")
    out["cancel_unknown"] = ex.cancel("nope")
    events = _until(ex, "the cancelled jobs' results", lambda ev: _done(ev, "queued") and _done(ev, "a"))
    out["done"] = {j: {"ok": r.ok, "state": r.state, "reason": r.reason}
                   for j in ("queued", "a") for r in [_done(events, j)]}
    out["a_killed"], out["b_alive"] = _gone(pids["a"]), alive(pids["b"])
    out["cancel_again"] = ex.cancel("a")
    out["running_after"], out["pending_after"] = sorted(ex.running()), ex.pending()
    ex.cancel("b")
    _until(ex, "b's result", lambda ev: _done(ev, "b") is not None)
    return out


def lost_twice_under_the_scheduler(ex) -> dict:
    """Seed 0 of config_lost hangs and its worker is killed on each attempt; seed 0 of config_slow hangs past
    its timeout (2 s, by its step count); seed 1 of config_lost completes."""
    seeds_done, lost, configs_done, killed = [], [], [], []
    study = optuna.create_study(direction="maximize")

    def config(config_id, scripts, steps):
        return ConfigRun(trial=study.ask(), config_id=config_id, kind="hp", cycle=0, params={}, weights={},
                         seeds=list(scripts), train_params=scripts, steps=steps, results={})

    sched = Scheduler(ex, Budget(1.0, clock=FakeClock()), Throughput(steps_per_s=1000.0, startup_s=0.0), n_jobs=2)

    def handle(events):
        for ev in events:
            if isinstance(ev, SeedEnded):
                seeds_done.append([ev.config.config_id, ev.seed, ev.record])
            elif isinstance(ev, ConfigEnded):
                configs_done.append(ev.config.config_id)
            elif isinstance(ev, JobLost):
                lost.append({"config_id": ev.config.config_id, "job_id": ev.lost.job_id,
                             "attempt": ev.lost.attempt, "reason": ev.lost.reason})

    def add(c, timeout_s):
        c.timeout_s = timeout_s  # config_slow's seed hangs past its 2 s limit
        handle(sched.add(c, SeedJobs(fn=_jobs.scripted_seed, own_deadline=True,
                                     seed_kwargs={s: {"seed": s, **c.train_params[s]} for s in c.seeds})))

    add(config("config_lost", {0: {"values": [1.0], "hang_at": 0}, 1: {"values": [0.5]}}, steps=300), 600.0)
    add(config("config_slow", {0: {"values": [1.0], "hang_at": 0}}, steps=100), 2.0)
    end = time.monotonic() + 2 * CEILING_S
    while len(configs_done) < 2:
        if time.monotonic() > end:
            raise TimeoutError(f"configs never finished: {seeds_done} {lost}")
        handle(sched.step(0.1))
        where = ex.where("config_lost:hp:0")  # (attempt, node, pid, started) of the attempt now running
        if where and where[0] > len(killed):
            os.kill(where[2], signal.SIGKILL)  # the worker dies under the task: a lost task, not a failed job
            killed.append(where[2])
    return {"seeds_done": seeds_done, "lost": lost, "configs_done": configs_done, "killed": killed}


def main() -> dict:
    ex = make_executor("ray", n_jobs=2)
    try:
        return {"timeout": timeout(ex), "cancel": cancel(ex), "scheduler": lost_twice_under_the_scheduler(ex)}
    finally:
        ex.shutdown(grace_s=1.0)


if __name__ == "__main__":
    print(json.dumps(main(), default=str))
