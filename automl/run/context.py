"""RunContext: the live state of one run (studies, budget, executor, configs, phase results), assembled by
``automl.run.opening``."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, TypeVar

from automl.core.record import Kind, State
from automl.run import records
from automl.run.state import PhaseResults, iso

if TYPE_CHECKING:  # the parts ``automl.run.opening`` assembles the context from (annotations only)
    from automl.exec.base import Executor
    from automl.run.budget import Budget, Throughput
    from automl.run.inputs import Inputs
    from automl.run.jobs import JobSpecs
    from automl.run.ladder_run import LadderRun
    from automl.run.lease import Lease
    from automl.run.live import LiveView
    from automl.run.plan import Plan
    from automl.run.runconfig import RunConfig
    from automl.run.scheduler import Scheduler

T = TypeVar("T")

# Why tuning ended early -> the run's final status ("finished" when every stage ran to its quota).
BUDGET_SPENT = "budget_exhausted"
SEARCH_EXHAUSTED = "search_exhausted"


def opened(value: T | None, what: str) -> T:
    """``value``, which ``automl.run.opening.start`` sets before any phase runs (None there is a bug)."""
    if value is None:
        raise RuntimeError(f"{what}: not open yet (automl.run.opening.start opens it)")
    return value


class RunContext:
    """Everything the staged loop touches, with the operations the driver calls by name."""

    def __init__(self, cfg: RunConfig, inputs: Inputs, store, old: dict | None, fp: dict, *,
                 budget: Budget, plan: Plan):
        self.cfg, self.inputs, self.store, self.old, self.fp = cfg, inputs, store, old, fp
        self.mode = cfg.run_mode  # what --mode declares: flags, plan (automl.run.modes; its run: automl.run.mode_run)
        self.budget = budget
        self.plan: Plan = plan  # nominal until the run is started (automl.run.opening), then calibrated
        self.records = records.Records(cfg, inputs, store)
        self.records.value_floor = plan.value_floor
        self.stage: dict = {"index": 0, "kind": "plan", "cycle": 0}
        self.stop_reason: str | None = None
        self.stop_status: str | None = None
        self.view: LiveView | None = None  # when the driver shows progress
        # what the phases hand over (held-out ranking, test scores, PBT population, lost jobs): the state file's
        self.results = PhaseResults(pbt=(old or {}).get("pbt"), lost_jobs=list((old or {}).get("lost_jobs") or []))
        self.last_state: dict | None = None
        self.batched = False  # seeds of a config as one job (set in start)
        self.executor_factory: Callable[[int], Executor] | None = None  # for simulations; None: --executor's
        # opened by ``automl.run.opening.start`` before any phase runs (``sched``/``speed``/``job_specs`` say so)
        self.executor: Executor | None = None
        self.throughput: Throughput | None = None  # from the plan
        self.jobs: JobSpecs | None = None  # what a seed job is handed
        self.scheduler: Scheduler | None = None
        self.planned = False  # the run adopted its calibrated (or recorded) plan
        self.driver_s = 0.0  # time spent in the driver's own bookkeeping (ask/tell, state writes)
        self.lease: Lease | None = None  # one live driver per run
        self.searches: dict = {}  # Kind -> SearchOwner, as ``automl.run.opening.search_owners`` opens them
        self.storage_url: str | None = None
        self.ladder: LadderRun | None = None  # when the run climbs a fidelity ladder

    @property
    def sched(self) -> Scheduler:
        """The run's scheduler, once ``automl.run.opening.start`` has opened it."""
        return opened(self.scheduler, "the run's scheduler")

    @property
    def speed(self) -> Throughput:
        """The run's measured throughput, once the plan is adopted (``automl.run.opening``)."""
        return opened(self.throughput, "the run's throughput")

    @property
    def ladder_run(self) -> LadderRun:
        """The run's fidelity ladder, in the code that runs only on one (``ladder`` is None otherwise)."""
        return opened(self.ladder, "a fidelity ladder (this run does not climb one)")

    @property
    def job_specs(self) -> JobSpecs:
        """What a seed job is handed, once ``automl.run.opening.start`` has built it."""
        return opened(self.jobs, "the run's job specs")

    @property
    def record_study(self):
        """The Optuna study every config is recorded in (``records.Records`` holds and writes it)."""
        return self.records.study

    # ---- stop ---------------------------------------------------------------------------
    def close(self, status: str) -> None:
        """Stop the workers and write the final state (also after errors and interrupts)."""
        if self.executor is not None:
            self.executor.shutdown(grace_s=2.0)
        if self.planned:  # calibrated (or resumed): there is a run to record
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

    def stop_tuning_if_due(self) -> bool:
        """Whether tuning has stopped (deadline or exhausted space), stopping it now when the tuning
        deadline has passed (recorded as the reason the first time). ``Budget.tuning_over`` only reads
        the clock."""
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

    def count(self, kind: str, cycle: int) -> int:
        """Configs of this phase already finished (rejected ones do not count)."""
        return self.records.count(kind, cycle)

    # ---- estimates and state ---------------------------------------------------------------
    def job_s(self, config_id: str | None = None) -> float:
        """Estimated seconds of one seed job: the config's own tuning jobs when it has some
        (a config with big networks or many epochs is slower than the calibrated prior),
        else the run's measured throughput; on a ladder, at the top rung's length."""
        if self.ladder is not None:
            return self.ladder.recheck_job_s(config_id)
        est = self.speed.seconds_for(self.plan.trial_steps)
        entry = next((e for e in self.records.entries.values() if e.config_id == config_id and e.tuning),
                     None) if config_id else None
        walls = [float(r["wall_s"]) for r in (entry.seeds if entry else [])
                 if r.get("state") == State.COMPLETE and r.get("wall_s") and r.get("resumed_from") is None]
        return max([est] + [w * self.speed.margin for w in walls])

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
        st = self.state_dict(status)
        self.store.write(st)
        self.last_state = st
        self.records.heartbeat([e.trial for e in self.scheduler.active] if self.scheduler else [])
        self.refresh_view()
        return st

    def state_dict(self, status: str) -> dict:
        """The whole automl_state.yaml (field names are the contract in DESIGN.md)."""
        b = self.budget
        best = self.records.best_entry()
        return {
            "version": 1, "command": self.cfg.command, "status": status, "env": self.cfg.env,
            "trainer": self.cfg.trainer,
            "updated": iso(time.time()),
            "budget": {"hours": self.cfg.budget_hours, "elapsed_s": round(b.elapsed_s(), 1),
                       "remaining_s": round(b.remaining_s(), 1), "deadline": iso(b.deadline),
                       "deadline_t": round(b.deadline, 3),
                       "reserve_s": round(b.reserve_s, 1)},
            "stage": self.stage,
            "seeds": {"tuning": self.inputs.tuning_seeds, "heldout": self.inputs.heldout_seeds,
                      "test": self.inputs.test_seeds},
            "plan": self.plan.to_dict(),
            "fingerprint": self.fp,
            "best": None if best is None else {"config_id": best.config_id, "params": best.params,
                                               "reward_weights": best.reward_weights, "score": best.score},
            "heldout": self.results.heldout,
            **({"pareto": self._pareto()} if self.cfg.selection is not None else {}),
            **({"lost_jobs": self.results.lost_jobs} if self.results.lost_jobs else {}),
            "test": self.results.test,
            "trials": [e.to_dict() for e in self.records.entries.values()],
            **({"pbt": self.results.pbt} if self.results.pbt else {}),
            **({"ladder": self.ladder.state()} if self.ladder is not None else {}),
            "alarms": self.records.alarms,
            "stop_reason": self.stop_reason,
            "overhead": self._overhead(),
        }

    def _pareto(self) -> dict | None:
        """--metrics/--constraint: the tuning front so far, and once the held-out phase ran, the held-out front."""
        from automl.run import pareto

        out = pareto.summary(self.records.entries.values(), self.cfg, Kind.TUNING) or {}
        if self.results.pareto:
            out["heldout_front"] = self.results.pareto.get("front")
            out["heldout_infeasible"] = self.results.pareto.get("infeasible")
        return out

    def _overhead(self) -> dict:
        """Share of worker time spent inside jobs this session (the rest is driver overhead + idling)."""
        sched = self.scheduler
        wall = self.budget.clock() - self.budget.started
        busy = sched.busy_s if sched else 0.0
        return {"session_wall_s": round(wall, 1), "worker_busy_s": round(busy, 1),
                "worker_utilization": round(busy / max(1e-9, wall * self.cfg.n_jobs), 4),
                "driver_s": round(self.driver_s, 2),
                "driver_share": round(self.driver_s / max(1e-9, wall), 4)}

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
