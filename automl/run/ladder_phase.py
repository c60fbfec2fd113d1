"""The tuning phases of a run that climbs the fidelity ladder (``automl.run.ladder_run``).

Each of the mode's stages becomes a ``LadderPhase``: its search owner proposes the configs that enter the
ladder's lowest rung (its quota: --hp-trials, a reward generation, the joint configs), while any config of
the run may be promoted meanwhile (at each free worker the ladder's policy answers promote, admit or wait).
A phase ends once its quota has entered; its configs climb on during the next phases. After the planned
stages the mode's cycle repeats (more HP trials and reward generations, or more joint configs) while
configs still fit: the time is never left on the table. ``LadderFinish`` then promotes while promotions fit,
lets the climbs in flight end and closes the ladder. A run ends ``budget_exhausted`` only when no
admissible job fits in what is left.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

from optuna.trial import TrialState

from automl.core.record import State
from automl.run import outcomes
from automl.run.phases import TuningPhase

if TYPE_CHECKING:  # automl.run.mode_run builds these phases: no import back at run time
    from automl.run.context import RunContext
    from automl.run.modes.base import Stage

TUNING_OVER = "no admissible job fits in the time left"
MAX_TOO_SLOW = 10  # proposals in a row too slow to finish their first rung before admission ends
MAX_TOO_DEAR = 200  # proposals in a row dearer than the plan's cost cap before admission ends
TOO_SLOW = "would not finish its first rung before the tuning deadline"
MAX_EXTRA_CYCLES = 1000  # a bound, not a plan: extension stops when nothing fits or the search runs out


@dataclass
class LadderPhase(TuningPhase):
    """Admit ``quota`` configs of one kind and cycle to the ladder; promote any config whose turn it is.
    ``planned_left``: the quotas of the planned stages from this one on (0 for the cycles that extend the
    plan): when fewer configs can still enter, this stage takes its share (at least one)."""

    planned_left: int = 0
    kinds: frozenset = frozenset()  # the kinds the run's stages propose: tuning ends once all are exhausted

    def run(self, ctx: RunContext) -> None:
        ladder = ctx.ladder_run
        if self.kind in ladder.exhausted:
            return  # its search ran out (a walked grid): the other kinds' phases go on
        ctx.enter_stage(self.kind, self.cycle)
        quota = ladder.phase_quota(self.quota, self.planned_left)
        if quota < self.quota:
            ctx.store.event("stage_quota", kind=self.kind, cycle=self.cycle, planned=self.quota, quota=quota)
            self.quota = quota
        for c in ctx.sched.unpark(self.kind, self.cycle):
            outcomes.add(ctx, c)
        while not ctx.stop_tuning_if_due():
            entered = sum(1 for e in ctx.records.entries.values()
                          if e.kind == self.kind and e.cycle == self.cycle and e.state != State.REJECTED)
            if entered >= self.quota:
                return  # the next phase admits; this phase's configs climb on meanwhile
            if ctx.sched.free_slots() > 0:
                act = ladder.next_action(admit_first=entered == 0 and self.planned_left > 0)
                if act.kind == "promote":
                    outcomes.add(ctx, ladder.promote(act.promoted(), act.rung))
                    continue
                if act.kind == "admit":
                    new = self.propose(ctx)
                    if new is None:
                        ladder.exhausted.add(self.kind)
                        ctx.store.event("search_exhausted", kind=self.kind, cycle=self.cycle)
                        if ladder.exhausted >= (self.kinds or {self.kind}):
                            ctx.mark_tuning_over(f"the {self.kind} search space is exhausted", "search_exhausted")
                        return
                    if ladder.dearer_than_cap(new):
                        cap = ladder.policy.cost_cap
                        _not_admitted(ctx, new, f"dearer per step than {cap:.2f}x the prior's: this budget's ladder "
                                              "cannot select among such configs")
                        ladder.too_dear += 1
                        if ladder.too_dear >= MAX_TOO_DEAR:
                            ctx.mark_tuning_over(f"{MAX_TOO_DEAR} proposals in a row were dearer than the "
                                                 "budget's cost cap")
                            return
                        continue
                    ladder.too_dear = 0
                    if ladder.fits_entrant(new):
                        ladder.too_slow = 0
                        outcomes.add(ctx, ladder.enter(new))
                        continue
                    _not_admitted(ctx, new, TOO_SLOW)
                    ladder.too_slow += 1
                    if ladder.too_slow >= MAX_TOO_SLOW:  # the space's configs no longer fit: promotions go on
                        ctx.mark_tuning_over(TUNING_OVER)  # in LadderFinish
                        return
                    continue
                if act.kind == "over":
                    ctx.mark_tuning_over(TUNING_OVER)
                    return
            outcomes.step(ctx, 0.5)
            ctx.refresh_view()
            if ctx.budget.tuning_over():
                ctx.mark_tuning_over("tuning deadline reached")


@dataclass
class LadderFinish:
    """After the last admission: promote while promotions fit, let the climbs end, close the ladder."""

    tuning = False  # it runs after tuning was declared over, before the re-checks
    kind: str = "ladder"

    def run(self, ctx: RunContext) -> None:
        ladder = ctx.ladder_run
        while True:
            over = ctx.budget.tuning_over()
            if not over and ctx.sched.free_slots() > 0:
                act = ladder.next_action()
                if act.kind == "promote":
                    outcomes.add(ctx, ladder.promote(act.promoted(), act.rung))
                    continue
            if not any(c.rung is not None for c in ctx.sched.active):
                break
            outcomes.step(ctx, 0.5)
            ctx.refresh_view()
            if ctx.budget.tuning_over():
                outcomes.drain(ctx)
        ladder.close_all()
        ctx.mark_tuning_over(TUNING_OVER)
        ctx.write_state("running")


def ladder_phases(ctx: RunContext, stages: "list[Stage]", *, extends: bool, extends_when_pruned: bool) -> Iterator:
    """The planned stages as ladder phases, then (``extends``) the mode's cycle again while configs fit, then
    ``LadderFinish``."""
    owners = ctx.searches
    kinds = frozenset(s.kind for s in stages)
    for i, s in enumerate(stages):
        yield LadderPhase(s.kind, s.cycle, s.quota, owner=owners[s.kind], extends_when_pruned=extends_when_pruned,
                          planned_left=sum(t.quota for t in stages[i:]), kinds=kinds)
    cycle_len = len({(s.kind, s.cycle) for s in stages if s.cycle == stages[0].cycle}) if stages else 0
    template = stages[:cycle_len]
    last = max((s.cycle for s in stages), default=0)
    for extra in range(1, MAX_EXTRA_CYCLES + 1 if extends and template else 1):
        for s in template:
            if ctx.stop_tuning_if_due():
                break
            yield LadderPhase(s.kind, last + extra, s.quota, owner=owners[s.kind],
                              extends_when_pruned=extends_when_pruned, kinds=kinds)
        if ctx.stop_tuning_if_due():
            break
    yield LadderFinish()


def _not_admitted(ctx: RunContext, c, reason: str) -> None:
    """A proposed config too slow for the time left or too dear for the plan (its own shape's estimate):
    recorded with ``reason``, never trained, and told to its sampler as pruned, so that a model-based
    sampler learns to propose fewer like it (TPE ranks a pruned trial without reports below every
    finished one; a failed trial it ignores)."""
    entry = next(e for e in ctx.records.entries.values() if e.config_id == c.config_id and e.tuning)
    entry.state, entry.reason = State.REJECTED, reason
    c.trial.set_user_attr("state", State.REJECTED)
    c.trial.set_user_attr("rejected", True)
    c.trial.set_user_attr("reason", entry.reason)
    ctx.record_study.tell(c.trial, state=TrialState.FAIL)
    if c.sampler is not None:
        from automl.search.owner import Outcome

        ctx.searches[c.kind].tell(Outcome(c.sampler, None, State.PRUNED))
    ctx.store.event("not_admitted", config_id=c.config_id, reason=entry.reason)
