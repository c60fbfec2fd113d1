"""Final re-evaluation: top-k tuned configs and the baseline, re-trained on held-out seeds.

Ranked by the run's objective (--objective, default IQM) over held-out seeds (with a 95% CI); the winner goes to best.yaml with its
tuning and held-out scores, the baseline's held-out score beside it, and its saved policies.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import math

from automl.search import space as space_mod
from automl.core.config import to_ppo_setup
from automl.core.record import ConfigRecord, Kind, State
from automl.run import outcomes, pareto, testseeds
from automl.run.records import TUNING_KINDS, ranked, score_of
from automl.run.state import HeldoutResult
from automl.core.scoring import objective_value

if TYPE_CHECKING:
    from automl.run.context import RunContext
    from automl.run.configrun import ConfigRun


def candidates(ctx: RunContext) -> list[tuple[str, dict, dict, bool]]:
    """(config_id, params, weights, is_baseline): the leader, the baseline, then the rest of the top-k."""
    sel = ctx.cfg.selection
    every = ranked(ctx.records.entries.values(), ctx.cfg.objective_name, TUNING_KINDS, ctx.cfg.risk, sel)
    aside = ctx.ladder.policy.set_aside if ctx.ladder is not None else set()
    tuned = [e for e in every if e.config_id not in aside]  # set aside: too slow to re-check at the top in time
    # with several objectives: the front's members (the pick first), up to --top-k
    # on a ladder: as many as its reserve was kept for (fewer than --top-k when the budget is short)
    k = ctx.cfg.top_k if ctx.ladder is None else min(ctx.cfg.top_k, ctx.ladder.policy.heldout_n)
    top = (pareto.front(tuned, sel) if sel is not None and sel.objectives else tuned)[:k]
    base_params = space_mod.prior_params(ctx.inputs.spec)
    base_weights = ctx.inputs.default_weights
    out, baseline_id = [], None
    for e in every:
        if e.params == base_params and e.reward_weights == base_weights:
            baseline_id = e.config_id
            break
    for e in top:
        out.append((e.config_id, e.params, e.reward_weights, e.config_id == baseline_id))
    if not any(is_base for *_, is_base in out):
        # Right after the leader: if the budget ends early, the winner still has its baseline.
        out.insert(min(1, len(out)), (baseline_id or "baseline", base_params, base_weights, True))
    return out


def run(ctx: RunContext) -> HeldoutResult:
    """Re-train the candidates on held-out seeds within the remaining budget; write best.yaml; return the
    ranking."""
    ctx.enter_stage(Kind.HELDOUT, 0)
    done = {e.config_id: e for e in ctx.records.entries.values()
            if e.kind == Kind.HELDOUT and e.state != State.RUNNING}
    for c in ctx.sched.unpark(Kind.HELDOUT, 0):
        outcomes.add(ctx, c)
    running = {c.config_id for c in ctx.sched.active}
    baseline, load_s = None, 0.0
    extras: list[ConfigRun] = []
    essentials: list[ConfigRun] = []
    for i, (config_id, params, weights, is_base) in enumerate(candidates(ctx)):
        if is_base:
            baseline = config_id
        if config_id in done or config_id in running:
            continue
        seeds, job_s = admit_seeds(ctx, config_id, load_s, essential=is_base or i == 0)
        if not seeds:
            ctx.store.event("heldout_skipped", config_id=config_id, reason="would not finish in budget")
            continue
        if len(seeds) < len(ctx.inputs.heldout_seeds):
            ctx.store.event("heldout_fewer_seeds", config_id=config_id, seeds=seeds,
                            reason="all held-out seeds would not finish in budget")
        load_s += len(seeds) * job_s
        c = ctx.records.new_config(Kind.HELDOUT, 0, params, weights, None, seeds,
                                   ctx.plan.trial_steps, config_id=config_id,
                                   extra={"heldout_of": config_id, "baseline": is_base,
                                          "planned_seeds": seeds})
        outcomes.add(ctx, c)
        (essentials if is_base or i == 0 else extras).append(c)
    outcomes.finish(ctx, guard=lambda: _keep_test_time(ctx, extras, essentials))
    return write_best(ctx, baseline)


def _keep_test_time(ctx: RunContext, extras: list, essentials: list) -> None:
    """Keep the test phase its time when the held-out jobs run slower than estimated (re-checks on this
    machine ran up to ~15% slower than their measured-speed estimate): first drop the extra candidates
    (beyond the leader and the baseline) whose seeds have not started, last-ranked first; then take
    unstarted held-out seeds off the leader and the baseline, down to two each. The test phase (the winner
    and the baseline on the test seeds) is the run's result; the held-out phase only selects."""
    slow = testseeds.recheck_slowdown(ctx)
    if slow <= 1.0:
        return  # at the estimated speed the held-out admission already left the test phase its time
    active = ctx.sched.active
    job = {c.config_id: ctx.job_s(c.config_id) * slow for c in active}
    test_s = testseeds.reserve_s(ctx, max(job.values(), default=0.0))
    n_jobs = ctx.cfg.n_jobs

    def fits() -> bool:  # the held-out jobs left (running ones as if new) in whole waves, then the test phase
        jobs = sum(len(c.pending) + len(c.running) for c in active)
        longest = max((job[c.config_id] for c in active if c.pending or c.running), default=0.0)
        return math.ceil(jobs / n_jobs) * longest + test_s <= ctx.budget.remaining_s()

    for c in reversed([c for c in extras if c in active and not c.running and not c.results]):
        if fits():
            return
        ctx.store.event("heldout_dropped", config_id=c.config_id, slowdown=round(slow, 3),
                        reason="the test phase would not fit after it at the measured speed")
        outcomes.drop(ctx, c)
    while not fits():
        trimmable = [c for c in essentials if c in active and c.pending and len(c.seeds) > 2]
        if not trimmable:
            return
        c = max(trimmable, key=lambda c: (len(c.seeds), job[c.config_id]))
        outcomes.trim(ctx, c)
        ctx.store.event("heldout_fewer_seeds", config_id=c.config_id, seeds=list(c.seeds), slowdown=round(slow, 3),
                        reason="the test phase would not fit after all held-out seeds at the measured speed")


def admit_seeds(ctx: RunContext, config_id: str, load_s: float, *, essential: bool) -> tuple[list[int], float]:
    """(held-out seeds to train, seconds per job) for one candidate behind `load_s` seconds of
    queued held-out work. All seeds when they fit before the deadline; the leader and the
    baseline (essential) get as many as fit, at least one; other candidates all or nothing, and
    only if they leave the test phase its time (the winner and the baseline on the test seeds)."""
    job_s = ctx.job_s(config_id)
    n_jobs = ctx.cfg.n_jobs
    full = list(ctx.inputs.heldout_seeds)
    left = ctx.budget.remaining_s()
    if not essential:  # the test phase comes after: only the leader and the baseline may use its time
        left -= testseeds.reserve_s(ctx, job_s)
    for n in range(len(full), 0 if essential else len(full) - 1, -1):
        finish = (load_s + n * job_s) / n_jobs + job_s * (1 - 1 / n_jobs)
        if finish <= left:
            return full[:n], job_s
    return [], job_s


def _heldout_entries(ctx: RunContext) -> dict[str, ConfigRecord]:
    return {e.config_id: e for e in ctx.records.entries.values()
            if e.kind == Kind.HELDOUT and e.score and e.state == State.COMPLETE}


def best_params(ctx: RunContext, params: dict, steps: int) -> dict:
    """best.yaml's ``params``: the complete config at the length it was re-checked at (the top rung), so
    `automl train --config best.yaml` trains what the run selected, not the space's n_timesteps."""
    return {**space_mod.merged(ctx.inputs.spec, params), "n_timesteps": int(steps)}


def sb3_block(ctx: RunContext, params: dict, steps: int) -> dict:
    """best.yaml's ``sb3`` entry: the config as SB3 PPO takes it (rl-zoo3 export reads it)."""
    setup = to_ppo_setup(params, path=ctx.inputs.space_path)
    return {"ppo_kwargs": setup.ppo_kwargs, "num_envs": setup.num_envs, "n_timesteps": steps,
            "normalize": setup.normalize, "learning_rate_schedule": setup.learning_rate_schedule}


def write_best(ctx: RunContext, baseline_id: str | None) -> HeldoutResult:
    """Rank held-out results by the run's objective and write best.yaml (nothing when no config finished);
    return the ranking."""
    held = _heldout_entries(ctx)
    objective = ctx.cfg.objective_name
    ranking = ranked(held.values(), objective, (Kind.HELDOUT,), ctx.cfg.risk, ctx.cfg.selection)
    front = pareto.summary(held.values(), ctx.cfg, (Kind.HELDOUT,))
    result = HeldoutResult([{"config_id": e.config_id, "objective": objective,
                             "value": objective_value(score_of(e), objective, risk=ctx.cfg.risk),
                             "iqm": score_of(e)["iqm"], "mean": score_of(e)["mean"], "ci95": score_of(e)["ci95"],
                             "baseline": e.config_id == baseline_id} for e in ranking], front)
    if not ranking:
        return result
    win = ranking[0]
    tuning = next((e for e in ctx.records.entries.values() if e.config_id == win.config_id
                   and e.tuning), None)
    full = best_params(ctx, win.params, ctx.plan.trial_steps)
    models = [str(ctx.store.run_dir / "models" / win.config_id / f"seed_{r['seed']}.zip")
              for r in win.seeds if r.get("state") == State.COMPLETE]
    base = held.get(baseline_id) if baseline_id else None
    ctx.store.write_yaml("best.yaml", {
        "config_id": win.config_id, "env": ctx.cfg.env, "objective": objective,
        "search_space_id": ctx.inputs.spec.search_space_id,
        "params": full,
        "sb3": sb3_block(ctx, full, ctx.plan.trial_steps),
        "reward_weights": win.reward_weights,
        "tuning_score": tuning.score if tuning else None,
        "heldout_score": win.score,
        "heldout_seeds": ctx.inputs.heldout_seeds,
        "baseline": {"config_id": baseline_id, "heldout_score": base.score if base else None},
        "models": models,
        **({"pick": ctx.cfg.pick, "objectives": score_of(win).get("objectives"), "front": front["front"]}
           if front and front.get("front") is not None else {}),
        **({"constraints": {"violations": score_of(win).get("violations"), "feasible": True}}
           if front and front["constraints"] else {}),
    })
    return result
