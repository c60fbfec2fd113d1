"""--mode pbt: population-based training under the run's budget, then the winner's schedule replayed.

The population and its ready points are ``automl.run.pbt`` (``PBTPhase``, then ``ReplayPhase`` on the test
seeds); this module declares the flags, the plan and the phases. There are no tuning stages: members are
not configs of a search, so no sampler proposes them and --metrics/--constraint do not apply.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from automl.run.modes.base import Mode, Stage, refuse
from automl.run.defaults import TEST_OFFSET

if TYPE_CHECKING:
    from automl.run.context import RunContext
    from automl.run.phases import Phase


class PBTMode(Mode):
    """Members train together; a bottom member copies a top one at each ready point."""

    name = "pbt"
    summary = "population-based training: members train together and copy better ones"
    hp_phases = False
    reward_phases = False
    needs_reward_terms = False
    allows_selection = False
    checks_minimum_budget = False  # the members' training length is fitted to the budget (automl.run.pbt.plan_steps)
    climbs_ladder = False          # members continue from their own states at every ready point already

    def check(self, cfg) -> None:
        if cfg.population < 2:
            refuse("--population", f"{cfg.population} (allowed: >= 2 with --mode pbt)")
        if cfg.population > TEST_OFFSET:  # member i trains seed --seed + i: below the test seeds
            refuse("--population", f"{cfg.population} (allowed: 2..{TEST_OFFSET} with --mode pbt: the members' "
                   f"seeds --seed+0.. must not reach the test seeds --seed+{TEST_OFFSET}..)")

    def fingerprint_settings(self, cfg) -> dict:
        return {"pbt": cfg.pbt_settings()}

    def cycles(self, cfg) -> int:
        return cfg.reward_generations

    def tuning_configs(self, cfg, has_terms: bool, population: int) -> int:
        # The plan's evaluation schedule and rates are sized as for a staged run of the same flags (the
        # members' own length is automl.run.pbt.plan_steps, fitted to the measured speed).
        cycles = self.cycles(cfg)
        hp = cfg.hp_trials * cycles
        hp = min(hp, cfg.max_trials) if cfg.max_trials else hp
        return hp + (population * cycles if has_terms else 0)

    def stages(self, plan, cfg, has_terms: bool) -> list[Stage]:
        return []

    def plan_text(self, ctx: RunContext) -> str:
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

    def phases(self, ctx: RunContext) -> list[Phase]:
        from automl.run.pbt import PBTPhase, ReplayPhase

        return [PBTPhase(), ReplayPhase()]


MODE = PBTMode()
