"""What a run mode's declarations (``automl.run.modes``) make of a run: its --dry-run text and its phases
(its search owners: ``automl.run.opening.search_owners``). Kept apart from the declarations, which a
``RunConfig`` checks its flags against before anything of the run exists: a mode module imports nothing of
the run, this one reads the run's context. ``trains_population`` chooses here (pbt: members train together,
then the winner's schedule is replayed); every other mode runs its ``stages``
(``automl.run.modes.base.Mode``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from automl.run.plan import TEST_CONFIGS

if TYPE_CHECKING:
    from automl.run.context import RunContext
    from automl.run.phases import Phase


# ---- the --dry-run text ----------------------------------------------------------------------
def plan_text(ctx: RunContext) -> str:
    """The --dry-run summary of the run's plan."""
    if ctx.mode.trains_population:
        return _population_text(ctx)
    text = _staged_text(ctx, ctx.mode.stages(ctx.plan, ctx.cfg, bool(ctx.inputs.terms)))
    return "\n".join([text, *ladder_text(ctx)]) if ctx.plan.ladder else text


def _staged_text(ctx: RunContext, stages: list) -> str:
    """The --dry-run summary of a staged run: its tuning ``stages`` (automl.run.modes.Stage), configs, steps
    per trial, estimated time."""
    p, cfg = ctx.plan, ctx.cfg
    stages = [f"{k}#{c} ({q} configs)" for k, c, q in stages]
    est_s = p.seed_jobs * (p.startup_s + p.trial_steps / p.steps_per_s) / cfg.n_jobs + p.reserve_s
    if p.ladder:  # the ladder admits configs while they fit: it plans to use the budget
        est_s = p.ladder["tuning_s"] + p.ladder["reserve_s"]
    return "\n".join([
        f"env: {cfg.env}   space: {ctx.inputs.space_path} ({ctx.inputs.spec.search_space_id})",
        f"mode: {cfg.mode}   search: {cfg.search_method}   pruner: {cfg.pruner_name}   n_jobs: {cfg.n_jobs}",
        f"stages: {' -> '.join(stages) or 'none'} -> heldout (top {cfg.top_k} + baseline) -> test (winner + baseline)",
        f"seeds: tuning {ctx.inputs.tuning_seeds}, held-out {ctx.inputs.heldout_seeds}, test {ctx.inputs.test_seeds}",
        f"steps per seed job: {p.trial_steps} (default {ctx.inputs.default_steps}), eval every {p.eval_every} "
        f"({p.evals_per_job} evaluations x {p.eval_episodes} episodes, ~{p.eval_share:.0%} of a job)",
        f"seed jobs: {p.seed_jobs} tuning + {(cfg.top_k + 1) * cfg.seeds} held-out + {TEST_CONFIGS * cfg.seeds} test",
        f"estimated time: {est_s / 60:.1f} min at ~{p.steps_per_s:,.0f} steps/s per worker (nominal) "
        f"of a {cfg.budget_hours * 60:.1f} min budget",
        f"run dir: {ctx.store.run_dir}",
    ])


def ladder_text(ctx: RunContext) -> list[str]:
    """The --dry-run lines of the ladder: rungs with their estimated time, entrants, the re-check reserve."""
    lad = ctx.plan.ladder_fields()
    rungs = lad["rungs"]
    per = [f"{r:,} ({s:.0f} s)" for r, s in zip(rungs, lad["rung_s"])]
    return [
        f"ladder: eta {lad['eta']}, rungs (steps per seed; worker-seconds of one config's climb, all seeds): "
        + " -> ".join(per),
        f"  ~{lad['entering']} configs enter the lowest rung, ~{lad['top_configs']} reach the top (at "
        f"{lad['typical_cost']:.1f}x the prior's cost per step, from the space's network sizes and epochs); "
        f"the lowest rung is at least {lad['bottom']:,} steps (where the prior left its starting score)",
        *([f"  configs dearer than {lad['cost_cap']:.2f}x the prior per step are not admitted (the budget's "
           f"ladder cannot select among them; {lad['admissible_share']:.0%} of the space's network/epoch/minibatch "
           f"combinations fit; the space's mean is {lad['space_cost']:.1f}x)"] if lad.get("cost_cap") else []),
        f"  re-checks at the top rung ({rungs[-1]:,} steps): {lad['heldout_configs']} configs + baseline on "
        f"held-out seeds, winner + baseline on test seeds ({TEST_CONFIGS} configs): ~{lad['reserve_s'] / 60:.1f} min "
        f"reserved; tuning ~{lad['tuning_s'] / 60:.1f} min",
        *([f"  --trial-steps pins the top rung; at this (nominal) speed not one config fits beside its re-checks: "
           f"the run refuses it if calibration measures the same (the longest that fits: "
           f"{'~' + format(lad['longest_fit'], ',') if lad['longest_fit'] else 'none'})"]
          if lad.get("pinned") and lad["entering"] < 1 else []),
    ]


def _population_text(ctx: RunContext) -> str:
    """The --dry-run summary of a pbt run (training length from the nominal speed; the run measures it)."""
    from automl.run import pbt

    cfg, inputs = ctx.cfg, ctx.inputs
    total, ready = pbt.plan_steps(ctx)
    names = [p.name for p in pbt.searched_specs(inputs.spec)] + [
        f"reward.{k}" for k in pbt.searched_terms(inputs.terms)]
    length = " (--trial-steps)" if cfg.trial_steps else " (fitted to the budget after every ready point)"
    return "\n".join([
        f"env: {cfg.env}   space: {inputs.space_path} ({inputs.spec.search_space_id})",
        f"mode: pbt   population: {cfg.population} in {pbt.groups(cfg)} group(s)   "
        f"quantile: {cfg.quantile}   perturb: {','.join(map(str, cfg.perturb))}   resample_p: {cfg.resample_p}",
        f"searched while training: {', '.join(names) or 'nothing (the space searches no such value)'}",
        f"member seeds: {inputs.base_seed}..{inputs.base_seed + cfg.population - 1}   test seeds: {inputs.test_seeds}",
        f"steps per member: {total}{length}, ready every {ready} ({total // ready} ready points)",
        "then: the winner's schedule and the baseline replayed on the test seeds",
        f"budget: {cfg.budget_hours * 60:.1f} min   run dir: {ctx.store.run_dir}",
    ])


# ---- the phases ------------------------------------------------------------------------------
def phases(ctx: RunContext) -> Iterable[Phase]:
    """The run's phases in order: the tuning phases of the mode's ``stages`` (on the fidelity ladder when the
    run climbs one), then held-out, then test; pbt's population, then its replay."""
    if ctx.mode.trains_population:
        from automl.run.pbt import PBTPhase, ReplayPhase

        return [PBTPhase(), ReplayPhase()]
    import itertools

    from automl.run.phases import TuningPhase, rechecks

    mode = ctx.mode
    stages = mode.stages(ctx.plan, ctx.cfg, bool(ctx.inputs.terms))
    if ctx.ladder is not None:  # the fidelity ladder: the stages admit configs to one ladder, then more cycles
        from automl.run.ladder_phase import ladder_phases

        return itertools.chain(ladder_phases(ctx, stages, extends=not ctx.cfg.max_trials,
                                             extends_when_pruned=mode.extends_when_pruned), rechecks())
    tuning = [TuningPhase(s.kind, s.cycle, s.quota, owner=ctx.searches[s.kind], last=i == len(stages) - 1,
                          extends_when_pruned=mode.extends_when_pruned) for i, s in enumerate(stages)]
    return [*tuning, *rechecks()]
