"""A simulated executor on a fake clock, for planning tests of the real driver.

Jobs take the time a throughput model says (startup + steps / rate + evaluations), end at their
deadline if it comes first (stopped_at_deadline, as train_seed does), and return SeedResult-shaped
dicts. Calibration jobs (job ids `calibrate*`) can be made slower than real jobs, as short real
calibration jobs are. The clock only moves inside `poll`, as wall time does while the driver waits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from automl.exec.executor import Done, Executor, JobResult, RunningJob


class FakeClock:
    """A clock the simulation advances; starts at an arbitrary epoch."""

    def __init__(self, t: float = 1_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@dataclass
class _Sim:
    job: object
    start: float
    end: float
    steps: int
    evals: int
    stop: str | None = None
    log: list = field(default_factory=list)


class SimExecutor(Executor):
    """`n_jobs` simulated workers. `rate`: training steps/s of real jobs; `eval_s_each`: seconds
    of one evaluation; `calibration_slowdown`: calibration jobs train this many times slower."""

    def __init__(self, n_jobs: int, clock: FakeClock, *, rate: float, eval_s_each: float = 0.5,
                 startup_s: float = 1.0, calibration_slowdown: float = 1.0, value: float = 0.5,
                 job_slowdown=None, value_fn=None):
        self.n_jobs, self.clock = n_jobs, clock
        self.rate, self.eval_s_each, self.startup_s = rate, eval_s_each, startup_s
        self.slowdown, self.value = calibration_slowdown, value
        self.job_slowdown = job_slowdown or (lambda kwargs: 1.0)  # e.g. configs slower than the prior
        self.value_fn = value_fn or (lambda kwargs: self.value)
        self.queue: list = []
        self.live: dict[str, _Sim] = {}
        self.finished: list[dict] = []   # every job's (kind, start, end, state) for the tests
        self.cancelled: list = []
        # a fidelity ladder's checkpoints: path -> {steps, train_s} of a job paused at its rung (until_steps);
        # pass a shared dict to keep them across executors (a resumed run)
        self.progress: dict = {}
        self.trained_steps = 0  # seed-steps trained by tuning jobs (continuation trains only the extra)

    def _start_steps(self, kw) -> int:
        """Where a ladder's climb starts: its checkpoint's steps (0 without one)."""
        if kw.get("until_steps") is None:
            return 0
        return int(self.progress.get(kw.get("checkpoint_path"), {}).get("steps", 0))

    def _duration(self, job) -> tuple[float, int]:
        kw = job.kwargs
        begin = self._start_steps(kw)
        steps = int(kw.get("until_steps") or kw["total_steps"]) - begin
        every = int(kw.get("eval_every") or max(1, steps // 10))
        evals = max(1, math.ceil(steps / every))
        rate = self.rate / (self.slowdown if job.job_id.startswith("calibrate") else self.job_slowdown(kw))
        eval_s = self.eval_s_each * int(kw.get("eval_episodes") or 32) / 32
        return self.startup_s + steps / rate + evals * eval_s, evals

    def submit(self, job) -> None:
        self.queue.append(job)
        self._start()

    def _start(self) -> None:
        while self.queue and len(self.live) < self.n_jobs:
            job = self.queue.pop(0)
            dur, evals = self._duration(job)
            now = self.clock()
            end = now + dur
            deadline = job.kwargs.get("deadline")
            stop = None
            if deadline is not None and deadline < end:
                end, stop = max(now, deadline), "deadline"
            steps = int(job.kwargs.get("until_steps") or job.kwargs["total_steps"]) - self._start_steps(job.kwargs)
            self.live[job.job_id] = _Sim(job, now, end, steps, evals, stop)

    def poll(self, timeout=None):
        self._start()
        if not self.live:
            self.clock.t += timeout or 0.0
            return []
        nxt = min(s.end for s in self.live.values())
        limit = self.clock() + (timeout if timeout is not None else math.inf)
        if nxt > limit:
            self.clock.t = limit
            return []
        self.clock.t = max(self.clock.t, nxt)
        out = []
        for job_id, s in list(self.live.items()):
            if s.end <= self.clock.t:
                del self.live[job_id]
                out.append(Done(self._result(s)))
        self._start()
        return out

    def _result(self, s: _Sim) -> JobResult:
        wall = s.end - s.start
        frac = 1.0 if s.stop is None else max(0.0, min(1.0, (wall - self.startup_s) / max(
            1e-9, self._duration(s.job)[0] - self.startup_s)))
        steps = int(s.steps * frac)
        state = {"deadline": "stopped_at_deadline", None: "complete"}.get(s.stop, "pruned")
        kind = s.job.job_id.split(":")[1] if ":" in s.job.job_id else "calibrate"
        self.finished.append({"kind": kind, "start": s.start, "end": s.end, "state": state, "steps": steps})
        calibrating = s.job.job_id.startswith("calibrate")  # the short speed jobs (not the learning curve's)
        train_s = steps / (self.rate / (self.slowdown if calibrating else self.job_slowdown(s.job.kwargs)))
        seed = int(s.job.kwargs["seed"])
        v = self.value_fn(s.job.kwargs) + 0.01 * (seed % 3)
        kw = s.job.kwargs
        eval_s = max(0.0, wall - self.startup_s - train_s)
        begin, resumed_from = self._start_steps(kw), None
        if kind in ("hp", "reward", "joint"):
            self.trained_steps += steps
        if kw.get("until_steps") is not None:
            before = self.progress.get(kw.get("checkpoint_path"), {"steps": 0, "train_s": 0.0, "eval_s": 0.0})
            resumed_from = begin or None
            train_s, eval_s = train_s + before["train_s"], eval_s + before["eval_s"]
            steps += begin
            if state == "complete":
                self.progress[kw.get("checkpoint_path")] = {"steps": steps, "train_s": train_s, "eval_s": eval_s}
        value = {"seed": seed, "state": state, "stop_reason": s.stop or "step_budget",
                 "episode_reward_mean": v, "success_rate": v, "shaped_return": 10 * v,
                 "reference_return": 10 * v, "terms": {}, "steps": steps, "wall_s": wall,
                 "train_s": train_s, "eval_s": eval_s,
                 # a learning curve rising to the job's value at its evaluations (a ladder's calibration reads it)
                 "evals": [[begin + (i + 1) * (steps - begin) // s.evals, v * (i + 1) / s.evals]
                           for i in range(s.evals)], "resumed_from": resumed_from}
        return JobResult(job_id=s.job.job_id, tag=s.job.tag, ok=True, value=value, state="complete",
                         wall_s=wall)

    def request_stop(self, job_id, reason="stop"):
        s = self.live.get(job_id)
        if s is None:
            return False
        s.stop, s.end = reason, min(s.end, self.clock())
        return True

    def cancel(self, job_id, reason="cancelled"):
        self.cancelled.append(job_id)
        return self.request_stop(job_id, reason)

    def running(self):
        return {j: RunningJob(j, s.job.tag, 0, s.start) for j, s in self.live.items()}

    def pending(self):
        return [j.job_id for j in self.queue]

    def worker_pids(self):
        return []

    def shutdown(self, grace_s=2.0):
        self.live.clear()
        self.queue.clear()
        return []
