"""RunContext: the live state of one run — studies, budget, executor, configs — and its proposals."""
from __future__ import annotations

import time

import optuna

from automl import records, space as space_mod, studies
from automl.budget import Budget, Throughput, heldout_reserve_s
from automl.errors import AutoMLError
from automl.runconfig import RunConfig
from automl.scheduler import ConfigRun, Scheduler
from automl.scoring import score as score_seeds
from automl.setup import (NOMINAL_STEPS_PER_S, PLANNED_EVALS, Inputs, Plan, check_resume, fingerprint,
                          make_plan, resolve_inputs, stage_list)
from automl.state import StateStore

MAX_REJECTS = 200  # constraint-rejected proposals in a row before the space counts as exhausted


def prepare(cfg: RunConfig) -> "RunContext":
    """Resolve inputs, check resume compatibility and make the (nominal) plan."""
    inputs = resolve_inputs(cfg)
    store = StateStore(cfg.run_dir)
    fp = fingerprint(cfg, inputs)
    old = check_resume(store, cfg, fp)
    return RunContext(cfg, inputs, store, old, fp)


class RunContext:
    """Everything the staged loop touches, with the operations the driver calls by name."""

    def __init__(self, cfg: RunConfig, inputs: Inputs, store: StateStore, old: dict | None,
                 fp: dict):
        self.cfg, self.inputs, self.store, self.old, self.fp = cfg, inputs, store, old, fp
        elapsed = float(((old or {}).get("budget") or {}).get("elapsed_s", 0.0))
        self.budget = Budget(cfg.budget_hours, elapsed_before_s=elapsed)
        nominal = NOMINAL_STEPS_PER_S.get(cfg.env, 10_000.0)
        self.plan: Plan = make_plan(cfg, inputs, self.budget, nominal)
        self.records = records.Records(self)
        self.stage = {"index": 0, "kind": "plan", "cycle": 0}
        self.stop_reason: str | None = None
        self.executor = None
        self.scheduler: Scheduler | None = None
        self._resume: list[ConfigRun] = []
        self._stages_done = False
        self.driver_s = 0.0  # time spent in the driver's own bookkeeping (ask/tell, state writes)

    # ---- start / stop -------------------------------------------------------------------
    def start(self) -> None:
        """Open the studies and the workers, restore or make the plan, re-attach in-flight work."""
        from automl.executor import make_executor
        from automl.strategies import make_pruner, make_sampler

        cfg, inputs = self.cfg, self.inputs
        self.store.run_dir.mkdir(parents=True, exist_ok=True)
        url = studies.storage_url(cfg.run_dir, cfg.storage)
        pruner = make_pruner(cfg.pruner_name, min_resource=1, reduction_factor=3)
        self.record = studies.open_study(url, studies.RECORD, pruner=pruner,
                                         sampler=optuna.samplers.RandomSampler(seed=inputs.base_seed))
        self.hp_study = studies.open_study(url, studies.HP_SAMPLER, sampler=make_sampler(
            cfg.search_method, seed=inputs.base_seed, spec=inputs.spec))
        self.executor = make_executor("local", n_jobs=cfg.n_jobs)
        self.throughput = Throughput(steps_per_s=self.plan.steps_per_s)
        self._restore_or_calibrate()
        self.reward_study = None
        if inputs.terms:
            self.reward_study = studies.open_study(url, studies.REWARD_SAMPLER, sampler=studies.make_reward_sampler(
                inputs.terms, seed=inputs.base_seed, population=self.plan.population))
        self.budget.set_reserve(self.plan.reserve_s)
        self.scheduler = Scheduler(self.executor, self.budget, self.throughput, n_jobs=cfg.n_jobs,
                                   job_fn="automl.training:run_job", job_kwargs=self._job_kwargs,
                                   on_seed=self._on_seed, on_config=self._on_config,
                                   timeout_s=self._timeout_s)
        self._resume = self.records.load_from_study()
        if self.old is None and cfg.search_method != "grid":
            self.hp_study.enqueue_trial(space_mod.encode_params(inputs.spec, space_mod.prior_params(inputs.spec)))
        self.record.set_user_attr("fingerprint", self.fp)
        self.store.event("resume" if self.old else "start", command=cfg.command, plan=self.plan.to_dict())
        self.write_state("running")

    def _restore_or_calibrate(self) -> None:
        recorded = (self.old or {}).get("plan")
        if recorded:
            self.plan = Plan(**{k: recorded[k] for k in Plan.__dataclass_fields__})
            self.throughput.steps_per_s = self.plan.steps_per_s
            return
        self.plan = make_plan(self.cfg, self.inputs, self.budget, self._calibrate())
        self.throughput.steps_per_s = self.plan.steps_per_s

    def _calibrate(self) -> float:
        """Measure effective steps/s per worker of the prior config with short real jobs.

        All workers train at once (two jobs on two cores run slower than one alone), and the
        evaluation cost is scaled to the planned number of evaluations per seed job.
        """
        from automl.executor import Done, Job

        steps = max(self.inputs.rollout * 2, 4096)
        params = {**self.inputs.spec.fixed, **space_mod.prior_params(self.inputs.spec)}
        timeout = max(60.0, 0.05 * self.budget.total_s)
        for i in range(self.cfg.n_jobs):
            kwargs = dict(params=params, env=self.inputs.env, seed=self.inputs.base_seed + i,
                          total_steps=steps, eval_every=steps, eval_episodes=self.cfg.eval_episodes,
                          device=self.cfg.device)
            self.executor.submit(Job(job_id=f"calibrate{i}", fn="automl.training:run_job",
                                     kwargs=kwargs, timeout_s=timeout))
        rates, pending, deadline = [], self.cfg.n_jobs, time.time() + timeout + 5
        while pending and time.time() < deadline:
            for ev in self.executor.poll(0.5):
                if not isinstance(ev, Done):
                    continue
                pending -= 1
                v = ev.result.value if ev.result.ok else None
                if not (isinstance(v, dict) and v.get("train_s")):
                    raise AutoMLError(f"{self.inputs.space_path}: the prior config failed to train "
                                      f"on {self.inputs.env!r}: {ev.result.reason}")
                evals = max(1, len(v.get("evals") or [1]))
                busy = v["train_s"] + (v.get("eval_s") or 0.0) / evals * PLANNED_EVALS
                rates.append(v["steps"] / max(busy, 1e-6))
                self.throughput.startup_s = max(1.0, ev.result.wall_s - v["train_s"] - (v.get("eval_s") or 0.0))
        if pending:
            raise AutoMLError(f"{self.inputs.space_path}: calibration run of the prior config timed out")
        self.store.event("calibrated", steps=steps, steps_per_s=[round(r) for r in rates])
        return max(1.0, min(rates))

    def close(self, status: str) -> None:
        """Stop the workers and write the final state (also after errors and interrupts)."""
        if self.executor is not None:
            self.executor.shutdown(grace_s=2.0)
        if self.scheduler is not None:
            self.write_state(status)
            self.store.event("end", status=status, reason=self.stop_reason)

    # ---- stages -------------------------------------------------------------------------
    def stages(self):
        """(kind, cycle, quota) in order: HP phase then reward phase, per cycle, as the mode says."""
        yield from stage_list(self.plan, self.cfg.mode, self.cfg.max_trials, self.reward_study is not None)
        self._stages_done = True

    def all_stages_done(self) -> bool:
        """Whether every planned stage ran to its quota (else the budget cut the search short)."""
        return self._stages_done and self.stop_reason is None

    def enter_stage(self, kind: str, cycle: int) -> None:
        """Record the stage now running."""
        self.stage = {"index": self.stage["index"] + 1, "kind": kind, "cycle": cycle}
        self.store.event("stage", **self.stage)
        self.write_state("running")

    def tuning_over(self) -> bool:
        """No more tuning configs may start (deadline or exhausted space)."""
        return self.stop_reason is not None or time.time() >= self.budget.tuning_deadline

    def mark_tuning_over(self, reason: str) -> None:
        """Stop proposing tuning configs, for `reason`."""
        if self.stop_reason is None:
            self.stop_reason = reason
            self.store.event("tuning_over", reason=reason)

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

    # ---- proposals ----------------------------------------------------------------------
    def propose(self, kind: str, cycle: int) -> ConfigRun | None:
        """Ask the phase's sampler for the next config; constraint-rejected ones are recorded."""
        t0 = time.perf_counter()
        try:
            return self._propose(kind, cycle)
        finally:
            self.driver_s += time.perf_counter() - t0

    def _propose(self, kind: str, cycle: int) -> ConfigRun | None:
        for _ in range(MAX_REJECTS):
            if kind == "hp":
                got = self._ask_hp()
            else:
                got = self._ask_reward()
            if got is None:
                return None
            sampler, params, weights = got
            reason = self._rejection(params)
            if reason:
                studies.tell_sampler(*sampler, None, "rejected")
                self.records.rejected(kind, cycle, params, weights, reason)
                continue
            return self.records.new_config(kind, cycle, params, weights, sampler,
                                           self.inputs.tuning_seeds, self.plan.trial_steps)
        return None

    def _ask_hp(self):
        spec = self.inputs.spec
        if self.cfg.search_method == "grid":
            # Optuna's GridSampler ignores enqueued trials, so the grid is walked here, in order.
            points = space_mod.grid(spec)
            i = self.records.grid_cursor()
            if i >= len(points):
                return None
            self.hp_study.enqueue_trial(space_mod.encode_params(spec, points[i]))
        trial = self.hp_study.ask()
        params = space_mod.suggest(trial, spec)
        return (self.hp_study, trial._trial_id), params, dict(self.records.best_weights())

    def _ask_reward(self):
        trial = self.reward_study.ask()
        weights = dict(self.inputs.default_weights)
        for name, dist in studies.weight_distributions(self.inputs.terms).items():
            weights[name.split(".", 1)[1]] = trial.suggest_float(name, dist.low, dist.high)
        return (self.reward_study, trial._trial_id), dict(self.records.best_params()), weights

    def _rejection(self, params: dict) -> str | None:
        violated = space_mod.violated_constraints(self.inputs.spec, params)
        if violated:
            return "constraint: " + violated[0]
        try:
            space_mod.to_ppo_setup({**self.inputs.spec.fixed, **params}, path=self.inputs.space_path)
        except AutoMLError as exc:
            return str(exc)
        return None

    # ---- jobs and results ---------------------------------------------------------------
    def _job_kwargs(self, c: ConfigRun, seed: int) -> dict:
        heldout = c.kind == "heldout"
        run_dir = self.store.run_dir
        return dict(params=c.train_params, env=self.inputs.env, seed=seed, total_steps=c.steps,
                    reward_weights=c.weights or None, eval_every=self.plan.eval_every,
                    eval_episodes=self.cfg.eval_episodes,
                    deadline=self.budget.deadline if heldout else self.budget.tuning_deadline,
                    device=self.cfg.device,
                    tb_dir=str(run_dir / "tb" / c.config_id / f"{c.kind}_seed{seed}"),
                    save_path=str(run_dir / "models" / c.config_id / f"seed_{seed}") if heldout else None)

    def _timeout_s(self, steps: int) -> float:
        if self.cfg.timeout_per_trial:
            return self.cfg.timeout_per_trial
        return 4 * self.throughput.seconds_for(steps) + 120.0

    def _on_seed(self, c: ConfigRun, seed: int, record: dict) -> None:
        t0 = time.perf_counter()
        self.records.seed_done(c, seed, record)
        self.store.event("seed_done", config_id=c.config_id, kind=c.kind, **record)
        self.write_state("running")
        self.driver_s += time.perf_counter() - t0

    def _on_config(self, c: ConfigRun) -> None:
        t0 = time.perf_counter()
        state = config_state(c)
        values = [r.get("episode_reward_mean") if r.get("state") == "complete" else None
                  for r in (c.results[s] for s in c.seeds if s in c.results)]
        # Only complete configs get a score (failed seeds count as worst); a pruned or
        # deadline-stopped config has no comparable score.
        score = score_seeds(values, worst=self.records.worst_value()) \
            if values and state in ("complete", "failed") else None
        self.records.config_done(c, state, score)
        if c.kind != "heldout":  # keep the held-out reserve in step with measured throughput
            self.budget.set_reserve(heldout_reserve_s(
                configs=self.cfg.top_k + 1, seeds=len(self.inputs.heldout_seeds),
                steps=self.plan.trial_steps, n_jobs=self.cfg.n_jobs, throughput=self.throughput))
        self.store.event("config_done", config_id=c.config_id, kind=c.kind, state=state, score=score)
        self.write_state("running")
        self.driver_s += time.perf_counter() - t0

    def write_state(self, status: str) -> None:
        """Rewrite automl_state.yaml from the records (atomic)."""
        self.store.write(records.state_dict(self, status))


def config_state(c: ConfigRun) -> str:
    """A config's final state from its seeds: pruned, stopped_at_deadline, failed or complete."""
    states = [c.results[s]["state"] for s in c.seeds if s in c.results]
    if c.pruned or "pruned" in states:
        return "pruned"
    if "stopped_at_deadline" in states or len(states) < len(c.seeds):
        return "stopped_at_deadline"
    if states and all(s == "failed" for s in states):
        return "failed"
    return "complete"

