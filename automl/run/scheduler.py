"""Runs the seed jobs of several configs on the executor: admission, pruning over seeds, results.

A config's value at evaluation k is the run's objective (automl.core.scoring.objective_value: mean, IQM
or LCB) over its live seeds once all of them reported k; only then is the pruner asked (so one fast
seed cannot get a config pruned on its own).
"""
from __future__ import annotations

import math
from typing import Any, Callable

from automl.core.stop import Stop, StopReason
from automl.run.budget import Budget, Throughput
from automl.exec.executor import Done, Job, Lost, Report
from automl.run.configrun import ConfigEnded, ConfigRun, Event, JobLost, SeedEnded, SeedJobs, seed_record
from automl.core.scoring import objective_value
from automl.core.record import Kind, State


class Scheduler:
    """Feeds seed jobs to an executor within the budget; what happened comes back as events
    (``SeedEnded``, ``ConfigEnded``, ``JobLost``) from the call that saw it (``step``, ``add``, ``prune``,
    ``drop``, ``trim``, ``drain``), in order, for the caller to handle: seed jobs' outcomes come back as events, not calls into the run,
    and a config arrives with what its jobs need (``SeedJobs``)."""

    def __init__(self, executor, budget: Budget, throughput: Throughput, *, n_jobs: int,
                 timeout_s: float | None = None, objective: str = "mean", risk: float = 1.0):
        self.executor, self.budget, self.throughput = executor, budget, throughput
        self.n_jobs = n_jobs
        self.timeout_s = timeout_s  # a seed job's limit (--timeout-per-trial); None: from its estimate
        self.objective, self.risk = objective, risk  # how the live seeds' values at evaluation k become the config's value
        self.active: list[ConfigRun] = []
        self.jobs: dict[str, tuple[ConfigRun, Any]] = {}  # job_id -> (config, seed or a batch's seeds)
        self.whole: dict[str, Callable] = {}  # job id -> on_done: jobs submitted as they are (calibration, PBT)
        self.busy_s = 0.0  # worker-seconds spent inside jobs (for the overhead figure)
        self._specs: dict[int, SeedJobs] = {}  # id(config) -> what its jobs need
        self._out: list[Event] = []  # events not yet handed to the caller
        self.parked: list[ConfigRun] = []  # in-flight configs of a killed run, until their phase takes them

    def in_flight(self, kind: str, cycle: int) -> int:
        """Configs of this phase still training."""
        return sum(1 for c in self.active if c.kind == kind and c.cycle == cycle)

    def park(self, configs: list[ConfigRun]) -> None:
        """In-flight configs of a killed run, re-attached when the run starts (``unpark`` hands them out)."""
        self.parked.extend(configs)

    def unpark(self, kind: str, cycle: int) -> list[ConfigRun]:
        """The parked configs that belong to this phase (their missing seeds re-run), taken off the list."""
        mine = [c for c in self.parked if c.kind == kind and c.cycle == cycle]
        self.parked = [c for c in self.parked if c not in mine]
        return mine

    def _take(self) -> list[Event]:
        out, self._out = self._out, []
        return out

    def job_timeout(self, cfg: ConfigRun, seeds: int = 1) -> float:
        """The limit of a job of ``seeds`` of ``cfg``'s seeds: the config's own estimate per seed when its
        caller made one, else --timeout-per-trial, else 4x the measured throughput's estimate + 2 min."""
        if cfg.timeout_s:
            return cfg.timeout_s * seeds
        if self.timeout_s:
            return self.timeout_s
        return 4 * self.throughput.seconds_for(cfg.steps * seeds) + 120.0

    def phase_deadline(self, cfg: ConfigRun) -> float:
        """The deadline a job of ``cfg`` trains to: tuning stops at the tuning deadline; re-checks (held-out,
        test) may use the reserve and run to the hard deadline."""
        return self.budget.tuning_deadline if cfg.kind in Kind.TUNING else self.budget.deadline

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

    def add(self, cfg: ConfigRun, jobs: SeedJobs) -> list[Event]:
        """Start tracking a config whose jobs need ``jobs``; its seeds are submitted as workers free up
        (as one batched job when ``jobs`` has a batch function). A config with nothing left to run ends
        now (its ``ConfigEnded`` is returned)."""
        cfg.batched = jobs.batched
        self._specs[id(cfg)] = jobs
        self.active.append(cfg)
        if cfg.finished:
            self._finish(cfg)
        return self._take()

    def fits(self, steps: int, seeds: int, *, heldout: bool = False, batched: bool = False) -> bool:
        """Whether a config of `seeds` seed jobs (or one job of `seeds` batched seeds, measured
        in seed-steps) can still finish before its phase's deadline."""
        if batched:
            return self.budget.can_start(self.throughput.seconds_for(steps * seeds), heldout=heldout)
        waves = math.ceil(seeds / max(1, self.n_jobs))
        return self.budget.can_start(self.throughput.seconds_for(steps) * waves, heldout=heldout)

    def step(self, timeout: float = 0.5, guard: Callable[[], None] | None = None) -> list[Event]:
        """Submit what fits, then take the executor's events for up to `timeout` seconds; returns what
        ended, in order. ``guard()`` runs before the submission (it may drop queued work in the light of
        the results the caller has handled); the caller submits again with ``submit`` once it has handled
        the events (``automl.run.outcomes.step`` does both)."""
        self.submit(guard)
        for event in self.executor.poll(timeout):
            if isinstance(event, Report):
                self._on_report(event)
            elif isinstance(event, Done) and event.result.job_id in self.whole:
                self.busy_s += float(event.result.wall_s or 0.0)
                self.whole.pop(event.result.job_id)(event.result)
            elif isinstance(event, Done):
                self._on_done(event.result)
            elif isinstance(event, Lost) and event.job_id in self.jobs:
                self._out.append(JobLost(self.jobs[event.job_id][0], event))  # the executor runs it once more
        return self._take()

    def submit(self, guard: Callable[[], None] | None = None) -> None:
        """Hand queued seeds to free workers (after ``guard()``, when given)."""
        if guard is not None:
            guard()
        for cfg in list(self.active):
            if cfg.batched:
                if cfg.pending and self.running_jobs() < self.n_jobs:
                    self._submit_batch(cfg)
                continue
            spec = self._specs[id(cfg)]
            while cfg.pending and self.running_jobs() < self.n_jobs:
                seed = cfg.pending.pop(0)
                job_id = f"{cfg.config_id}:{cfg.kind}:{seed}"
                kwargs = dict(spec.seed_kwargs[seed])
                if not spec.own_deadline:
                    kwargs["deadline"] = self.phase_deadline(cfg)
                job = Job(job_id=job_id, fn=spec.fn, kwargs=kwargs, timeout_s=self.job_timeout(cfg),
                          tag=(cfg.config_id, seed))
                self.executor.submit(job)
                self.jobs[job_id] = (cfg, seed)
                cfg.running[job_id] = seed

    def _submit_batch(self, cfg: ConfigRun) -> None:
        seeds, cfg.pending = list(cfg.pending), []
        spec = self._specs[id(cfg)]
        assert spec.batch_fn is not None and spec.batch_kwargs is not None  # cfg.batched: set in add()
        job_id = f"{cfg.config_id}:{cfg.kind}:batch"
        kwargs = dict(spec.batch_kwargs, seeds=seeds)
        if spec.save_paths:
            kwargs["save_paths"] = [spec.save_paths[s] for s in seeds]
        if not spec.own_deadline:
            kwargs["deadline"] = self.phase_deadline(cfg)
        job = Job(job_id=job_id, fn=spec.batch_fn, kwargs=kwargs, timeout_s=self.job_timeout(cfg, len(seeds)),
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
                self._prune(cfg, f"pruned at evaluation {k}")
                return

    def prune(self, cfg: ConfigRun, reason: str) -> list[Event]:
        """Stop a config: running seeds are asked to stop, queued ones are dropped."""
        self._prune(cfg, reason)
        return self._take()

    def _prune(self, cfg: ConfigRun, reason: str) -> None:
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
            self._out.append(SeedEnded(cfg, s, record))
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

    def drop(self, cfg: ConfigRun) -> list[Event]:
        """End a config none of whose seeds has started: its queued seeds are dropped and it is
        finished now (recorded without a score, as stopped before its seeds ran)."""
        if cfg.running or cfg.results:
            raise ValueError(f"{cfg.config_id}: seeds already started; drop only an unstarted config")
        cfg.pending.clear()
        self._finish(cfg)
        return self._take()

    def trim(self, cfg: ConfigRun) -> list[Event]:
        """Take the last queued seed off a config (it will have one seed fewer); the config ends now
        when nothing of it is left to run. Returns what ended."""
        cfg.seeds.remove(cfg.pending.pop())
        if cfg.finished:
            self._finish(cfg)
        return self._take()

    def _finish(self, cfg: ConfigRun) -> None:
        if cfg in self.active:
            self.active.remove(cfg)
            self._specs.pop(id(cfg), None)
            self._out.append(ConfigEnded(cfg))

    def drain(self, *, hard_deadline: float, handle: Callable[[list[Event]], None], grace_s: float = 10.0) -> None:
        """Wait for running jobs, handing what ends to ``handle`` as it ends; past the hard deadline plus
        grace, drop the queued seeds and kill what is left (nothing runs when it returns; every config
        with nothing left is finished)."""
        self.submit()
        while self.jobs:
            handle(self.step(0.25))
            self.submit()  # queued seeds go on as jobs end (their own deadline ends them)
            if self.budget.clock() > hard_deadline + grace_s:
                for cfg in self.active:
                    cfg.pending.clear()
                for job_id in list(self.jobs):
                    self.executor.cancel(job_id)
                handle(self.step(0.5))
                break
        # a config emptied by stop_all before any seed ran has nothing left: it ends here, as its
        # started neighbours do (stop_all alone, an interrupt, leaves it to a resume)
        for cfg in [c for c in self.active if c.finished]:
            self._finish(cfg)
        handle(self._take())
