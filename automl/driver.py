"""The staged loop under one budget: plan → (HP phase → reward phase) × cycles → held-out.

The driver is the only ask/tell caller. Setup (spaces, studies, plan) lives in automl/setup.py,
the bookkeeping of configs and the state file in automl/records.py, the final re-evaluation
in automl/heldout.py.
"""
from __future__ import annotations

import signal

from automl import heldout, records
from automl.errors import AutoMLError
from automl.runconfig import RunConfig
from automl.context import RunContext, prepare


class Interrupted(Exception):
    """SIGTERM or Ctrl-C: flush the state and stop the workers."""


def main(cfg: RunConfig) -> int:
    """`automl run`: prepare, run the staged loop, exit 0 when the budget ends it."""
    ctx = prepare(cfg)
    if cfg.dry_run:
        print(records.plan_text(ctx))
        return 0
    from automl.live import LiveView

    ctx.view = LiveView(quiet=cfg.quiet)
    ctx.view.start()
    try:
        return run(ctx)
    finally:
        ctx.view.close(ctx.last_state)


def run(ctx: RunContext) -> int:
    """Run (or resume) the whole staged search recorded in ctx.run_dir."""
    previous = {s: signal.signal(s, _raise_interrupt) for s in (signal.SIGTERM, signal.SIGINT)}
    status = "failed"
    try:
        ctx.start()
        for kind, cycle, quota in ctx.stages():
            run_phase(ctx, kind, cycle, quota)
            if ctx.tuning_over():
                break
        heldout.run(ctx)
        status = ctx.final_status()
        return 0
    except (Interrupted, KeyboardInterrupt):
        status = "interrupted"
        ctx.scheduler.stop_all("interrupted")
        print("automl: interrupted; state saved, re-run the same command to resume")
        return 130
    except AutoMLError:
        status = "failed"
        raise
    finally:
        ctx.close(status)
        for s, handler in previous.items():
            signal.signal(s, handler)


def run_phase(ctx: RunContext, kind: str, cycle: int, quota: int) -> None:
    """Train `quota` configs of one phase (hp or reward), proposing a new one when a worker frees."""
    ctx.enter_stage(kind, cycle)
    for cfg_run in ctx.resumed(kind, cycle):
        ctx.scheduler.add(cfg_run)
    while True:
        started = ctx.count(kind, cycle) + ctx.in_flight(kind, cycle)
        wanted = started < quota or ctx.may_extend(kind, cycle)
        if wanted and ctx.scheduler.free_slots() > 0 and not ctx.tuning_over():
            if not ctx.scheduler.fits(ctx.plan.trial_steps, ctx.cfg.seeds, batched=ctx.batched):
                ctx.mark_tuning_over("the next config would not finish before the deadline")
            else:
                proposal = ctx.propose(kind, cycle)
                if proposal is not None:
                    ctx.scheduler.add(proposal)
                    continue
                ctx.mark_tuning_over(f"the {kind} search space is exhausted", "search_exhausted")
        if ctx.in_flight(kind, cycle) == 0 and (started >= quota or ctx.tuning_over()) \
                and not ctx.may_extend(kind, cycle):
            return
        ctx.scheduler.step(0.5)
        ctx.refresh_view()
        if ctx.budget.tuning_over():
            ctx.mark_tuning_over("tuning deadline reached")
            ctx.scheduler.drain(hard_deadline=ctx.budget.deadline)


def _raise_interrupt(signum, frame):
    raise Interrupted(signal.Signals(signum).name)
