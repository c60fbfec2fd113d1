"""One run's fidelity ladder at run time: the configs on it, their climbs, and what the searches are told.

There is one ladder per run: every tuning config (an HP phase's, a reward generation's, a joint proposal)
enters its lowest rung, and the best third of each rung continue (``automl.search.ladder.Promotions``,
asynchronous: a worker never waits for a rung to fill); the staged alternation decides only which search
proposes the next entrant. A climb is a ``ConfigRun`` with ``rung`` set: the config's seeds train on from
their checkpoints to the rung's steps, as a prefix of one run of the top rung's length, so a promoted
config ends where an uninterrupted run would. The time side (admission, promotion, the re-check reserve,
lowering the top rung) is ``automl.run.ladder_policy``.

What the samplers are told: a config's value at the highest rung it reached, as ``rung x 1e9 + value``
(minus for minimised objectives). TPE and CMA-ES use only the order of the values they are told, so a
config is compared by value only with configs trained as long, and ranks above every config that stopped
lower (the order Optuna's TPE gives pruned trials by the step they reached). It is told once the config
settles: when it finished the top rung, failed, or finished a rung without being among those promotable
from it (a rare later promotion keeps the value told). The record study gets the real value when the
config closes (top rung, failure, end of tuning).

Resume: the record trials carry each config's climbs (``climbs``: rung -> value and measured cost) and
whether it waits between climbs (``paused``); the promotions and the cost model are rebuilt from them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from optuna.trial import TrialState

from automl.core.record import State
from automl.core.scoring import objective_value
from automl.run import pareto
from automl.run.ladder import CostModel
from automl.run.ladder_policy import Action, LadderPolicy
from automl.run.configrun import ConfigRun
from automl.search import space as space_mod, studies
from automl.search.ladder import Ladder, Promotions

if TYPE_CHECKING:
    from automl.run.budget import Budget
    from automl.run.inputs import Inputs
    from automl.run.jobs import JobSpecs
    from automl.run.plan import Plan
    from automl.run.records import Records
    from automl.run.runconfig import RunConfig
    from automl.run.scheduler import Scheduler


class LadderHost(Protocol):
    """What a ladder reads and sets of its run (``automl.run.context.RunContext`` is one; a part of the
    context does not import the context)."""

    cfg: RunConfig
    inputs: Inputs
    plan: Plan
    old: dict | None
    budget: Budget
    searches: dict
    records: Records
    store: Any

    @property
    def sched(self) -> Scheduler: ...

    @property
    def job_specs(self) -> JobSpecs: ...

    @property
    def record_study(self) -> Any: ...

RUNG_WEIGHT = 1e9   # what one rung is worth in a told value (values of a rung stay within +-RUNG_WEIGHT / 2)
TIMEOUT_FACTOR = 4.0


def encode(value, rung: int, directions: list[str] | None):
    """The told value: rung-major (see the module docstring); a list with several objectives."""
    if isinstance(value, (list, tuple)):
        dirs = directions or ["maximize"] * len(value)
        return [None if v is None else (v + rung * RUNG_WEIGHT if d == "maximize" else v - rung * RUNG_WEIGHT)
                for v, d in zip(value, dirs)]
    return None if value is None else value + rung * RUNG_WEIGHT


def _busy(seed: dict) -> float:
    """A seed's training plus evaluation seconds so far (its whole history, checkpointed sessions included)."""
    return float(seed.get("train_s") or 0.0) + float(seed.get("eval_s") or 0.0)


class LadderRun:
    """The ladder of one run: promotions, the cost model and the policy, and the record bookkeeping."""

    def __init__(self, ctx: LadderHost):
        self.ctx = ctx
        lad = ctx.plan.ladder_fields()
        recorded = ((ctx.old or {}).get("ladder") or {})
        rungs = tuple(recorded.get("rungs") or lad["rungs"])
        self.horizon = int(lad["rungs"][-1])  # every tuning climb is a prefix of a run this long
        prior = {**ctx.inputs.spec.fixed, **space_mod.prior_params(ctx.inputs.spec)}
        self.cost = CostModel(prior, prior_s_per_step=float(lad["prior_s_per_step"]))
        # the untrained prior's worst score in calibration: a config no better learned nothing, and is not promoted
        self.promotions = Promotions(Ladder(rungs=rungs, eta=int(lad["eta"])), floor=ctx.plan.value_floor)
        self.policy = LadderPolicy(self.promotions, self.cost, seeds=ctx.cfg.seeds, n_jobs=ctx.cfg.n_jobs,
                                   recheck_seeds=len(ctx.inputs.heldout_seeds), top_k=ctx.cfg.top_k,
                                   startup_s=ctx.plan.startup_s)
        self.policy.heldout_n = int(recorded.get("heldout_n") or ctx.cfg.top_k)
        self.policy.typical_ratio = float(lad.get("typical_cost") or 1.0)
        self.policy.budget_s = ctx.budget.total_s
        self.policy.cost_cap = lad.get("cost_cap")
        self.policy.set_aside = set(recorded.get("set_aside") or [])
        self.policy.pinned = bool(lad.get("pinned"))
        self.told: set[str] = set()
        self.tickets: dict[str, tuple] = {}   # config -> sampler ticket (study, trial id)
        self.trials: dict[str, object] = {}   # config -> its record trial (a live handle)
        self.changes: list[str] = list(recorded.get("changes") or [])
        self.exhausted: set[str] = set()  # kinds whose search ran out (a walked grid): their phases end
        self.too_slow = 0  # proposals in a row that would not finish their first rung in time
        self.too_dear = 0  # proposals in a row dearer than the plan's cost cap
        ctx.plan.trial_steps = self.promotions.ladder.rungs[-1]

    # ---- state ---------------------------------------------------------------------------------
    def state(self) -> dict:
        """The state file's ``ladder`` section."""
        return {"rungs": list(self.promotions.ladder.rungs), "eta": self.promotions.ladder.eta,
                "horizon": self.horizon, "heldout_n": self.policy.heldout_n, "changes": self.changes,
                "set_aside": sorted(self.policy.set_aside),
                "reserve_s": round(self.policy.reserve_s(), 1),
                "cost_correction": round(self.cost.correction(), 3),
                "at_rung": {int(k): len(v) for k, v in sorted(self.promotions.results.items())},
                "promotions": self.promotions.to_dict()}

    def rebuild(self, trials) -> None:
        """Promotions, measured costs and sampler tickets from the record trials (resume)."""
        searches = {s.study.study_name: s.study for s in self.ctx.searches.values()}
        for t in sorted(trials, key=lambda t: t.number):
            a = t.user_attrs
            climbs = a.get("climbs")
            cid = a.get("config_id")
            if not cid or a.get("rung_target") is None:
                continue
            self.trials[cid] = studies.attach(self.ctx.record_study, t._trial_id)
            self.policy.register(cid, space_mod.merged(self.ctx.inputs.spec, self._params(cid)))
            for k, c in sorted((int(k), c) for k, c in (climbs or {}).items()):
                self.promotions.results.setdefault(k, {})[cid] = c.get("value")
                if k > 0:
                    self.promotions.mark_promoted(cid, k)
                if c.get("s_per_step"):
                    self.cost.measured[cid] = float(c["s_per_step"])
                    self.cost.ratios[cid] = float(c["s_per_step"]) / self.cost.shape_estimate(
                        self.policy.params[cid])
            target = int(a["rung_target"])
            if target > 0:
                self.promotions.mark_promoted(cid, target)
            if t.state != TrialState.RUNNING:
                self.promotions.close(cid)
            if a.get("sampler_told"):
                self.told.add(cid)
            if a.get("sampler") and a["sampler"]["study"] in searches:
                self.tickets[cid] = (searches[a["sampler"]["study"]], a["sampler"]["trial_id"])

    def _params(self, config_id: str) -> dict:
        e = self._entry(config_id)
        return dict(e.params) if e else {}

    def _entry(self, config_id: str):
        return next((e for e in self.ctx.records.entries.values() if e.config_id == config_id and e.tuning), None)

    def _trial(self, config_id: str):
        return self.trials[config_id]

    # ---- decisions -----------------------------------------------------------------------------
    def in_flight_s(self) -> float:
        """Worker-seconds still to do in the climbs on the scheduler (whole climbs: a running one counts fully)."""
        out = 0.0
        for c in self.ctx.sched.active:
            if c.rung is None:
                continue
            left = len(c.pending) + sum(len(s) if isinstance(s, list) else 1 for s in c.running.values())
            out += self.policy.climb_s(c.train_params, c.config_id, c.rung) * left / max(1, len(c.seeds))
        return out

    def next_action(self, *, admit_first: bool = False) -> Action:
        """The policy's next job, with the time left until the budget's end; the change of the top rung or the
        held-out count it made on the way is recorded. ``admit_first``: see ``LadderPolicy.next_action``."""
        before = (self.promotions.ladder.rungs, self.policy.heldout_n)
        aside = set(self.policy.set_aside)
        act = self.policy.next_action(left_s=self.ctx.budget.remaining_s(), in_flight_s=self.in_flight_s(),
                                      admit_first=admit_first)
        for c in sorted(self.policy.set_aside - aside):
            self.changes.append(f"{round(self.ctx.budget.elapsed_s())}s: {c} set aside (too slow to reach the top "
                                "rung and be re-checked in time; the top rung stays for the typical config)")
            self.ctx.store.event("ladder_set_aside", config_id=c, rungs=list(self.promotions.ladder.rungs))
        if (self.promotions.ladder.rungs, self.policy.heldout_n) != before:
            self.changes.append(f"{round(self.ctx.budget.elapsed_s())}s: top rung {self.promotions.ladder.rungs[-1]}, "
                                f"held-out re-check of {self.policy.heldout_n}")
            self.ctx.plan.trial_steps = self.promotions.ladder.rungs[-1]
            self.ctx.store.event("ladder_adapted", rungs=list(self.promotions.ladder.rungs),
                                 heldout_n=self.policy.heldout_n)
        self.ctx.budget.reserve_s = min(self.policy.reserve_s(), self.ctx.budget.total_s)
        return act

    def phase_quota(self, quota: int, planned_left: int) -> int:
        """A planned stage's share of the configs that can still enter: its quota, or fewer (at least one) when
        the time left would not take every planned stage's quota, so that every planned stage runs."""
        if planned_left <= 0:
            return quota
        cap = self.policy.capacity(left_s=self.ctx.budget.remaining_s(), in_flight_s=self.in_flight_s())
        share = int(cap * quota / planned_left)
        return max(1, min(quota, share))

    def fits_entrant(self, c: ConfigRun) -> bool:
        """Whether a proposed config fits at the lowest rung by its own shape's estimate."""
        return self.policy.admits(c.config_id, c.train_params, left_s=self.ctx.budget.remaining_s(),
                                  in_flight_s=self.in_flight_s())

    def dearer_than_cap(self, c: ConfigRun) -> bool:
        """Whether a proposed config is dearer per step than the budget's ladder was planned to select among."""
        return self.policy.too_dear(c.train_params)

    def enter(self, c: ConfigRun) -> ConfigRun:
        """A new config's first climb, to the lowest rung."""
        self.policy.register(c.config_id, c.train_params)
        self.trials[c.config_id] = c.trial
        if c.sampler is not None:
            self.tickets[c.config_id] = c.sampler
        c.trial.set_user_attr("rung_target", 0)
        c.trial.set_user_attr("steps", self.promotions.ladder.rungs[0])
        return self._climb(c, 0)

    def _climb(self, c: ConfigRun, rung: int) -> ConfigRun:
        c.rung, c.horizon, c.steps = rung, self.horizon, self.promotions.ladder.rungs[rung]
        per_seed = self.policy.climb_s(c.train_params, c.config_id, rung) / max(1, len(c.seeds))
        c.timeout_s = TIMEOUT_FACTOR * per_seed + 120.0
        return c

    def resumed_climb(self, c: ConfigRun, rung: int) -> ConfigRun:
        """A climb that was in flight when the run was killed: it goes on from its checkpoints."""
        self.trials[c.config_id] = c.trial
        return self._climb(c, rung)

    def promote(self, config_id: str, rung: int) -> ConfigRun:
        """``config_id`` climbs on to ``rung`` from its checkpoints (its record shows it running again)."""
        self.promotions.mark_promoted(config_id, rung)
        entry = self._entry(config_id)
        trial = self._trial(config_id)
        entry.state = State.RUNNING
        trial.set_user_attr("paused", False)
        trial.set_user_attr("rung_target", rung)
        trial.set_user_attr("steps", self.promotions.ladder.rungs[rung])
        trial.set_user_attr("state", State.RUNNING)
        c = ConfigRun(trial=trial, config_id=config_id, kind=entry.kind, cycle=entry.cycle, params=entry.params,
                      weights=entry.reward_weights, seeds=list(self.ctx.inputs.tuning_seeds),
                      train_params=space_mod.merged(self.ctx.inputs.spec, entry.params),
                      steps=self.promotions.ladder.rungs[rung], sampler=self.tickets.get(config_id))
        self.ctx.store.event("promoted", config_id=config_id, rung=rung, steps=c.steps)
        return self._climb(c, rung)

    # ---- results -------------------------------------------------------------------------------
    def climb_done(self, c: ConfigRun, state: str, score: dict | None) -> None:
        """A climb ended: the config's record shows its highest rung; the ladder and the cost model learn."""
        entry = self._entry(c.config_id)
        trial, rung = c.trial, c.climb_rung()
        climbs = dict(trial.user_attrs.get("climbs") or {})
        if state == State.COMPLETE and score:
            value = objective_value(score, self.ctx.cfg.objective_name, risk=self.ctx.cfg.risk)
            spent, steps = self._climb_cost(c)
            self.policy.finished(c.config_id, rung, value, steps=steps, train_s=spent)
            climbs[str(rung)] = {"value": value, "score": score, "seeds": list(entry.seeds),
                             "s_per_step": self.cost.measured.get(c.config_id)}
            entry.rung, entry.steps, entry.score, entry.state = rung, c.steps, score, State.COMPLETE
            trial.set_user_attr("climbs", climbs)
            trial.set_user_attr("rung", rung)
            trial.set_user_attr("rung_steps", c.steps)
            trial.set_user_attr("score", score)
            trial.set_user_attr("state", State.COMPLETE)
            trial.set_user_attr("paused", True)
            if rung == self.promotions.ladder.top:
                self.close(c.config_id)
            elif c.config_id not in self.promotions.candidates(rung):
                self.tell_sampler(c.config_id)
            return
        below = climbs.get(str(rung - 1)) if rung else None
        if below is not None and state != State.FAILED:  # stopped on the way up: it keeps the rung below
            entry.seeds, entry.score, entry.state = list(below["seeds"]), below["score"], State.COMPLETE
            entry.rung, entry.steps = rung - 1, self.promotions.ladder.rungs[rung - 1]
            trial.set_user_attr("seeds", entry.seeds)
            trial.set_user_attr("state", State.COMPLETE)
            trial.set_user_attr("rung", entry.rung)
            trial.set_user_attr("rung_steps", entry.steps)
        else:
            entry.state = state
            entry.score = score if state == State.FAILED else None
            if state == State.FAILED:
                self.promotions.record(c.config_id, rung, None)
        self.close(c.config_id)

    def _climb_cost(self, c: ConfigRun) -> tuple[float, int]:
        """(worker-seconds the climb took, seed-steps it trained): its seeds' training and evaluation time this
        climb (each seed's times run across its checkpointed sessions; a batched job's seeds share one)."""
        spent = [_busy(r) for r in c.results.values()]
        before = self._previous_busy(c)
        fresh = [max(0.0, w - b) for w, b in zip(spent, before)] if before else spent
        total = max(fresh) if c.batched else sum(fresh)
        return max(total, 1e-6), len(c.results) * self.promotions.ladder.extra_steps(c.climb_rung())

    def _previous_busy(self, c: ConfigRun) -> list[float]:
        climbs = c.trial.user_attrs.get("climbs") or {}
        below = climbs.get(str(c.rung - 1)) if c.rung else None
        if not below:
            return []
        by_seed = {s["seed"]: _busy(s) for s in below["seeds"]}
        return [by_seed.get(s, 0.0) for s in c.results]

    def tell_sampler(self, config_id: str) -> None:
        """Tell the config's search its value at the highest rung it reached (once)."""
        ticket = self.tickets.get(config_id)
        entry = self._entry(config_id)
        if ticket is None or config_id in self.told or entry is None:
            return
        self.told.add(config_id)
        self._trial(config_id).set_user_attr("sampler_told", True)
        owner = self.ctx.searches[entry.kind]
        scored = entry.state == State.COMPLETE or entry.state == State.FAILED
        value, violations = pareto.told(self.ctx.cfg, entry.score if scored else None)
        from automl.search.owner import Outcome

        if value is None or (isinstance(value, list) and None in value):
            owner.tell(Outcome(ticket, None, State.PRUNED))  # stopped before any rung: nothing to compare
            return
        dirs = pareto.sampler_options(self.ctx.cfg).get("directions")
        owner.tell(Outcome(ticket, encode(value, entry.rung or 0, dirs), State.COMPLETE, violations))

    def close(self, config_id: str) -> None:
        """The config climbs no more: the samplers and the record study get its final value, its checkpoints go."""
        self.promotions.close(config_id)
        self.tell_sampler(config_id)
        entry = self._entry(config_id)
        trial = self._trial(config_id)
        trial.set_user_attr("paused", False)
        if trial.user_attrs.get("closed"):
            return
        trial.set_user_attr("closed", True)
        if entry.state == State.COMPLETE and entry.score:
            self.ctx.record_study.tell(trial, objective_value(entry.score, self.ctx.cfg.objective_name, risk=self.ctx.cfg.risk))
        else:
            self.ctx.record_study.tell(trial, state=TrialState.FAIL if entry.state == State.FAILED else TrialState.PRUNED)
        if not self.ctx.cfg.keep_checkpoints:
            from automl.train.checkpoint import remove

            c = ConfigRun(trial=trial, config_id=config_id, kind=entry.kind, cycle=entry.cycle, params={},
                          weights={}, seeds=[], train_params={}, steps=0)
            for seed in [None, *self.ctx.inputs.tuning_seeds]:
                remove(str(self.ctx.job_specs.checkpoint_path(c, seed)))

    def close_all(self) -> None:
        """End of tuning: every config waiting between climbs closes at its highest rung."""
        running = {c.config_id for c in self.ctx.sched.active}
        for e in list(self.ctx.records.entries.values()):
            if e.tuning and e.rung is not None and e.config_id not in running and e.config_id not in \
                    self.promotions.closed:
                self.close(e.config_id)

    # ---- re-checks -----------------------------------------------------------------------------
    def recheck_job_s(self, config_id: str | None) -> float:
        """Estimated seconds of one re-check seed job at the top rung (the config's measured speed)."""
        if config_id is None or config_id not in self.policy.params:
            return self.policy._baseline_job_s()
        return self.policy._recheck_job_s(self.policy.params[config_id], config_id)
