"""--mode pbt: population-based training under the run's budget, then the winner's schedule replayed.

The population and its ready points are ``automl.run.pbt`` (``PBTPhase``, then ``ReplayPhase`` on the test
seeds); this module declares the flags and the plan. There are no tuning stages: members are
not configs of a search, so no sampler proposes them and --metrics/--constraint do not apply.
"""
from __future__ import annotations

from automl.run.modes.base import Mode, Stage, refuse
from automl.run.defaults import TEST_OFFSET


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
    trains_population = True       # automl.run.mode_run: PBTPhase, then ReplayPhase; its own --dry-run text

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


MODE = PBTMode()
