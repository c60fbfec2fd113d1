"""RunContext: the live state of one run — studies, budget, executor, configs — and its proposals."""
from __future__ import annotations

import time

import optuna

from automl.run import pareto, records, resume
from automl.run.lease import Lease
from automl.core.errors import AutoMLError
from automl.search import studies
from automl.run.budget import Budget, Throughput
from automl.run.calibration import calibrate, check_minimum_budget
from automl.run.runconfig import RunConfig
from automl.run.scheduler import ConfigRun, Scheduler, config_state
from automl.core.record import Kind, State
from automl.core.scoring import score as score_seeds
from automl.search.owner import Outcome
from automl.search.reward import make_reward_sampler
from automl.run.ladder_plan import ladder_text, make_run_plan
from automl.run.setup import (Inputs, Plan, check_resume, fingerprint, nominal_calibration,
                          resolve_inputs, resolve_defaults)
from automl.run.state import StateStore, state_dict
from automl.core.values import is_finite_number

# Why tuning ended early -> the run's final status ("finished" when every stage ran to its quota).
BUDGET_SPENT = "budget_exhausted"
SEARCH_EXHAUSTED = "search_exhausted"


def prepare(cfg: RunConfig, *, clock=time.time, executor_factory=None) -> "RunContext":
    """Resolve inputs, check resume compatibility and make the (nominal) plan.

    `clock` and `executor_factory(n_jobs)` are for simulations (fake-clock planning tests).
    """
    store = StateStore(cfg.run_dir)
    Lease(cfg.run_dir, cfg.storage).check()  # before --fresh moves a live run's files aside
    cfg = resolve_defaults(cfg, store)
    inputs = resolve_inputs(cfg)
    fp = fingerprint(cfg, inputs)
    old = check_resume(store, cfg, fp)
    return RunContext(cfg, inputs, store, old, fp, clock=clock, executor_factory=executor_factory)


class RunContext:
    """Everything the staged loop touches, with the operations the driver calls by name."""

    def __init__(self, cfg: RunConfig, inputs: Inputs, store: StateStore, old: dict | None,
                 fp: dict, *, clock=time.time, executor_factory=None):
        self.cfg, self.inputs, self.store, self.old, self.fp = cfg, inputs, store, old, fp
        self.mode = cfg.run_mode  # what --mode declares: plan, search owners, phases (automl.run.modes)
        elapsed = float(((old or {}).get("budget") or {}).get("elapsed_s", 0.0))
        self.budget = Budget(cfg.budget_hours, elapsed_before_s=elapsed, clock=clock)
        self.plan: Plan = make_run_plan(cfg, inputs, self.budget, nominal_calibration(cfg, inputs))
        self.records = records.Records(self)
        self.stage = {"index": 0, "kind": "plan", "cycle": 0}
        self.stop_reason: str | None = None
        self.stop_status: str | None = None
        self.view = None  # a live.LiveView when the driver shows progress
        self.heldout_summary: list[dict] | None = None  # the held-out ranking, once the held-out phase wrote it
        self.lost_jobs: list[dict] = list((old or {}).get("lost_jobs") or [])  # --executor ray: lost tasks
        self.pareto: dict | None = None  # --metrics/--constraint: the held-out front and infeasible configs
        self.test_summary: list[dict] | None = None     # the winner's and baseline's test scores (test phase)
        self.test_picks: list | None = None              # what the test phase trains (None: held-out winner, baseline)
        self.pbt: dict | None = (old or {}).get("pbt")   # --mode pbt: the population and its lineage
        self.last_state: dict | None = None
        self.batched = False  # seeds of a config as one job (set in start)
        self._executor_factory = executor_factory
        self.executor = None
        self.scheduler: Scheduler | None = None
        self._resume: list[ConfigRun] = []
        self.driver_s = 0.0  # time spent in the driver's own bookkeeping (ask/tell, state writes)
        self.lease: Lease | None = None  # one live driver per run (automl.run.lease)
        self.record = None
        self.searches: dict = {}  # Kind -> SearchOwner, as the mode opens them
        self._url: str | None = None
        self.ladder = None  # automl.run.ladder_run.LadderRun when the run climbs a fidelity ladder
        self._beat = 0.0

    # ---- start / stop -------------------------------------------------------------------
    def start(self) -> None:
        """Open the studies and the workers, restore or make the plan, re-attach in-flight work."""
        from automl.run import trainers
        from automl.exec.executor import make_executor
        from automl.search.strategies import make_pruner

        cfg, inputs = self.cfg, self.inputs
        self.store.run_dir.mkdir(parents=True, exist_ok=True)
        self.lease = Lease(cfg.run_dir, cfg.storage)
        self.lease.acquire()
        url = self._url = studies.storage_url(cfg.run_dir, cfg.storage)
        pruner = make_pruner(cfg.pruner_name, min_resource=1, reduction_factor=3)
        self.record = studies.open_study(url, self.study_name(studies.RECORD), pruner=pruner,
                                         sampler=optuna.samplers.RandomSampler(seed=inputs.base_seed))
        if self.old is None and self.record.get_trials(deepcopy=False) \
                and self.record.user_attrs.get("fingerprint") not in (None, self.fp):
            raise AutoMLError(f"--storage: study {self.record.study_name!r} already holds trials of another run "
                              f"(allowed: a run directory with a new name, whose studies are named after it)")
        self.searches = self.mode.search_owners(self)
        self.executor = (self._executor_factory or (lambda n: make_executor(
            cfg.executor, n_jobs=n, **cfg.executor_options())))(cfg.n_jobs)
        self.throughput = Throughput(steps_per_s=self.plan.steps_per_s)
        self._restore_or_calibrate()
        if self.plan.ladder:
            from automl.run.ladder_run import LadderRun

            self.ladder = LadderRun(self)
        self.batched = cfg.batches_seeds(cuda=trainers.on_cuda(cfg.device))
        self.scheduler = Scheduler(self.executor, self.budget, self.throughput, n_jobs=cfg.n_jobs,
                                   job_fn=trainers.job_fn(cfg.trainer), job_kwargs=self._job_kwargs,
                                   batch_fn=trainers.batch_fn(cfg.trainer) if self.batched else None,
                                   batch_kwargs=self._batch_kwargs,
                                   on_seed=self._on_seed, on_config=self._on_config, on_lost=self._on_lost,
                                   timeout_s=self._timeout_s, objective=cfg.objective, risk=cfg.risk)
        self._resume = resume.reattach(self)
        if self.ladder is not None:
            self.ladder.rebuild(self.record.get_trials(deepcopy=False))
        if self.old is None:
            self.searches[self.mode.baseline_owner].warm_start()
        self.record.set_user_attr("fingerprint", self.fp)
        self.store.event("resume" if self.old else "start", command=cfg.command, plan=self.plan.to_dict())
        self.write_state("running")

    def study_name(self, name: str) -> str:
        """A study's name: as is in the run directory's own SQLite file; prefixed with the run directory's
        name in a shared --storage, so that several runs can share one database."""
        return f"{self.store.run_dir.resolve().name}:{name}" if studies.is_shared(self.cfg.storage) else name

    def sampler_study(self, name: str) -> optuna.Study:
        """The sampler study ``name`` (e.g. studies.HP_SAMPLER) of the run's --search-method. A resumed
        session continues the sampler's random stream instead of repeating the first session's proposals
        (grid and QMC keep their place from the trials themselves)."""
        from automl.search.strategies import make_sampler

        method, seed, spec = self.cfg.search_method, self.inputs.base_seed, self.inputs.spec
        mo = pareto.sampler_options(self.cfg)  # --metrics: directions; --constraint: constraints_func
        cfunc = mo.get("constraints_func")
        study = studies.open_study(self._url, self.study_name(name), directions=mo.get("directions"),
                                   sampler=make_sampler(method, seed=seed, spec=spec, constraints_func=cfunc,
                                                        startup_trials=self.cfg.startup_trials))
        asked = len(study.get_trials(deepcopy=False))
        if asked and method not in ("grid", "qmc"):
            study.sampler = make_sampler(method, seed=seed + asked, spec=spec, constraints_func=cfunc,
                                         startup_trials=self.cfg.startup_trials)
        return study

    def reward_study(self) -> optuna.Study:
        """The reward search's study: CMA-ES over the weights with the plan's population (NSGA-II with
        --metrics or --constraint)."""
        inputs, mo = self.inputs, pareto.sampler_options(self.cfg)
        sampler = make_reward_sampler(inputs.terms, seed=inputs.base_seed, population=self.plan.population,
                                      multi="directions" in mo, constraints_func=mo.get("constraints_func"))
        return studies.open_study(self._url, self.study_name(studies.REWARD_SAMPLER), sampler=sampler,
                                  directions=mo.get("directions"))

    def _restore_or_calibrate(self) -> None:
        """The run's plan, made once: the one recorded by an earlier session of this run, else one
        made from calibration (the nominal plan of ``__init__`` only serves --dry-run)."""
        recorded = (self.old or {}).get("plan")
        if recorded:
            self._use_plan(Plan.from_dict(recorded))
            return
        if self.view is not None:
            self.view.message(f"calibrating: {self.cfg.n_jobs} short jobs of the prior config")
        cal = calibrate(self.cfg, self.inputs, self.executor, self.budget, self.store)
        if self.mode.checks_minimum_budget:
            check_minimum_budget(self.cfg, self.inputs, self.budget, cal)
        self._use_plan(make_run_plan(self.cfg, self.inputs, self.budget, cal))
        self.store.event("planned", plan=self.plan.to_dict())

    def ladder_text(self) -> list[str]:
        """The ladder's --dry-run lines."""
        return ladder_text(self)

    def _use_plan(self, plan: Plan) -> None:
        """Adopt ``plan``: throughput estimates and the held-out reserve start from it (the reserve
        then follows measured throughput through ``update_reserve``)."""
        self.plan = plan
        self.throughput.steps_per_s = plan.steps_per_s
        self.throughput.startup_s = plan.startup_s
        self.budget.set_reserve(plan.reserve_s)

    def close(self, status: str) -> None:
        """Stop the workers and write the final state (also after errors and interrupts)."""
        if self.executor is not None:
            self.executor.shutdown(grace_s=2.0)
        if self.scheduler is not None:
            self.write_state(status)
            self.store.event("end", status=status, reason=self.stop_reason)
        if self.lease is not None:
            self.lease.release()

    # ---- stages -------------------------------------------------------------------------
    def final_status(self) -> str:
        """finished (every stage ran to its quota), budget_exhausted (the budget was spent) or
        search_exhausted (the space ran out of new configs)."""
        return "finished" if self.stop_reason is None else self.stop_status or BUDGET_SPENT

    def enter_stage(self, kind: str, cycle: int) -> None:
        """Record the stage now running."""
        self.stage = {"index": self.stage["index"] + 1, "kind": kind, "cycle": cycle}
        self.store.event("stage", **self.stage)
        self.write_state("running")

    def tuning_over(self) -> bool:
        """No more tuning configs may start (deadline or exhausted space); a passed deadline is
        recorded as the reason the first time it is seen."""
        if self.stop_reason is None and self.budget.tuning_over():
            self.mark_tuning_over("tuning deadline reached")
        return self.stop_reason is not None

    def mark_tuning_over(self, reason: str, status: str = BUDGET_SPENT) -> None:
        """Stop proposing tuning configs, for `reason`; `status` is what the run will end as."""
        if self.stop_reason is None:
            self.stop_reason, self.stop_status = reason, status
            self.store.event("tuning_over", reason=reason, status=status)
            if self.view is not None:
                self.view.message(f"tuning over: {reason}")

    def finish_configs(self) -> None:
        """Train the scheduler's configs to the end; at the hard deadline stop them and drain (the
        re-check phases: held-out and test)."""
        while self.scheduler.active:
            self.scheduler.step(0.5)
            self.refresh_view()
            if self.budget.exhausted():
                self.scheduler.stop_all("deadline")
                self.scheduler.drain(hard_deadline=self.budget.deadline, grace_s=5.0)
                break

    def count(self, kind: str, cycle: int) -> int:
        """Configs of this phase already finished (rejected ones do not count)."""
        return self.records.count(kind, cycle)

    def in_flight(self, kind: str, cycle: int) -> int:
        """Configs of this phase still training."""
        return sum(1 for c in self.scheduler.active if c.kind == kind and c.cycle == cycle)

    def resumed(self, kind: str, cycle: int) -> list[ConfigRun]:
        """In-flight configs of a killed run that belong to this phase (their missing seeds re-run)."""
        mine = [c for c in self._resume if c.kind == kind and c.cycle == cycle]
        self._resume = [c for c in self._resume if c not in mine]
        return mine

    # ---- jobs and results ---------------------------------------------------------------
    def _job_kwargs(self, c: ConfigRun, seed: int) -> dict:
        heldout = c.kind == Kind.HELDOUT
        run_dir = self.store.run_dir
        extra = {"schedule": c.schedule} if c.schedule else {}
        if c.horizon:  # a ladder's climb: a prefix of a run of the top rung's length, paused at its rung
            extra["until_steps"] = c.steps
        return dict(**extra, params=c.train_params, env=self.inputs.env, seed=seed, total_steps=c.horizon or c.steps,
                    checkpoint_path=str(self.checkpoint_path(c, seed)), checkpoint_every=self._checkpoint_every(),
                    reward_weights=c.weights or None, eval_every=self.plan.eval_every,
                    eval_episodes=self.plan.eval_episodes,
                    # re-checks (held-out, test) may use the reserve: they run to the hard deadline
                    deadline=self.budget.tuning_deadline if c.kind in Kind.TUNING else self.budget.deadline,
                    device=self.cfg.device,
                    tb_dir=str(run_dir / "tb" / c.config_id / f"{c.kind}_seed{seed}"),
                    save_path=str(run_dir / "models" / c.config_id / f"seed_{seed}") if heldout else None)

    def _batch_kwargs(self, c: ConfigRun, seeds: list[int]) -> dict:
        """One job for all `seeds` of a config (the torch trainer's seed axis)."""
        kw = self._job_kwargs(c, seeds[0])
        for key in ("seed", "save_path"):
            kw.pop(key, None)
        run_dir = self.store.run_dir
        kw.update(seeds=list(seeds), tb_dir=str(run_dir / "tb" / c.config_id / c.kind),
                  checkpoint_path=str(self.checkpoint_path(c, None)), checkpoint_every=self._checkpoint_every(len(seeds)))
        if c.kind == Kind.HELDOUT:
            kw["save_paths"] = [str(run_dir / "models" / c.config_id / f"seed_{s}") for s in seeds]
        return kw

    def checkpoint_path(self, c: ConfigRun, seed: int | None):
        """Where a seed job keeps its checkpoint (stable across resumes: config, kind, seed); seed None:
        the job that trains all of the config's seeds as one batch (its header names the seeds)."""
        name = f"{c.kind}_seeds.pt" if seed is None else f"{c.kind}_seed{seed}.pt"
        return self.store.run_dir / "checkpoints" / c.config_id / name

    def _checkpoint_every(self, batch: int = 1) -> int:
        """Env steps (per seed) between checkpoints: about two minutes of a job of ``batch`` seeds."""
        from automl.train.checkpoint import default_checkpoint_every

        return self.cfg.checkpoint_every or default_checkpoint_every(
            (self.plan.train_steps_per_s or self.plan.steps_per_s) / batch, rollout=self.inputs.rollout)

    def _timeout_s(self, steps: int) -> float:
        if self.cfg.timeout_per_trial:
            return self.cfg.timeout_per_trial
        return 4 * self.throughput.seconds_for(steps) + 120.0

    def _on_seed(self, c: ConfigRun, seed: int, record: dict) -> None:
        t0 = time.perf_counter()
        self.records.seed_done(c, seed, record)
        self.store.event("seed_done", config_id=c.config_id, kind=c.kind, **record)
        self.write_state("running")
        if not self.cfg.keep_checkpoints and record.get("state") in State.SCORED and c.rung is None:
            from automl.train.checkpoint import remove  # recorded now: the checkpoint is not needed (a ladder's
            # config keeps it until it climbs no more)

            remove(str(self.checkpoint_path(c, seed)))
        self.driver_s += time.perf_counter() - t0

    def _on_lost(self, c: ConfigRun, event) -> None:
        """A seed job lost with its Ray worker or node: recorded; the executor submits it once more."""
        lost = {"job_id": event.job_id, "config_id": c.config_id, "reason": event.reason, "node": event.node,
                "attempt": event.attempt}
        self.lost_jobs.append(lost)
        self.store.event("job_lost", **lost)
        self.write_state("running")

    def _on_config(self, c: ConfigRun) -> None:
        t0 = time.perf_counter()
        state = config_state(c)
        values = [r.get("episode_reward_mean") if r.get("state") == State.COMPLETE else None
                  for r in (c.results[s] for s in c.seeds if s in c.results)]
        # Only complete configs get a score (failed seeds count as worst); a pruned or
        # deadline-stopped config has no comparable score, nor has a failed one while no worst is known.
        worst = self.records.worst_value()
        scorable = values and state in State.SCORED and (worst is not None or any(
            is_finite_number(v) for v in values))
        score = score_seeds(values, worst=worst) if scorable else None
        # --metrics/--constraint: the config's objectives, violations and feasibility, from its seeds
        score = pareto.with_selection(self.cfg, score, [c.results[s] for s in c.seeds if s in c.results])
        incumbent = self.records.best_entry()  # before this config counts
        if c.rung is not None:
            self.ladder.climb_done(c, state, score)
            entry = next(e for e in self.records.entries.values() if e.config_id == c.config_id and e.tuning)
        else:
            entry = self.records.config_done(c, state, score)
        if c.sampler is not None and c.rung is None:
            # Samplers learn that a failed config is bad: it is told as the worst value.
            told, violations = pareto.told(self.cfg, score if state in State.SCORED else None)
            self.searches[c.kind].tell(Outcome(c.sampler, told, State.PRUNED if state == State.PRUNED
                                               else State.COMPLETE, violations))
        owner = self.searches.get(c.kind)
        if owner is not None and state == State.COMPLETE:
            alarm = owner.alarm(entry.to_dict(), incumbent and incumbent.to_dict(),
                                [e.to_dict() for e in self.records.tuned()])
            if alarm:
                self.records.add_alarm(alarm)
        if c.batched and not self.cfg.keep_checkpoints and state in State.SCORED and c.rung is None:
            from automl.train.checkpoint import remove  # every seed recorded: the batch's checkpoint is not needed

            remove(str(self.checkpoint_path(c, None)))
        if c.kind != Kind.HELDOUT:  # keep the held-out reserve in step with measured throughput
            self.update_reserve()
        self.store.event("config_done", config_id=c.config_id, kind=c.kind, state=state, score=score)
        st = self.write_state("running")
        if self.view is not None:
            self.view.config_done(self.records.entries[c.trial.number].to_dict(), state=st)
        self.driver_s += time.perf_counter() - t0

    def job_s(self, config_id: str | None = None) -> float:
        """Estimated seconds of one seed job: the config's own tuning jobs when it has some
        (a config with big networks or many epochs is slower than the calibrated prior),
        else the run's measured throughput; on a ladder, at the top rung's length."""
        if self.ladder is not None:
            return self.ladder.recheck_job_s(config_id)
        est = self.throughput.seconds_for(self.plan.trial_steps)
        entry = next((e for e in self.records.entries.values() if e.config_id == config_id and e.tuning),
                     None) if config_id else None
        walls = [float(r["wall_s"]) for r in (entry.seeds if entry else [])
                 if r.get("state") == State.COMPLETE and r.get("wall_s") and r.get("resumed_from") is None]
        return max([est] + [w * self.throughput.margin for w in walls])

    def update_reserve(self) -> None:
        """Time kept for the held-out stage: top-k + baseline at the incumbent's job length;
        the winner's and the baseline's share may exceed the usual cap (they always run); on a ladder, what
        its policy sizes for the configs that will be re-checked."""
        if self.ladder is not None:
            self.budget.reserve_s = min(self.ladder.policy.reserve_s(), self.budget.total_s)
            return
        best = self.records.best_entry()
        job_s = self.job_s(best.config_id if best else None)
        seeds, n = len(self.inputs.heldout_seeds), self.cfg.n_jobs
        configs = (self.plan.heldout_configs or self.cfg.top_k + 1) + 2  # + the winner and baseline on test seeds
        self.budget.set_reserve(-(-configs * seeds // n) * job_s, essential_s=-(-4 * seeds // n) * job_s)

    def write_state(self, status: str) -> dict:
        """Rewrite automl_state.yaml from the records (atomic); the live view follows it."""
        st = state_dict(self, status)
        self.store.write(st)
        self.last_state = st
        if self.record is not None and time.time() - self._beat >= studies.HEARTBEAT_S / 2:
            self._beat = time.time()  # Optuna's heartbeat for the running trials (server storages)
            studies.record_heartbeats(self.record, [e.trial._trial_id for e in self.scheduler.active]
                                      if self.scheduler else [])
        self.refresh_view()
        return st

    def refresh_view(self) -> None:
        """Show the latest state and the seed jobs on workers now (no file is written)."""
        if self.view is not None and self.last_state is not None:
            self.view.update(self.last_state, planned_configs=self.planned_configs(),
                             running_jobs=self.scheduler.running_jobs() if self.scheduler else 0)

    def planned_configs(self) -> int:
        """Tuning configs the stages ask for, or more once the last phase was extended."""
        planned = sum(s.quota for s in self.mode.stages(self.plan, self.cfg, bool(self.inputs.terms)))
        started = sum(1 for e in self.records.entries.values() if e.tuning and e.state != State.REJECTED)
        return max(planned, started)
