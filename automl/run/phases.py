"""The phases of a run, in the order ``automl.run.mode_run.phases`` lists them for the run's mode, under one budget.

A tuning phase keeps the workers busy with configs its search owner (``automl.search.owner.SearchOwner``)
proposes until its quota is trained or tuning is over; what a proposal leaves open (the HP search's reward
weights, the reward search's HPs) is the incumbent's. The held-out phase re-trains the best configs on
held-out seeds and picks the winner; the test phase re-trains the winner and the baseline on test seeds,
the score that selected nothing. A new search mode's phases come from its declarations
(``automl.run.mode_run``); a phase with new behaviour is a new class with the same ``run(ctx)``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol

from automl.core.record import Kind, State
from automl.run import heldout, outcomes, testseeds
from automl.run.configrun import ConfigRun
from automl.search.hp import rejection
from automl.search.owner import Outcome, SearchOwner

if TYPE_CHECKING:
    from automl.run.context import RunContext
    from automl.run.state import PhaseResult

MAX_REJECTS = 200  # constraint-rejected proposals in a row before the space counts as exhausted


class Phase(Protocol):
    """One step of a run: ``run`` it (the driver skips a tuning phase once tuning is over) and keep what it
    returns (``PhaseResults.adopt``)."""

    tuning: bool

    def run(self, ctx: RunContext) -> PhaseResult: ...


@dataclass
class TuningPhase:
    """Train ``quota`` configs of one kind and cycle, proposed by ``owner``; the run's last tuning phase may
    go on past its quota when the budget shortened the trials (``ctx.plan.shrunk``) or, when
    ``extends_when_pruned``, a pruner saves time: the time left goes to more configs."""

    kind: Kind
    cycle: int
    quota: int
    owner: SearchOwner
    last: bool = False
    extends_when_pruned: bool = False
    tuning = True

    def run(self, ctx: RunContext) -> None:
        ctx.enter_stage(self.kind, self.cycle)
        for c in ctx.sched.unpark(self.kind, self.cycle):
            outcomes.add(ctx, c)
        while True:
            started = ctx.count(self.kind, self.cycle) + ctx.sched.in_flight(self.kind, self.cycle)
            wanted = started < self.quota or self.may_extend(ctx)
            if wanted and ctx.sched.free_slots() > 0 and not ctx.stop_tuning_if_due():
                if not ctx.sched.fits(ctx.plan.trial_steps, ctx.cfg.seeds, batched=ctx.batched):
                    ctx.mark_tuning_over("the next config would not finish before the deadline")
                else:
                    proposal = self.propose(ctx)
                    if proposal is not None:
                        outcomes.add(ctx, proposal)
                        continue
                    ctx.mark_tuning_over(f"the {self.kind} search space is exhausted", "search_exhausted")
            if ctx.sched.in_flight(self.kind, self.cycle) == 0 and (started >= self.quota or ctx.stop_tuning_if_due()) \
                    and not self.may_extend(ctx):
                return
            outcomes.step(ctx, 0.5)
            ctx.refresh_view()
            if ctx.budget.tuning_over():
                ctx.mark_tuning_over("tuning deadline reached")
                outcomes.drain(ctx)

    def may_extend(self, ctx: RunContext) -> bool:
        """Whether this phase may go past its quota: only the last tuning phase, only when the budget
        made the trials shorter than the space's default length (so more configs of the same length,
        never longer ones) or its mode extends a pruned phase, and not with --max-trials."""
        if not self.last or ctx.cfg.max_trials or ctx.stop_tuning_if_due():
            return False
        # a pruned search is multi-fidelity search: the time pruning saves goes to more configs
        return ctx.plan.shrunk or (self.extends_when_pruned and ctx.cfg.pruner_name != "none")

    def propose(self, ctx: RunContext) -> ConfigRun | None:
        """The next config, recorded and ready to train; constraint-rejected proposals are recorded
        and told FAIL; None when the search has nothing left."""
        t0 = time.perf_counter()
        try:
            for _ in range(MAX_REJECTS):
                proposal = self.owner.ask()
                if proposal is None:
                    return None
                params = proposal.params if proposal.params is not None else ctx.records.best_params()
                weights = proposal.weights if proposal.weights is not None else ctx.records.best_weights()
                params, weights = dict(params), dict(weights)
                reason = rejection(ctx.inputs.spec, params, ctx.inputs.space_path)
                if reason:
                    self.owner.tell(Outcome(proposal.ticket, None, State.REJECTED))
                    ctx.records.rejected(self.kind, self.cycle, params, weights, reason)
                    continue
                return ctx.records.new_config(self.kind, self.cycle, params, weights, proposal.ticket,
                                              ctx.inputs.tuning_seeds, ctx.plan.trial_steps)
            return None
        finally:
            ctx.driver_s += time.perf_counter() - t0


@dataclass
class RecheckPhase:
    """Re-train tuned configs on seeds tuning never saw: ``heldout`` (the top-k and the baseline; picks
    the winner, writes best.yaml) or ``test`` (the winner and the baseline: the score that selected nothing)."""

    kind: Kind
    recheck: Callable[[RunContext], PhaseResult]  # heldout.run or testseeds.run
    tuning = False

    def run(self, ctx: RunContext) -> PhaseResult:
        return self.recheck(ctx)


def rechecks() -> list[RecheckPhase]:
    """The phases after tuning: held-out, then test."""
    return [RecheckPhase(Kind.HELDOUT, heldout.run), RecheckPhase(Kind.TEST, testseeds.run)]
