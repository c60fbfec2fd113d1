"""Seed jobs as Ray tasks (``--executor ray [--ray-address auto|HOST:PORT]``).

The same job function, results and failure isolation as the local executor (``run_job`` runs inside the
task: exceptions and NaN become failed results), the same stop channel (a small Ray actor, the hub,
holds the jobs' reports and the driver's stop requests) and the same timeouts. Ray places the jobs on
the cluster's nodes; nothing here knows about nodes. A job whose task is lost with its worker or node
(a Ray system error, not the job's own failure) is reported as a ``Lost`` event with the reason and
submitted once more; a second loss is a failed result. Each task asks for one CPU (and ``--gpus-per-job``
GPUs: Ray's num_gpus) and runs torch with one thread, as the local workers do.

``ray`` is an optional extra: ``pip install -e ".[ray]"``.
"""
from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from automl.core.stop import Stop, StopReason
from automl.core.errors import AutoMLError
from automl.exec.base import Executor, failed_done
from automl.exec.devices import task_options
from automl.exec.jobs import Done, Job, JobResult, Lost, Report, RunningJob
from automl.exec.workers import THREAD_ENV

STOP_CHECK_S = 0.2  # a job asks the hub for a stop request at most this often


def _ray():
    try:
        import ray
    except ImportError:
        raise ImportError('--executor ray needs Ray: pip install -e ".[ray]"') from None
    return ray


def _check_gpus(ray, gpus_per_job: float | None) -> None:
    """A task asking for more GPUs than the cluster has would wait forever: one line instead."""
    have = ray.cluster_resources().get("GPU", 0)
    if gpus_per_job and have < gpus_per_job:
        raise AutoMLError(f"--gpus-per-job: {gpus_per_job:g}, but the Ray cluster has {have:g} GPU(s) "
                          f"(allowed: at most {have:g}, or run where Ray sees GPUs)")


class RayChannel:
    """A job's line to the driver through the hub actor: ``report``, ``stop_requested``, ``stop_reason``."""

    def __init__(self, hub, job_id: str, attempt: int, stop_reason: str | None = None):
        self._hub, self._job_id, self._attempt = hub, job_id, attempt
        self._stop_reason, self._checked = Stop.of(stop_reason), 0.0

    def report(self, payload) -> None:
        """Send an intermediate value; synchronous, so the driver sees it before the job's result."""
        _ray().get(self._hub.report.remote(self._job_id, self._attempt, payload))

    def stop_requested(self) -> bool:
        return self.stop_reason() is not None

    def stop_reason(self) -> str | None:
        if self._stop_reason is None and time.monotonic() - self._checked >= STOP_CHECK_S:
            self._checked = time.monotonic()
            self._stop_reason = Stop.of(_ray().get(self._hub.stop_reason.remote(self._job_id)))
        return self._stop_reason


class _Hub:
    """Reports waiting for the driver, stop requests waiting for the jobs, and where each job runs."""

    def __init__(self) -> None:
        self.reports: list = []
        self.stops: dict[str, str] = {}
        self.where: dict[str, tuple] = {}

    def report(self, job_id, attempt, payload):
        self.reports.append((job_id, attempt, payload))

    def started(self, job_id, attempt, node, pid):
        self.where[job_id] = (attempt, node, pid, time.time())

    def stop(self, job_id, reason):
        self.stops.setdefault(job_id, reason)

    def stop_reason(self, job_id):
        return self.stops.get(job_id)

    def drain(self):
        out, self.reports = self.reports, []
        return out, dict(self.where)

    def forget(self, job_id):
        self.stops.pop(job_id, None)
        self.where.pop(job_id, None)


def _task(blob: bytes, job_id: str, attempt: int, hub, stop_reason: str | None):
    """One job in a Ray worker: one torch thread, ``run_job`` (never raises), the stop reason it saw."""
    for name in THREAD_ENV:
        os.environ[name] = "1"
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    from automl.exec.workers import run_job

    node, pid = socket.gethostname(), os.getpid()
    _ray().get(hub.started.remote(job_id, attempt, node, pid))
    channel = RayChannel(hub, job_id, attempt, stop_reason)
    state, value, reason, detail, wall = run_job(blob, channel)
    return state, value, reason, detail, wall, channel._stop_reason, pid, node


@dataclass
class _Flight:
    job: Job
    blob: bytes
    attempt: int = 1
    ref: Any = None
    submitted: float = 0.0
    stop_reason: str | None = None


class RayExecutor(Executor):
    """``n_jobs`` Ray tasks in flight at a time, on the cluster at ``address`` (None: a local Ray)."""

    def __init__(self, n_jobs: int = 1, *, address: str | None = None, gpus_per_job: float | None = None, **_):
        ray = _ray()
        if n_jobs < 1:
            raise ValueError(f"n_jobs: must be >= 1, got {n_jobs}")
        self.n_jobs = int(n_jobs)
        if not ray.is_initialized():
            ray.init(address=address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False,
                     logging_level="ERROR", configure_logging=False,
                     **({} if address else {"num_cpus": max(n_jobs, 1)}))
        _check_gpus(ray, gpus_per_job)
        # the hub lives on the driver's own node: losing any other node must not take the channels with it
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
        self._hub = ray.remote(num_cpus=0, scheduling_strategy=here)(_Hub).remote()
        self.options = task_options(gpus_per_job)  # Ray's resource request per task (num_gpus: --gpus-per-job)
        self._remote = ray.remote(**self.options)(_task)
        self._queue: list[_Flight] = []
        self._flying: dict[str, _Flight] = {}
        self._events: list = []
        self._where: dict[str, tuple] = {}
        self._closed = False

    # --- driver API -------------------------------------------------------------
    def submit(self, job: Job) -> None:
        import pickle

        if self._closed:
            raise RuntimeError("executor is shut down")
        self.check_submit(job)
        self._queue.append(_Flight(job, pickle.dumps((job.fn, job.kwargs), protocol=pickle.HIGHEST_PROTOCOL)))
        self._dispatch()

    def poll(self, timeout: float | None = None) -> list:
        ray = _ray()
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            self._dispatch()
            refs = [f.ref for f in self._flying.values()]
            wait_s = 0.05 if self._events else min(0.2, max(0.0, end - time.monotonic())) if end else 0.2
            ready = ray.wait(refs, num_returns=len(refs), timeout=wait_s)[0] if refs else []
            self._drain_hub()
            for ref in ready:
                self._settle(ref)
            self._enforce_timeouts()
            self._dispatch()
            if self._events or not (self._queue or self._flying) or (end is not None and time.monotonic() >= end):
                events, self._events = self._events, []
                return events

    def request_stop(self, job_id: str, reason: Stop | StopReason | str = "stop") -> bool:
        reason = Stop.of(reason)
        for f in self._queue:
            if f.job.job_id == job_id:
                f.stop_reason = f.stop_reason or reason
                return True
        flight = self._flying.get(job_id)
        if flight is None:
            return False
        flight.stop_reason = flight.stop_reason or reason
        self._hub.stop.remote(job_id, reason)
        return True

    def cancel(self, job_id: str, reason: str = "cancelled") -> bool:
        for f in list(self._queue):
            if f.job.job_id == job_id:
                self._queue.remove(f)
                self._events.append(failed_done(f.job, "cancelled", reason, 0.0))
                return True
        flight = self._flying.pop(job_id, None)
        if flight is None:
            return False
        _ray().cancel(flight.ref, force=True)
        self._events.append(failed_done(flight.job, "cancelled", reason, time.monotonic() - flight.submitted,
                                        self._pid(job_id)))
        self._hub.forget.remote(job_id)
        return True

    def running(self) -> dict[str, RunningJob]:
        return {jid: RunningJob(jid, f.job.tag, self._pid(jid) or 0, f.submitted, f.stop_reason)
                for jid, f in self._flying.items()}

    def pending(self) -> list[str]:
        return [f.job.job_id for f in self._queue]

    def worker_pids(self) -> list[int]:
        return [p for jid in self._flying for p in [self._pid(jid)] if p]

    def where(self, job_id: str) -> tuple | None:
        """(attempt, node, pid, started) of a job in flight, as its task reported it."""
        return self._where.get(job_id)

    def shutdown(self, grace_s: float = 2.0) -> list:
        if self._closed:
            return []
        ray = _ray()
        while self._queue:
            self._events.append(failed_done(self._queue.pop(0).job, "cancelled", "shutdown", 0.0))
        for jid in self._flying:
            self._hub.stop.remote(jid, "shutdown")
        end = time.monotonic() + grace_s
        while self._flying and time.monotonic() < end:
            refs = [f.ref for f in self._flying.values()]
            for ref in ray.wait(refs, num_returns=len(refs), timeout=0.1)[0]:
                self._settle(ref)
        for jid, f in list(self._flying.items()):
            ray.cancel(f.ref, force=True)
            self._events.append(failed_done(f.job, "cancelled", "shutdown: killed after grace",
                                      time.monotonic() - f.submitted, self._pid(jid)))
        self._flying.clear()
        self._closed = True
        events, self._events = self._events, []
        return events

    # --- internals --------------------------------------------------------------
    def _pid(self, job_id: str) -> int | None:
        w = self._where.get(job_id)
        return w[2] if w else None

    def _dispatch(self) -> None:
        while self._queue and len(self._flying) < self.n_jobs:
            f = self._queue.pop(0)
            self._launch(f)

    def _launch(self, f: _Flight) -> None:
        if f.stop_reason:
            self._hub.stop.remote(f.job.job_id, f.stop_reason)
        f.ref = self._remote.remote(f.blob, f.job.job_id, f.attempt, self._hub, f.stop_reason)
        f.submitted = time.monotonic()
        self._flying[f.job.job_id] = f

    def _drain_hub(self) -> None:
        ray = _ray()
        try:
            reports, self._where = ray.get(self._hub.drain.remote(), timeout=30)
        except ray.exceptions.RayError:  # the hub is unreachable for now: results still come from the tasks
            return
        for job_id, attempt, payload in reports:
            f = self._flying.get(job_id)
            if f is not None and f.attempt == attempt:
                self._events.append(Report(job_id, f.job.tag, payload))

    def _settle(self, ref) -> None:
        ray = _ray()
        f = next((f for f in self._flying.values() if f.ref == ref), None)
        if f is None:
            return
        job, wall = f.job, time.monotonic() - f.submitted
        try:
            state, value, reason, detail, wall, stop_reason, pid, node = ray.get(ref)
        except ray.exceptions.TaskCancelledError:
            return  # cancel() already settled it
        except ray.exceptions.RayError as exc:  # the task was lost with its worker or node
            del self._flying[job.job_id]
            where = self._where.get(job.job_id)
            why = f"{type(exc).__name__}: {str(exc).splitlines()[0].split('. ')[0] if str(exc) else ''}"
            self._events.append(Lost(job.job_id, job.tag, why, where[1] if where else None, f.attempt))
            if f.attempt == 1 and not self._closed:
                f.attempt, f.ref = 2, None
                self._queue.insert(0, f)  # rescheduled once, ahead of new work
            else:
                self._events.append(failed_done(job, "failed", f"lost twice: {why}", wall, where[2] if where else None))
            return
        del self._flying[job.job_id]
        self._hub.forget.remote(job.job_id)
        self._events.append(Done(JobResult(job.job_id, job.tag, state == "complete", value, state, reason, wall,
                                           stop_reason, detail, pid)))

    def _enforce_timeouts(self) -> None:
        now = time.monotonic()
        for jid, f in list(self._flying.items()):
            started = self._where.get(jid)
            begun = f.submitted if started is None else max(f.submitted, now - (time.time() - started[3]))
            if f.job.timeout_s is not None and now - begun >= f.job.timeout_s:
                _ray().cancel(f.ref, force=True)
                del self._flying[jid]
                self._hub.forget.remote(jid)
                self._events.append(failed_done(f.job, "timeout", f"timeout after {f.job.timeout_s:g}s", now - begun,
                                          self._pid(jid)))
