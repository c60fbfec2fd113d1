"""The driver: a run is a sequence of phases under one budget.

    plan → (HP phase → reward phase) × cycles → held-out → test   (--mode stage; each mode lists its own)

``automl.run.modes`` declares a mode and ``automl.run.mode_run`` says which phases it runs;
``automl.run.phases`` holds the phases (each asks its search owner, submits seed jobs through the scheduler
and tells the results); ``automl.run.context.RunContext`` holds the run they share (budget, records,
studies, scheduler, state file), which ``automl.run.opening`` assembles. The driver starts the run, runs
the phases in order, and always closes it: the state file is written and the workers stop, also on errors
and interrupts.
"""
from __future__ import annotations

import signal

from automl.run import mode_run
from automl.run.context import RunContext
from automl.run.opening import prepare, start
from automl.core.errors import AutoMLError
from automl.run.runconfig import RunConfig


class Interrupted(Exception):
    """SIGTERM or Ctrl-C: flush the state and stop the workers."""


def main(cfg: RunConfig) -> int:
    """`automl run`: prepare, run the phases, exit 0 when the run ends by its plan or its budget."""
    ctx = prepare(cfg)
    if cfg.dry_run:
        print(mode_run.plan_text(ctx))
        return 0
    from automl.run.live import LiveView

    ctx.view = LiveView(quiet=cfg.quiet)
    ctx.view.start()
    try:
        return run(ctx)
    finally:
        ctx.view.close(ctx.last_state)


def run(ctx: RunContext) -> int:
    """Run (or resume) the whole search recorded in ctx's run directory."""
    previous = {s: signal.signal(s, _raise_interrupt) for s in (signal.SIGTERM, signal.SIGINT)}
    status = "failed"
    try:
        start(ctx)
        for phase in mode_run.phases(ctx):
            if phase.tuning and ctx.stop_tuning_if_due():
                continue  # the budget or the search ended tuning: on to the held-out phase
            ctx.results.adopt(phase.run(ctx))  # held-out ranking, test scores (tuning phases: None)
        status = ctx.final_status()
        return 0
    except (Interrupted, KeyboardInterrupt):
        status = "interrupted"
        if ctx.scheduler is not None:
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


def _raise_interrupt(signum, frame):
    raise Interrupted(signal.Signals(signum).name)
