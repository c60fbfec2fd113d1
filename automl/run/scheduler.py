"""Runs the seed jobs of several configs on the executor: admission, pruning over seeds, results.

A config's value at evaluation k is the run's objective (automl.core.scoring.objective_value: mean, IQM
or LCB) over its live seeds once all of them reported k; only then is the pruner asked (so one fast
seed cannot get a config pruned on its own).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from automl.core.stop import Stop, StopReason
from automl.run.budget import Budget, Throughput
from automl.exec.executor import Done, Job, Lost, Report
from automl.core.scoring import objective_value
from automl.core.record import Kind, State

SEED_FIELDS = ("seed", "state", "episode_reward_mean", "success_rate", "shaped_return",
               "reference_return", "terms", "steps", "wall_s", "params", "evals", "stop_reason", "reason",
               "resumed_from", "peak_memory_mb", "train_s", "eval_s")


@dataclass
class ConfigRun:
    """One config (HPs + reward weights) trained on several seeds, tracked until scored."""

    trial: Any                        # an optuna.Trial (seed_pool's stand-in without a study)
    config_id: str
    kind: str
    cycle: int
    params: dict[str, Any]            # searchable values (canonical names, decoded)
    weights: dict[str, float]
    seeds: list[int]
    train_params: dict[str, Any]      # fixed + searchable: what train_seed receives
    steps: int
    sampler: tuple[Any, int] | None = None   # (sampler study, sampler trial id)
    results: dict[int, dict] = field(default_factory=dict)
    pending: list[int] = field(default_factory=list)
    running: dict[str, Any] = field(default_factory=dict)   # job_id -> seed (or seeds of a batch)
    reports: dict[int, dict[int, float]] = field(default_factory=dict)
    pruned: bool = False
    reported: set[int] = field(default_factory=set)
    batched: bool = False             # all seeds in one job (torch trainer, seeds as a batch axis)
    schedule: list | None = None      # a replayed PBT schedule (torch trainer): values changed at given steps
    rung: int | None = None           # a fidelity ladder's climb: the rung it trains to (``steps``), continuing
    horizon: int | None = None        # ... as a prefix of a run of this many steps (the ladder's top rung)
    timeout_s: float | None = None    # a seed job's timeout, when the caller estimated it (else the scheduler's)
    carried: set[int] = field(default_factory=set)  # seeds finished before a resume: they report no more

    def __post_init__(self):
        self.pending = [s for s in self.seeds if s not in self.results]
        # a carried seed's recorded learning curve (evals[k] = [steps, value]) stands in for its reports;
        # past its curve (or without one) the pruner goes on with the seeds that still report
        self.carried = set(self.results)
        for s, record in self.results.items():
            for k, (_, value) in enumerate(record.get("evals") or []):
                self.reports.setdefault(k, {})[s] = float(value)

    def climb_rung(self) -> int:
        """The rung a fidelity ladder's climb trains to (``rung`` of a climb)."""
        if self.rung is None:
            raise ValueError(f"config {self.config_id} is not a ladder climb")
        return self.rung

    @property
    def finished(self) -> bool:
        """All seeds done (or dropped after pruning)."""
        return not self.pending and not self.running


def seed_record(result: dict) -> dict:
    """The compact per-seed entry kept in the state file and the study."""
    out = {k: result[k] for k in SEED_FIELDS if k in result and result[k] is not None}
    for k in ("wall_s", "train_s", "eval_s", "episode_reward_mean", "success_rate", "shaped_return", "reference_return"):
        if isinstance(out.get(k), float):
            out[k] = round(out[k], 4 if k not in ("wall_s", "train_s", "eval_s") else 2)
    if isinstance(out.get("evals"), list):  # the learning curve: [steps, true metric] (steps_to_<x> reads it)
        out["evals"] = [[int(st), round(float(v), 4)] for st, v in out["evals"]]
    if isinstance(out.get("terms"), dict):
        out["terms"] = {n: round(float(v), 4) for n, v in out["terms"].items()
                        if isinstance(v, (int, float))}
    return out


def config_state(c: ConfigRun) -> str:
    """A config's final state from its seeds: pruned, stopped_at_deadline, failed or complete."""
    states = [c.results[s]["state"] for s in c.seeds if s in c.results]
    if c.pruned or State.PRUNED in states:
        return State.PRUNED
    if State.STOPPED_AT_DEADLINE in states or len(states) < len(c.seeds):
        return State.STOPPED_AT_DEADLINE
    if states and all(s == State.FAILED for s in states):
        return State.FAILED
    return State.COMPLETE


class Scheduler:
    """Feeds seed jobs to an executor within the budget and routes its events back to configs."""

    def __init__(self, executor, budget: Budget, throughput: Throughput, *, n_jobs: int,
                 job_fn: Callable, job_kwargs: Callable[[ConfigRun, int], dict],
                 on_seed: Callable[[ConfigRun, int, dict], None],
                 on_config: Callable[[ConfigRun], None], timeout_s: Callable[[int], float | None],
                 batch_fn: Callable | None = None,
                 batch_kwargs: Callable[[ConfigRun, list[int]], dict] | None = None, objective: str = "mean",
                 risk: float = 1.0, on_lost: Callable | None = None):
        self.executor, self.budget, self.throughput = executor, budget, throughput
        self.n_jobs = n_jobs
        self.job_fn, self.job_kwargs = job_fn, job_kwargs
        self.batch_fn, self.batch_kwargs = batch_fn, batch_kwargs  # for configs with batched=True
        self.on_seed, self.on_config, self.timeout_s, self.on_lost = on_seed, on_config, timeout_s, on_lost
        self.objective, self.risk = objective, risk  # how the live seeds' values at evaluation k become the config's value
        self.active: list[ConfigRun] = []
        self.jobs: dict[str, tuple[ConfigRun, Any]] = {}  # job_id -> (config, seed or a batch's seeds)
        self.whole: dict[str, Callable] = {}  # job id -> on_done: jobs submitted as they are (calibration, PBT)
        self.busy_s = 0.0  # worker-seconds spent inside jobs (for the overhead figure)

    def running_jobs(self) -> int:
        """Jobs currently on workers (or queued by the executor): seed jobs and whole jobs."""
        return len(self.jobs) + len(self.whole)

    def submit_job(self, job: Job, on_done: Callable) -> None:
        """Run ``job`` as it is (a calibration job, a PBT segment): ``on_done(result)`` is called from
        ``step`` when it ends. It goes to the executor now (the executor queues what exceeds its workers)."""
        self.whole[job.job_id] = on_done
        self.executor.submit(job)

    def cancel_jobs(self, prefix: str, reason: str) -> None:
        """Cancel the whole jobs whose id starts with ``prefix``, running or queued; their results are
        not reported."""
        for job_id in [j for j in self.whole if j.startswith(prefix)]:
            self.executor.cancel(job_id, reason)
            del self.whole[job_id]

    def free_slots(self) -> int:
        """Workers with nothing to do once every queued seed has been submitted."""
        queued = sum((1 if c.pending else 0) if c.batched else len(c.pending)
                     for c in self.active if not c.pruned)
        return self.n_jobs - self.running_jobs() - queued

    def add(self, cfg: ConfigRun) -> None:
        """Start tracking a config; its seeds are submitted as workers free up (as one batched
        job when the scheduler has a batch function)."""
        cfg.batched = self.batch_fn is not None
        self.active.append(cfg)
        if cfg.finished:
            self._finish(cfg)

    def fits(self, steps: int, seeds: int, *, heldout: bool = False, batched: bool = False) -> bool:
        """Whether a config of `seeds` seed jobs (or one job of `seeds` batched seeds, measured
        in seed-steps) can still finish before its phase's deadline."""
        if batched:
            return self.budget.can_start(self.throughput.seconds_for(steps * seeds), heldout=heldout)
        waves = math.ceil(seeds / max(1, self.n_jobs))
        return self.budget.can_start(self.throughput.seconds_for(steps) * waves, heldout=heldout)

    def step(self, timeout: float = 0.5, guard: Callable[[], None] | None = None) -> None:
        """Submit what fits, then handle the executor's events for up to `timeout` seconds. ``guard()``
        runs before each submission (it may drop queued work in the light of the results just in)."""
        if guard is not None:
            guard()
        self._submit()
        for event in self.executor.poll(timeout):
            if isinstance(event, Report):
                self._on_report(event)
            elif isinstance(event, Done) and event.result.job_id in self.whole:
                self.busy_s += float(event.result.wall_s or 0.0)
                self.whole.pop(event.result.job_id)(event.result)
            elif isinstance(event, Done):
                self._on_done(event.result)
            elif isinstance(event, Lost) and event.job_id in self.jobs and self.on_lost is not None:
                self.on_lost(self.jobs[event.job_id][0], event)  # the executor runs it once more
        if guard is not None:
            guard()
        self._submit()

    def _submit(self) -> None:
        for cfg in list(self.active):
            if cfg.batched:
                if cfg.pending and self.running_jobs() < self.n_jobs:
                    self._submit_batch(cfg)
                continue
            while cfg.pending and self.running_jobs() < self.n_jobs:
                seed = cfg.pending.pop(0)
                job_id = f"{cfg.config_id}:{cfg.kind}:{seed}"
                job = Job(job_id=job_id, fn=self.job_fn, kwargs=self.job_kwargs(cfg, seed),
                          timeout_s=cfg.timeout_s or self.timeout_s(cfg.steps), tag=(cfg.config_id, seed))
                self.executor.submit(job)
                self.jobs[job_id] = (cfg, seed)
                cfg.running[job_id] = seed

    def _submit_batch(self, cfg: ConfigRun) -> None:
        seeds, cfg.pending = list(cfg.pending), []
        job_id = f"{cfg.config_id}:{cfg.kind}:batch"
        assert self.batch_fn is not None and self.batch_kwargs is not None  # cfg.batched: set in add()
        job = Job(job_id=job_id, fn=self.batch_fn, kwargs=self.batch_kwargs(cfg, seeds),
                  timeout_s=(cfg.timeout_s * len(seeds) if cfg.timeout_s else self.timeout_s(cfg.steps * len(seeds))),
                  tag=(cfg.config_id, tuple(seeds)))
        self.executor.submit(job)
        self.jobs[job_id] = (cfg, seeds)
        cfg.running[job_id] = seeds

    def _on_report(self, event: Report) -> None:
        if event.job_id not in self.jobs:
            return
        cfg, seed = self.jobs[event.job_id]
        payload = event.payload or {}
        k, value = payload.get("eval_index"), payload.get("value")
        if cfg.kind not in Kind.TUNING or k is None or value is None or cfg.pruned:
            return
        # a batch reports the mean over its live seeds: that value stands for each of them
        for s in (seed if isinstance(seed, list) else [seed]):
            cfg.reports.setdefault(int(k), {})[s] = float(value)
        self._maybe_prune(cfg)

    def _maybe_prune(self, cfg: ConfigRun) -> None:
        alive = [s for s in cfg.seeds if cfg.results.get(s, {}).get("state") != State.FAILED]
        for k in sorted(cfg.reports):
            live = [s for s in alive if s in cfg.reports[k] or s not in cfg.carried]
            if k in cfg.reported or not set(live) <= set(cfg.reports[k]):
                continue
            values = [cfg.reports[k][s] for s in live if math.isfinite(cfg.reports[k][s])]
            if not values:
                continue
            cfg.trial.report(objective_value(values, self.objective, risk=self.risk), k)
            cfg.reported.add(k)
            if cfg.trial.should_prune():
                self.prune(cfg, f"pruned at evaluation {k}")
                return

    def prune(self, cfg: ConfigRun, reason: str) -> None:
        """Stop a config: running seeds are asked to stop, queued ones are dropped."""
        cfg.pruned = True
        cfg.pending.clear()
        for job_id in cfg.running:
            self.executor.request_stop(job_id, Stop(StopReason.PRUNED, reason))
        if cfg.finished:
            self._finish(cfg)

    def stop_all(self, reason: StopReason | str) -> None:
        """Ask every running job to stop (StopReason.DEADLINE or INTERRUPTED); queued seeds are dropped."""
        for cfg in self.active:
            cfg.pending.clear()
            for job_id in cfg.running:
                self.executor.request_stop(job_id, Stop.of(reason))

    def _on_done(self, result) -> None:
        entry = self.jobs.pop(result.job_id, None)
        if entry is None:
            return
        cfg, seed = entry
        cfg.running.pop(result.job_id, None)
        self.busy_s += float(result.wall_s or 0.0)
        records = self._batch_records(result, seed) if isinstance(seed, list) else \
            {seed: self._result_record(result, seed)}
        done = [r for r in records.values() if r["state"] == State.COMPLETE and r.get("resumed_from") is None]
        if done and len(done) == len(records):
            # (a resumed seed's steps span two sessions; its wall time here is this session's;
            # a batch counts as the seed-steps it trained in its wall time)
            self.throughput.observe(sum(int(r.get("steps", 0)) for r in done), float(result.wall_s or 0.0))
        for s, record in records.items():
            cfg.results[s] = record
            self.on_seed(cfg, s, record)
        if not cfg.pruned and cfg.kind in Kind.TUNING:
            self._maybe_prune(cfg)
        if cfg.finished:
            self._finish(cfg)

    @classmethod
    def _batch_records(cls, result, seeds: list[int]) -> dict[int, dict]:
        """One record per seed of a batch job (a failed batch fails each of its seeds)."""
        if result.ok and isinstance(result.value, list) and len(result.value) == len(seeds):
            return {s: seed_record(v) for s, v in zip(seeds, result.value)}
        return {s: cls._result_record(result, s) for s in seeds}

    @staticmethod
    def _result_record(result, seed: int) -> dict:
        if result.ok and isinstance(result.value, dict):
            return seed_record(result.value)
        state = {"timeout": State.FAILED, "cancelled": State.STOPPED_AT_DEADLINE}.get(result.state, State.FAILED)
        return {"seed": seed, "state": state, "reason": result.reason,
                "wall_s": round(float(result.wall_s or 0.0), 2)}

    def drop(self, cfg: ConfigRun) -> None:
        """End a config none of whose seeds has started: its queued seeds are dropped and it is
        finished now (recorded without a score, as stopped before its seeds ran)."""
        if cfg.running or cfg.results:
            raise ValueError(f"{cfg.config_id}: seeds already started; drop only an unstarted config")
        cfg.pending.clear()
        self._finish(cfg)

    def trim(self, cfg: ConfigRun) -> int:
        """Take the last queued seed off a config (it will have one seed fewer); the config ends now
        when nothing of it is left to run. Returns the seed."""
        seed = cfg.pending.pop()
        cfg.seeds.remove(seed)
        if cfg.finished:
            self._finish(cfg)
        return seed

    def _finish(self, cfg: ConfigRun) -> None:
        if cfg in self.active:
            self.active.remove(cfg)
            self.on_config(cfg)

    def drain(self, *, hard_deadline: float, grace_s: float = 10.0) -> None:
        """Wait for running jobs; past the hard deadline plus grace, drop the queued seeds and kill
        what is left (nothing runs when it returns; every config with nothing left is finished)."""
        while self.jobs:
            self.step(0.25)
            if self.budget.clock() > hard_deadline + grace_s:
                for cfg in self.active:
                    cfg.pending.clear()
                for job_id in list(self.jobs):
                    self.executor.cancel(job_id)
                self.step(0.5)
                break
        # a config emptied by stop_all before any seed ran has nothing left: it ends here, as its
        # started neighbours do (stop_all alone, an interrupt, leaves it to a resume)
        for cfg in [c for c in self.active if c.finished]:
            self._finish(cfg)
