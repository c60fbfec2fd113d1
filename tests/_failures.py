"""Helpers for tests/test_driver_failures.py: a space with a crashing and a diverging config, a
simulated executor that remembers each job's deadline, a fake-clock driver run, and process trees."""
from __future__ import annotations

import os
import time
from pathlib import Path

from _sim import FakeClock, SimExecutor

from automl.run import driver
from automl.run.opening import prepare
from automl.exec.jobs import JobResult
from automl.run.runconfig import RunConfig

# Grid search walks these in file order (itertools.product), the constraint drops two points:
#   config_000  lr 1e-3, 32 envs      the prior: trains
#   config_001  lr 1e-3, 1e14 envs    crashes: the rollout buffer cannot be allocated (RuntimeError)
#   config_002  lr 1e4,  32 envs      diverges: the torch trainer fails its seeds as non_finite
#   config_003  lr 2e-3, 32 envs      trains (the run goes on after the failures)
FAILING_SPACE = """\
search_space_id: failing_cartpole
fixed: {seed: 0, n_timesteps: 8192, discount_factor: 0.98, lambda_param: 0.8,
        rollouts: 16, learning_epochs: 2, mini_batches: 2}
searchable:
  learning_rate: {type: choice, values: [1.0e-3, 1.0e+4, 2.0e-3], prior: 1.0e-3}
  num_envs:      {type: choice, values: [32, 100000000000000], prior: 32}
constraints:
  - "num_envs > 1000 and learning_rate > 1.5e-3"
"""


def write_failing_space(directory: Path) -> str:
    path = Path(directory) / "failing_space.yaml"
    path.write_text(FAILING_SPACE)
    return str(path)


class DeadlineSimExecutor(SimExecutor):
    """SimExecutor whose `finished` entries also say which job it was and the deadline it was given."""

    def _result(self, s):
        result = super()._result(s)
        self.finished[-1].update(job_id=s.job.job_id, deadline=s.job.kwargs.get("deadline"),
                                 steps=result.value["steps"])
        return result


class CrashingSimExecutor(DeadlineSimExecutor):
    """Seed jobs for which `crashes(job)` holds fail at once, as an exception in the job does."""

    def __init__(self, *args, crashes, **kwargs):
        super().__init__(*args, **kwargs)
        self.crashes = crashes

    def _duration(self, job):
        return (0.1, 0) if self.crashes(job) else super()._duration(job)

    def _result(self, s):
        if not self.crashes(s.job):
            return super()._result(s)
        self.finished.append({"kind": s.job.job_id.split(":")[1], "start": s.start, "end": s.end,
                              "state": "failed", "job_id": s.job.job_id, "deadline": s.job.kwargs.get("deadline")})
        return JobResult(job_id=s.job.job_id, tag=s.job.tag, ok=False, value=None, state="failed",
                         reason="exception: RuntimeError: boom", wall_s=s.end - s.start)


def simulate(run_dir, *, hours, rate=25_000.0, job_slowdown=None, value_fn=None, crashes=None,
             env="navigation", **kw):
    """The real driver loop on a fake clock with `n_jobs` simulated workers.

    Returns (ctx, executor, start, exit code); times in the executor are fake-clock seconds.
    """
    clock = FakeClock()
    made = []

    def factory(n):
        sim = dict(rate=rate, eval_s_each=0.3, job_slowdown=job_slowdown, value_fn=value_fn)
        made.append(CrashingSimExecutor(n, clock, crashes=crashes, **sim) if crashes else
                    DeadlineSimExecutor(n, clock, **sim))
        return made[-1]

    cfg = RunConfig(env=env, budget_hours=hours, run_dir=str(run_dir), quiet=True, **{"ladder": "off", **kw})
    ctx = prepare(cfg, clock=clock, executor_factory=factory)
    start = clock()
    rc = driver.run(ctx)
    return ctx, made[0], start, rc


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (children, grandchildren, ...), read from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = set(), [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def all_gone(pids, within: float) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return not any(alive(p) for p in pids)


def kill_tree(pid: int) -> None:
    """Clean up after a failed test: SIGKILL `pid`'s process group (it was started in its own session)."""
    import signal

    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
