"""What flows between the driver and an executor: jobs in, `Report`/`Done` events out.

`Job` is submitted; `Report` (an intermediate value) and `Done` (carrying the final
`JobResult`) come back from `Executor.poll`; `RunningJob` describes a job on a worker.
Re-exported by automl.exec.executor, which is where callers import them from.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

STATES = ("complete", "failed", "timeout", "cancelled")


@dataclass
class Job:
    """One unit of work: `fn(**kwargs, channel=...)` in a worker, failed if it runs past `timeout_s`."""

    job_id: str
    fn: Callable | str
    kwargs: dict = field(default_factory=dict)
    timeout_s: float | None = None
    tag: Any = None


@dataclass
class JobResult:
    """How a job ended. `value` is fn's return (kept for 'nan in result', else None when not ok).

    `stop_reason` is the driver's stop request the job saw (e.g. "pruned"), if any;
    `detail` holds the traceback or where the NaN was; `worker_pid` ran the job.
    """

    job_id: str
    tag: Any
    ok: bool
    value: Any
    state: str
    reason: str = ""
    wall_s: float = 0.0
    stop_reason: str | None = None
    detail: str = ""
    worker_pid: int | None = None


@dataclass
class Report:
    """An intermediate value the job sent with `channel.report(payload)`, in send order."""

    job_id: str
    tag: Any
    payload: Any


@dataclass
class Done:
    """A job ended (any state); exactly one per submitted job."""

    result: JobResult


@dataclass
class RunningJob:
    """What `running()` tells about a job on a worker: its pid, start time and pending stop."""

    job_id: str
    tag: Any
    pid: int
    started_at: float  # time.monotonic()
    stop_reason: str | None = None


@dataclass
class Lost:
    """A job's task was lost with its worker or node (Ray): recorded, and the job submitted once more
    (its ``Done`` comes later, from the second attempt)."""

    job_id: str
    tag: Any
    reason: str
    node: str | None = None
    attempt: int = 1
