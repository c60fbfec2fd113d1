"""The test phase: the held-out winner and the baseline re-trained on test seeds, a third disjoint set.

The held-out stage picks the winner on its held-out seeds, so its score there is optimistic (the
winner's curse). The test score selected nothing: it is the run's reported result. Written to
best.yaml (``test_score``, ``baseline.test_score``) and the state file (``test``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from automl.core.record import ConfigRecord, Kind, State
from automl.core.scoring import objective_value
from automl.run import outcomes
from automl.run.ladder import makespan
from automl.run.records import score_of
from automl.run.state import TestPhaseResult

if TYPE_CHECKING:
    from automl.run.context import RunContext


def chosen(ctx: RunContext) -> list[tuple[str, dict, dict, bool]]:
    """(config_id, params, weights, is_baseline) of the held-out winner and the baseline (once if the same)."""
    summary = ctx.results.heldout or []
    if not summary:
        return []
    held = {e.config_id: e for e in ctx.records.entries.values() if e.kind == Kind.HELDOUT}
    out = []
    for h in [summary[0]] + [h for h in summary[1:] if h.get("baseline")][:1]:
        e = held[h["config_id"]]
        out.append((e.config_id, e.params, e.reward_weights, bool(h.get("baseline"))))
    return out


def reserve_s(ctx: RunContext, job_s: float) -> float:
    """Time the test phase needs: the winner's and the baseline's test seeds at ``job_s`` a job."""
    return -(-2 * len(ctx.inputs.test_seeds) // ctx.cfg.n_jobs) * job_s


def recheck_slowdown(ctx: RunContext) -> float:
    """How much slower the held-out jobs finished so far ran than estimated (1 when none finished or none
    was slower)."""
    ratios = [float(r["wall_s"]) / ctx.job_s(e.config_id) for e in ctx.records.entries.values()
              if e.kind == Kind.HELDOUT for r in e.seeds if r.get("state") == State.COMPLETE and r.get("wall_s")]
    return max([1.0, *ratios])


def run(ctx: RunContext, picks: list | None = None, steps: int | None = None, schedules: dict | None = None,
        job_s: float | None = None) -> TestPhaseResult:
    """Train the chosen configs on the test seeds (as many as fit, at least one), then record the scores.

    ``picks``: (config_id, params, weights, is_baseline), default the held-out winner and the baseline;
    ``steps``: their training length (default the trials'); ``schedules``: {config_id: a replayed
    schedule} (--mode pbt); ``job_s``: the estimated seconds of one seed job.
    """
    ctx.enter_stage(Kind.TEST, 0)
    picks = chosen(ctx) if picks is None else picks
    schedules = schedules or {}
    done = {e.config_id for e in ctx.records.entries.values() if e.kind == Kind.TEST and e.state != State.RUNNING}
    for c in ctx.sched.unpark(Kind.TEST, 0):
        c.schedule = schedules.get(c.config_id)
        outcomes.add(ctx, c)
    running = {c.config_id for c in ctx.sched.active}
    todo = [p for p in picks if p[0] not in done and p[0] not in running]
    slow = recheck_slowdown(ctx)
    # after a resume: the test jobs still to run go first, and a pick that started keeps its seeds for the rest
    started = [e for e in ctx.records.entries.values() if e.kind == Kind.TEST]
    ahead = [job_s or ctx.job_s(c.config_id) * slow for c in ctx.sched.active if c.kind == Kind.TEST
             for _ in range(len(c.pending) + len(c.running))]
    seeds = fitting_seeds(ctx, [job_s or ctx.job_s(config_id) * slow for config_id, *_ in todo], ahead=ahead,
                          at_most=min((len(e.seeds) for e in started), default=None))
    for config_id, params, weights, is_base in todo:
        c = ctx.records.new_config(Kind.TEST, 0, params, weights, None, seeds, steps or ctx.plan.trial_steps,
                                   config_id=config_id, extra={"heldout_of": config_id, "baseline": is_base,
                                                               "planned_seeds": seeds})
        c.schedule = schedules.get(config_id)
        outcomes.add(ctx, c)
    outcomes.finish(ctx)
    return record(ctx, picks)


def fitting_seeds(ctx: RunContext, jobs_s: list[float], *, ahead: Sequence[float] = (),
                  at_most: int | None = None) -> list[int]:
    """The test seeds every pick trains (the same for the winner and the baseline, so that they compare seed by
    seed): all when they fit in the time left, else as many as fit (at least one). ``jobs_s``: each pick's
    seconds per seed job (its estimate times the slowdown the held-out jobs measured); the picks' seed jobs
    are list-scheduled on the workers, the baseline's at its own length, not the winner's, after the test
    jobs still to run (``ahead``, after a resume). ``at_most``: the seeds a pick already started with."""
    seeds = list(ctx.inputs.test_seeds)
    n = min(len(seeds), at_most) if at_most else len(seeds)
    while n > 1 and makespan([*ahead, *(j for j in jobs_s for _ in range(n))], ctx.cfg.n_jobs) > \
            ctx.budget.remaining_s():
        n -= 1
    return seeds[:n]


def summary(ctx: RunContext, picks: list) -> list[dict]:
    """The test scores under the run's objective: the winner first, then the baseline."""
    tests = {e.config_id: e for e in ctx.records.entries.values()
             if e.kind == Kind.TEST and e.state == State.COMPLETE and e.score}
    out = []
    for config_id, _, _, is_base in picks:
        e: ConfigRecord | None = tests.get(config_id)
        if e is not None:
            sc = score_of(e)
            out.append({"config_id": config_id, "objective": ctx.cfg.objective,
                        "value": objective_value(sc, ctx.cfg.objective_name, risk=ctx.cfg.risk),
                        "iqm": sc["iqm"], "mean": sc["mean"], "ci95": sc["ci95"],
                        "std": sc.get("std"), "n_seeds": sc["n_seeds"], "baseline": is_base})
    return out


def record(ctx: RunContext, picks: list) -> TestPhaseResult:
    """The test scores of ``picks`` (for the state file), also added to best.yaml."""
    result = TestPhaseResult(summary(ctx, picks))
    best = ctx.store.read_yaml("best.yaml")
    if not best:
        return result
    by_id = {t["config_id"]: t for t in result.scores}
    tests = {e.config_id: e for e in ctx.records.entries.values() if e.kind == Kind.TEST and e.score}
    base_id = (best.get("baseline") or {}).get("config_id")
    win, base = tests.get(best["config_id"]), tests.get(base_id) if base_id else None
    best["test_seeds"] = list(ctx.inputs.test_seeds)
    best["test_score"] = win.score if win and best["config_id"] in by_id else None
    best.setdefault("baseline", {})["test_score"] = base.score if base else None
    ctx.store.write_yaml("best.yaml", best)
    return result
