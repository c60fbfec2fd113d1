"""Run (config, seed) jobs in isolated worker processes: crashes, NaN and timeouts become results.

The driver talks to an `Executor` only: `submit(Job)`, then `poll()` for events
(`Report` while a job runs, `Done` when it ends), `request_stop` to stop a job
cooperatively (pruning, deadline), `cancel` to kill it now. `LocalProcessExecutor`
keeps `n_jobs` persistent worker processes with one torch thread each; a Ray
backend subclasses `Executor` and registers in `BACKENDS`. One thread drives an
executor (no locking inside).

A job function is a top-level callable (or a "module:qualname" string) called as
`fn(**kwargs, channel=channel)` in a worker that imported torch once, with 1 thread:

    def train_seed_job(params, seed, *, channel):
        for k in range(n_evals):
            value = ...                          # train a chunk, evaluate
            channel.report({"step": k, "value": value})   # -> Report event, in order
            if channel.stop_requested():         # pruned / deadline / shutdown
                break                            # channel.stop_reason() says which
        return {"episode_reward_mean": value}    # plain picklable record; NaN/inf -> failed

Exceptions, NaN/inf in the returned value, a timeout or a dying worker give a
failed `JobResult` with a one-line `reason`; the pool goes on. Reports are sent
synchronously: a job reporting faster than the driver polls waits for it.
"""
from __future__ import annotations

import atexit
import contextlib
import collections
import multiprocessing as mp
import os
import pickle
import sys
import time
import weakref
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import TYPE_CHECKING, Any, Callable, cast

# The job/event dataclasses live in automl.exec.jobs, the interface in automl.exec.base; re-exported here.
from automl.core.stop import Stop, StopReason
from automl.exec.base import Executor, failed_done
from automl.exec.devices import device_for, worker_env
from automl.exec.jobs import STATES, Done, Job, JobResult, Lost, Report, RunningJob  # noqa: F401
from automl.exec.workers import (
    contains_nonfinite, install_sigterm_exit, main_not_imported, restore_sigterm, single_thread_env, worker_main,
)

if TYPE_CHECKING:
    from multiprocessing.context import ForkContext, ForkServerContext, SpawnContext

__all__ = [
    "BACKENDS", "Done", "Executor", "Job", "JobResult", "LocalProcessExecutor", "Lost", "Report",
    "RunningJob", "contains_nonfinite", "make_executor",
]


@dataclass
class _Pending:
    job: Job
    blob: bytes
    stop_reason: str | None = None


@dataclass
class _Worker:
    process: Any
    conn: Any
    pid: int
    ready: bool = False
    seq: int = 0
    job: _Pending | None = None
    started_at: float = 0.0
    slot: int = 0  # which of the n_jobs places it fills: its device under --devices (a replacement keeps it)


class LocalProcessExecutor(Executor):
    """`n_jobs` persistent spawned worker processes, one torch thread each, replaced when they die.

    `preload` modules are imported once per worker at start (torch by default, after
    OMP/MKL thread env is set to 1). With `handle_sigterm` (main thread, default
    handler only) SIGTERM raises SystemExit so `with`/atexit shut the workers down.
    Create it from the thread that polls it: PR_SET_PDEATHSIG follows the creating thread.
    With `import_main=False` the workers do not import the caller's `__main__` script (job functions
    must then live in importable modules): the Python API's choice, for scripts without a main guard.
    `devices` (``--devices cuda:0,cuda:1``): worker i runs on devices[i % len], seeing only that GPU.
    """

    def __init__(self, n_jobs: int = 1, *, preload: tuple[str, ...] = ("torch",),
                 start_method: str = "spawn", handle_sigterm: bool = True, import_main: bool = True,
                 devices: tuple[str, ...] = ()):
        if n_jobs < 1:
            raise ValueError(f"n_jobs: must be >= 1, got {n_jobs}")
        self.n_jobs = int(n_jobs)
        # get_context(str) is typed BaseContext, which lacks .Process; the context of every start method has it
        self._ctx = cast("SpawnContext | ForkContext | ForkServerContext", mp.get_context(start_method))
        self._preload = tuple(preload)
        self._import_main = import_main
        self.devices = tuple(devices)
        self._queue: collections.deque[_Pending] = collections.deque()
        self._workers: list[_Worker] = []
        self._events: list[Report | Done] = []
        self._failed_starts = 0
        self._closed = False
        self._old_sigterm = install_sigterm_exit() if handle_sigterm else None
        for slot in range(self.n_jobs):
            self._start_worker(slot)
        self_ref = weakref.ref(self)
        self._atexit = lambda: (ex := self_ref()) is not None and ex.shutdown(grace_s=0.5)
        atexit.register(self._atexit)

    # --- driver API -------------------------------------------------------------
    def submit(self, job: Job) -> None:
        """Queue a job (pickled now, so an unpicklable fn or kwargs fails here, in the caller: ValueError)."""
        self._check_open()
        self.check_submit(job)
        try:
            blob = pickle.dumps((job.fn, job.kwargs), protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, AttributeError, TypeError) as exc:  # a lambda, a local function, a lock...
            raise ValueError(f"job {job.job_id!r}: fn or kwargs cannot be sent to a worker process ({exc}) "
                             "(allowed: a top-level function or 'module:qualname', picklable kwargs)") from exc
        self._queue.append(_Pending(job, blob))
        self._dispatch()

    def poll(self, timeout: float | None = None) -> list[Report | Done]:
        """Collect events, waiting up to `timeout` s for the first; returns [] at once when nothing is live."""
        self._check_open()
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            self._dispatch()
            wait_s = self._wait_budget(end)
            self._collect(wait_s)
            self._enforce_timeouts()
            self._dispatch()
            if self._events or not self._live() or (end is not None and time.monotonic() >= end):
                events, self._events = self._events, []
                return events

    def request_stop(self, job_id: str, reason: Stop | StopReason | str = "stop") -> bool:
        """Cooperative stop: the job sees `channel.stop_requested()` and should return soon; `channel.stop_reason()`
        is a `Stop` (its `.reason` a StopReason; plain text is read by `Stop.of`)."""
        reason = Stop.of(reason)
        for pend in self._queue:
            if pend.job.job_id == job_id:
                pend.stop_reason = pend.stop_reason or reason
                return True
        worker = self._worker_of(job_id)
        if worker is None:
            return False
        assert worker.job is not None  # _worker_of finds a worker by the job it runs
        worker.job.stop_reason = worker.job.stop_reason or reason
        return self._send(worker, ("stop", worker.seq, reason))

    def cancel(self, job_id: str, reason: str = "cancelled") -> bool:
        """Remove a queued job, or SIGKILL the worker running it (a fresh worker replaces it)."""
        for pend in list(self._queue):
            if pend.job.job_id == job_id:
                self._queue.remove(pend)
                self._events.append(failed_done(pend.job, "cancelled", reason, 0.0))
                return True
        worker = self._worker_of(job_id)
        if worker is None:
            return False
        self._retire(worker, "cancelled", reason)
        return True

    def running(self) -> dict[str, RunningJob]:
        """Jobs on a worker now, with the worker pid."""
        return {w.job.job.job_id: RunningJob(w.job.job.job_id, w.job.job.tag, w.pid, w.started_at,
                                             w.job.stop_reason)
                for w in self._workers if w.job is not None}

    def pending(self) -> list[str]:
        """Queued job ids, in start order."""
        return [p.job.job_id for p in self._queue]

    def worker_pids(self) -> list[int]:
        """Pids of the live worker processes."""
        return [w.pid for w in self._workers if w.process.is_alive()]

    def shutdown(self, grace_s: float = 2.0) -> list[Report | Done]:
        """Cancel queued jobs, ask running ones to stop, wait `grace_s`, kill the rest. Idempotent."""
        if self._closed:
            return []
        self._closed = True
        atexit.unregister(self._atexit)
        while self._queue:
            self._events.append(failed_done(self._queue.popleft().job, "cancelled", "shutdown", 0.0))
        for worker in self._workers:
            if worker.job is not None:
                self._send(worker, ("stop", worker.seq, "shutdown"))
            self._send(worker, ("exit",))
        self._drain_until_exit(time.monotonic() + grace_s)
        for worker in list(self._workers):
            if worker.job is not None:
                self._events.append(failed_done(worker.job.job, "cancelled", "shutdown: killed after grace",
                                          time.monotonic() - worker.started_at, worker.pid))
            self._reap(worker, kill=True)
        self._workers.clear()
        restore_sigterm(self._old_sigterm)
        events, self._events = self._events, []
        return events

    # --- internals --------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("executor is shut down")

    def _live(self) -> bool:
        return bool(self._queue) or any(w.job is not None for w in self._workers)

    def _worker_of(self, job_id: str) -> _Worker | None:
        return next((w for w in self._workers if w.job is not None and w.job.job.job_id == job_id), None)

    def worker_devices(self) -> dict[int, str | None]:
        """pid -> the device of each live worker (None without --devices)."""
        return {w.pid: device_for(w.slot, self.devices) for w in self._workers}

    def _start_worker(self, slot: int = 0) -> None:
        """Spawn one worker; its env says 1 thread (and its one GPU) before the child imports anything."""
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            # not daemon: daemonic processes may not start children (e.g. SubprocVecEnv in a job);
            # atexit/shutdown and PR_SET_PDEATHSIG take care of their lifetime instead
            target=worker_main, name="automl-worker", daemon=False,
            args=(child_conn, os.getpid(), list(sys.path), self._preload))
        with single_thread_env(worker_env(device_for(slot, self.devices))), (contextlib.nullcontext() if self._import_main else main_not_imported()):
            process.start()
        child_conn.close()
        assert process.pid is not None  # start() set it
        self._workers.append(_Worker(process, parent_conn, process.pid, slot=slot))

    def _dispatch(self) -> None:
        """Give queued jobs to ready idle workers; the timeout clock starts here."""
        for worker in list(self._workers):
            if not self._queue:
                return
            if worker.ready and worker.job is None:
                pend = self._queue.popleft()
                worker.seq += 1
                worker.job, worker.started_at = pend, time.monotonic()
                if not self._send(worker, ("job", worker.seq, pend.blob, pend.stop_reason)):
                    self._on_death(worker)

    def _wait_budget(self, end: float | None) -> float | None:
        """How long to block: until the caller's end, the next job timeout, or 0 with events queued."""
        if self._events:
            return 0.0
        now = time.monotonic()
        limits = [end - now] if end is not None else []
        limits += [w.started_at + w.job.job.timeout_s - now for w in self._workers
                   if w.job is not None and w.job.job.timeout_s is not None]
        if not limits:
            return None if self._live() else 0.0
        return max(0.0, min(limits))

    def _collect(self, wait_s: float | None) -> None:
        """Wait for messages or deaths, then handle all that is ready."""
        handles = {}
        for worker in self._workers:
            handles[worker.conn] = worker
            handles[worker.process.sentinel] = worker
        for handle in wait(list(handles), timeout=wait_s):
            worker = handles[handle]
            if worker not in self._workers:
                continue  # already retired by an earlier handle in this batch
            # read first: a result sent just before the worker exited is still in the pipe
            if not self._read(worker) or handle == worker.process.sentinel:
                self._on_death(worker)

    def _read(self, worker: _Worker) -> bool:
        """Handle every message the worker has sent; False once its end of the pipe is closed."""
        try:
            while worker.conn.poll(0):
                self._handle(worker, worker.conn.recv())
        except (EOFError, OSError):
            return False
        return True

    def _handle(self, worker: _Worker, msg: tuple) -> None:
        kind = msg[0]
        if kind == "ready":
            worker.ready, self._failed_starts = True, 0
        elif worker.job is None or msg[1] != worker.seq:
            return  # a message about a job that was already settled
        elif kind == "report":
            self._events.append(Report(worker.job.job.job_id, worker.job.job.tag, msg[2]))
        elif kind == "done":
            _, _, state, value, reason, detail, wall, stop_reason = msg
            job = worker.job.job
            self._events.append(Done(JobResult(job.job_id, job.tag, state == "complete", value, state,
                                               reason, wall, stop_reason, detail, worker.pid)))
            worker.job = None

    def _on_death(self, worker: _Worker) -> None:
        """A worker exited on its own (or was killed from outside): its job fails, a new worker starts."""
        worker.process.join(timeout=2.0)
        code = worker.process.exitcode
        reason = f"worker died (signal {-code})" if code is not None and code < 0 else f"worker died (exit code {code})"
        if not worker.ready:
            self._failed_starts += 1
            if self._failed_starts >= 3:
                self.shutdown(grace_s=0.0)
                raise RuntimeError(f"workers fail to start ({reason}); see their stderr above")
        self._retire(worker, "failed", reason)

    def _enforce_timeouts(self) -> None:
        now = time.monotonic()
        for worker in list(self._workers):
            job = worker.job.job if worker.job is not None else None
            if job is not None and job.timeout_s is not None and now - worker.started_at >= job.timeout_s:
                self._retire(worker, "timeout", f"timeout after {job.timeout_s:g}s")

    def _retire(self, worker: _Worker, state: str, reason: str) -> None:
        """Settle the worker's job as `state`, kill and drop the worker, start its replacement."""
        if worker.job is not None:
            self._events.append(failed_done(worker.job.job, state, reason,
                                      time.monotonic() - worker.started_at, worker.pid))
            worker.job = None
        self._reap(worker, kill=True)
        self._workers.remove(worker)
        if not self._closed:
            self._start_worker(worker.slot)

    def _reap(self, worker: _Worker, kill: bool) -> None:
        if kill and worker.process.is_alive():
            worker.process.kill()
        worker.process.join(timeout=5.0)
        worker.conn.close()

    def _send(self, worker: _Worker, msg: tuple) -> bool:
        try:
            worker.conn.send(msg)
            return True
        except (OSError, ValueError):
            return False  # the worker is gone; its sentinel reports it

    def _drain_until_exit(self, deadline: float) -> None:
        """During shutdown: keep reading results until every worker exited or the grace ends."""
        live = list(self._workers)
        while live and time.monotonic() < deadline:
            handles = {}
            for worker in live:
                handles[worker.conn] = worker
                handles[worker.process.sentinel] = worker
            for handle in wait(list(handles), timeout=max(0.0, deadline - time.monotonic())):
                worker = handles[handle]
                if worker in live and (not self._read(worker) or handle == worker.process.sentinel):
                    self._read(worker)  # a last result may sit behind the exit
                    worker.process.join(timeout=1.0)  # exiting now; reaped below at the latest
                    live.remove(worker)


def _ray_executor(n_jobs: int = 1, **kwargs) -> Executor:
    from automl.exec.ray_backend import RayExecutor  # ray only when asked for

    return RayExecutor(n_jobs=n_jobs, **kwargs)


BACKENDS: dict[str, Callable[..., Executor]] = {"local": LocalProcessExecutor, "ray": _ray_executor}


def make_executor(backend: str = "local", n_jobs: int = 1, **kwargs) -> Executor:
    """Build an executor by backend name (see BACKENDS); kwargs go to the backend."""
    if backend not in BACKENDS:
        raise ValueError(f"backend: unknown {backend!r} (allowed: {', '.join(BACKENDS)})")
    return BACKENDS[backend](n_jobs=n_jobs, **kwargs)
