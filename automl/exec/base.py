"""The driver's interface to any executor backend (local worker processes, Ray), and what they share."""
from __future__ import annotations

import abc

from automl.core.stop import Stop, StopReason
from automl.exec.jobs import Done, Job, JobResult, Report, RunningJob


class Executor(abc.ABC):
    """The driver's interface to any backend. Jobs are independent; events come only from `poll`."""

    n_jobs: int

    @abc.abstractmethod
    def submit(self, job: Job) -> None:
        """Queue a job; it starts as soon as a slot is free. Raises ValueError on a duplicate live job_id."""

    @abc.abstractmethod
    def poll(self, timeout: float | None = None) -> list[Report | Done]:
        """Events since the last call; waits up to `timeout` s (None: until one) if there are none yet."""

    @abc.abstractmethod
    def request_stop(self, job_id: str, reason: Stop | StopReason | str = "stop") -> bool:
        """Ask a queued or running job to stop cooperatively (why: a ``automl.core.stop.Stop``, or a reason or
        text ``Stop.of`` reads); False if it is not live."""

    @abc.abstractmethod
    def cancel(self, job_id: str, reason: str = "cancelled") -> bool:
        """Drop a queued job or kill a running one now (its Done comes from the next poll)."""

    @abc.abstractmethod
    def running(self) -> dict[str, RunningJob]:
        """Jobs on a worker now, by job_id."""

    @abc.abstractmethod
    def pending(self) -> list[str]:
        """job_ids submitted but not started yet, in start order."""

    @abc.abstractmethod
    def worker_pids(self) -> list[int]:
        """Pids of the live worker processes (for tests and diagnostics)."""

    @abc.abstractmethod
    def shutdown(self, grace_s: float = 2.0) -> list[Report | Done]:
        """Stop everything: cooperative stop, `grace_s` to finish, then kill. Returns the last events."""

    def check_submit(self, job: Job) -> None:
        """What every backend refuses at submit: a duplicate live job_id, a 'channel' kwarg (the executor
        passes it), a timeout that is not > 0."""
        if job.job_id in self.running() or job.job_id in self.pending():
            raise ValueError(f"job_id {job.job_id!r} is already queued or running")
        if "channel" in job.kwargs:
            raise ValueError(f"job {job.job_id!r}: kwargs must not contain 'channel' (the executor passes it)")
        if job.timeout_s is not None and not job.timeout_s > 0:
            raise ValueError(f"job {job.job_id!r}: timeout_s must be > 0 or None, got {job.timeout_s}")

    def idle_slots(self) -> int:
        """How many jobs can be submitted now without waiting in the queue."""
        return max(0, self.n_jobs - len(self.running()) - len(self.pending()))

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()


def failed_done(job: Job, state: str, reason: str, wall: float, pid: int | None = None) -> Done:
    """The Done of a job that ended without a result (cancelled, timeout, lost, failed to start)."""
    return Done(JobResult(job.job_id, job.tag, False, None, state, reason, wall, None, "", pid))
