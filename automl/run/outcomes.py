"""What the run does with the scheduler's events (a finished seed job, a finished config, a lost job), and
the calls that drive the scheduler and handle what it returns (``add``, ``step``, ``drain``, ``finish``,
``drop``, ``trim``): seed jobs' outcomes come back from the scheduler as events.

A seed is recorded, its event written and its checkpoint removed when nothing will continue it; a config
is scored over its seeds, recorded (or handed to the ladder), told to its search owner, checked for reward
hacking, and the held-out reserve follows the measured throughput.
"""
from __future__ import annotations

import time

from automl.core.record import Kind, State
from automl.core.scoring import score as score_seeds
from automl.core.values import is_finite_number
from automl.run import pareto
from automl.run.context import RunContext
from automl.run.configrun import config_state, ConfigEnded, ConfigRun, Event, JobLost, SeedEnded
from automl.search.owner import Outcome


def handle(ctx: RunContext, events: list[Event]) -> None:
    """Do what the run does with each of ``events``, in order."""
    for ev in events:
        if isinstance(ev, SeedEnded):
            seed_done(ctx, ev.config, ev.seed, ev.record)
        elif isinstance(ev, ConfigEnded):
            config_done(ctx, ev.config)
        elif isinstance(ev, JobLost):
            job_lost(ctx, ev.config, ev.lost)


def add(ctx: RunContext, c: ConfigRun) -> None:
    """Hand ``c`` to the scheduler with what its jobs need."""
    handle(ctx, ctx.sched.add(c, ctx.job_specs.of(c)))


def step(ctx: RunContext, timeout: float = 0.5, guard=None) -> None:
    """One round of the scheduler: submit, wait up to ``timeout`` for what ends, handle it, submit again
    (``guard()`` before each submission)."""
    handle(ctx, ctx.sched.step(timeout, guard=guard))
    ctx.sched.submit(guard)


def drain(ctx: RunContext, grace_s: float = 10.0) -> None:
    """Let the running jobs end (killed past the hard deadline plus ``grace_s``), handling what ends."""
    ctx.sched.drain(hard_deadline=ctx.budget.deadline, grace_s=grace_s, handle=lambda evs: handle(ctx, evs))


def drop(ctx: RunContext, c: ConfigRun) -> None:
    """End ``c`` before any of its seeds ran (recorded without a score)."""
    handle(ctx, ctx.sched.drop(c))


def trim(ctx: RunContext, c: ConfigRun) -> None:
    """Take the last queued seed off ``c``."""
    handle(ctx, ctx.sched.trim(c))


def finish(ctx: RunContext, guard=None) -> None:
    """Train the scheduler's configs to the end; at the hard deadline stop them and drain (the re-check
    phases: held-out and test). ``guard()``: called before each submission (the held-out phase drops
    queued work there)."""
    while ctx.sched.active:
        step(ctx, 0.5, guard=guard)
        ctx.refresh_view()
        if ctx.budget.exhausted():
            ctx.sched.stop_all("deadline")
            drain(ctx, grace_s=5.0)
            break


def seed_done(ctx: RunContext, c: ConfigRun, seed: int, record: dict) -> None:
    """Seed ``seed`` of ``c`` ended with ``record``."""
    from automl.train.checkpoint import remove  # torch loads in the workers, not at the driver's start

    t0 = time.perf_counter()
    ctx.records.seed_done(c, seed, record)
    ctx.store.event("seed_done", config_id=c.config_id, kind=c.kind, **record)
    ctx.write_state("running")
    if not ctx.cfg.keep_checkpoints and record.get("state") in State.SCORED and c.rung is None:
        # recorded now: the checkpoint is not needed (a ladder's config keeps it until it climbs no more)
        remove(str(ctx.job_specs.checkpoint_path(c, seed)))
    ctx.driver_s += time.perf_counter() - t0


def job_lost(ctx: RunContext, c: ConfigRun, event) -> None:
    """A seed job lost with its Ray worker or node: recorded; the executor submits it once more."""
    lost = {"job_id": event.job_id, "config_id": c.config_id, "reason": event.reason, "node": event.node,
            "attempt": event.attempt}
    ctx.results.lost_jobs.append(lost)
    ctx.store.event("job_lost", **lost)
    ctx.write_state("running")


def config_done(ctx: RunContext, c: ConfigRun) -> None:
    """Every seed of ``c`` ended: score, record, tell, alarm."""
    t0 = time.perf_counter()
    state = config_state(c)
    values = [r.get("episode_reward_mean") if r.get("state") == State.COMPLETE else None
              for r in (c.results[s] for s in c.seeds if s in c.results)]
    # Only complete configs get a score (failed seeds count as worst); a pruned or
    # deadline-stopped config has no comparable score, nor has a failed one while no worst is known.
    worst = ctx.records.worst_value()
    scorable = values and state in State.SCORED and (worst is not None or any(
        is_finite_number(v) for v in values))
    score = score_seeds(values, worst=worst) if scorable else None
    # --metrics/--constraint: the config's objectives, violations and feasibility, from its seeds
    score = pareto.with_selection(ctx.cfg, score, [c.results[s] for s in c.seeds if s in c.results])
    incumbent = ctx.records.best_entry()  # before this config counts
    if c.rung is not None:
        assert ctx.ladder is not None  # a climb (rung set) exists only on a ladder
        ctx.ladder.climb_done(c, state, score)
        entry = next(e for e in ctx.records.entries.values() if e.config_id == c.config_id and e.tuning)
    else:
        entry = ctx.records.config_done(c, state, score)
    if c.sampler is not None and c.rung is None:
        # Samplers learn that a failed config is bad: it is told as the worst value.
        told, violations = pareto.told(ctx.cfg, score if state in State.SCORED else None)
        ctx.searches[c.kind].tell(Outcome(c.sampler, told, State.PRUNED if state == State.PRUNED
                                          else State.COMPLETE, violations))
    owner = ctx.searches.get(c.kind)
    if owner is not None and state == State.COMPLETE:
        alarm = owner.alarm(entry.to_dict(), incumbent and incumbent.to_dict(),
                            [e.to_dict() for e in ctx.records.tuned()])
        if alarm:
            ctx.records.add_alarm(alarm)
            if ctx.view is not None:
                ctx.view.alarm(alarm)
    if c.batched and not ctx.cfg.keep_checkpoints and state in State.SCORED and c.rung is None:
        from automl.train.checkpoint import remove

        remove(str(ctx.job_specs.checkpoint_path(c, None)))  # every seed recorded: the batch's checkpoint is not needed
    if c.kind != Kind.HELDOUT:  # keep the held-out reserve in step with measured throughput
        ctx.update_reserve()
    ctx.store.event("config_done", config_id=c.config_id, kind=c.kind, state=state, score=score)
    st = ctx.write_state("running")
    if ctx.view is not None:
        ctx.view.config_done(ctx.records.entries[c.trial.number].to_dict(), state=st)
    ctx.driver_s += time.perf_counter() - t0
