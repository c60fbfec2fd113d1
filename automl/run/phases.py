"""The phases of a run, in the order the driver runs them under one budget.

A tuning phase keeps the workers busy with configs its search owner proposes until its quota is
trained or tuning is over: the HP phase (one per cycle) asks the HP search and keeps the incumbent's
reward weights, the reward phase asks the reward search and keeps the incumbent's HPs, and the joint
phase (``--mode joint``, one) asks the joint search for both at once. The held-out phase re-trains
the best configs on held-out seeds and picks the winner; the test phase re-trains the winner and the
baseline on test seeds, the score that selected nothing. A new search mode is a new phase class with
the same ``run(ctx)``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from automl.run import heldout, testseeds
from automl.run.pbt import PBTPhase, ReplayPhase
from automl.run.scheduler import ConfigRun
from automl.run.setup import stage_list
from automl.core.record import Kind, State

MAX_REJECTS = 200  # constraint-rejected proposals in a row before the space counts as exhausted


@dataclass
class TuningPhase:
    """Train ``quota`` configs of one kind and cycle; the run's last tuning phase may go on past its
    quota when the budget shortened the trials (``ctx.plan.shrunk``): the time left goes to more configs."""

    kind: str
    cycle: int
    quota: int
    last: bool = False
    tuning = True

    def run(self, ctx) -> None:
        ctx.enter_stage(self.kind, self.cycle)
        for c in ctx.resumed(self.kind, self.cycle):
            ctx.scheduler.add(c)
        while True:
            started = ctx.count(self.kind, self.cycle) + ctx.in_flight(self.kind, self.cycle)
            wanted = started < self.quota or self.may_extend(ctx)
            if wanted and ctx.scheduler.free_slots() > 0 and not ctx.tuning_over():
                if not ctx.scheduler.fits(ctx.plan.trial_steps, ctx.cfg.seeds, batched=ctx.batched):
                    ctx.mark_tuning_over("the next config would not finish before the deadline")
                else:
                    proposal = self.propose(ctx)
                    if proposal is not None:
                        ctx.scheduler.add(proposal)
                        continue
                    ctx.mark_tuning_over(f"the {self.kind} search space is exhausted", "search_exhausted")
            if ctx.in_flight(self.kind, self.cycle) == 0 and (started >= self.quota or ctx.tuning_over()) \
                    and not self.may_extend(ctx):
                return
            ctx.scheduler.step(0.5)
            ctx.refresh_view()
            if ctx.budget.tuning_over():
                ctx.mark_tuning_over("tuning deadline reached")
                ctx.scheduler.drain(hard_deadline=ctx.budget.deadline)

    def may_extend(self, ctx) -> bool:
        """Whether this phase may go past its quota: only the last tuning phase, only when the budget
        made the trials shorter than the space's default length (so more configs of the same length,
        never longer ones) or it is a pruned joint phase, and not with --max-trials."""
        if not self.last or ctx.cfg.max_trials or ctx.tuning_over():
            return False
        # a joint phase with a pruner is multi-fidelity search: the time pruning saves goes to more configs
        return ctx.plan.shrunk or (self.kind == Kind.JOINT and ctx.cfg.pruner_name != "none")

    def propose(self, ctx) -> ConfigRun | None:
        """The next config, recorded and ready to train; constraint-rejected proposals are recorded
        and told FAIL; None when the search has nothing left."""
        t0 = time.perf_counter()
        try:
            hp = ctx.searches[Kind.HP]
            for _ in range(MAX_REJECTS):
                if self.kind == Kind.HP:
                    got = hp.ask(ctx.records.grid_cursor())
                    if got is None:
                        return None
                    (ticket, params), weights = got, dict(ctx.records.best_weights())
                elif self.kind == Kind.JOINT:
                    ticket, params, weights = ctx.searches[Kind.JOINT].ask()
                else:
                    (ticket, weights), params = ctx.searches[Kind.REWARD].ask(), dict(ctx.records.best_params())
                reason = hp.rejection(params)
                if reason:
                    ctx.searches[self.kind].tell(ticket, None, State.REJECTED)
                    ctx.records.rejected(self.kind, self.cycle, params, weights, reason)
                    continue
                return ctx.records.new_config(self.kind, self.cycle, params, weights, ticket,
                                              ctx.inputs.tuning_seeds, ctx.plan.trial_steps)
            return None
        finally:
            ctx.driver_s += time.perf_counter() - t0


@dataclass
class RecheckPhase:
    """Re-train tuned configs on seeds tuning never saw: ``heldout`` (the top-k and the baseline; picks
    the winner, writes best.yaml) or ``test`` (the winner and the baseline: the score that selected nothing)."""

    kind: str
    tuning = False

    def run(self, ctx) -> None:
        {Kind.HELDOUT: heldout.run, Kind.TEST: testseeds.run}[self.kind](ctx)


def phases(ctx) -> list:
    """The run's phases in order: per cycle an HP phase then a reward phase (or one joint phase, as --mode
    says), then held-out, then test."""
    if ctx.cfg.mode == "pbt":
        return [PBTPhase(), ReplayPhase()]
    stages = stage_list(ctx.plan, ctx.cfg.mode, ctx.cfg.max_trials, Kind.REWARD in ctx.searches)
    out: list = [TuningPhase(kind, cycle, quota, last=i == len(stages) - 1)
                 for i, (kind, cycle, quota) in enumerate(stages)]
    return out + [RecheckPhase(Kind.HELDOUT), RecheckPhase(Kind.TEST)]
