"""--mode joint: one search over the PPO hyperparameters and the reward weights together.

One joint phase trains as many configs as stage mode's phases would (HP trials and reward generations
together), proposed by ``automl.search.joint.JointSearch``; its first proposal of a new run is the
baseline. Without --pruner it prunes with Hyperband (BOHB-style multi-fidelity search), and the time
pruning saves goes to more configs.
"""
from __future__ import annotations

from automl.core.record import Kind
from automl.run.modes.base import Mode, Stage, refuse

JOINT_PRUNER = "hyperband"  # without --pruner: BOHB-style (the sampler plus Hyperband over evaluations)


class JointMode(Mode):
    """HPs and reward weights in one sampler."""

    name = "joint"
    summary = "one search over HPs and reward weights together"
    default_pruner = JOINT_PRUNER
    baseline_owner = Kind.JOINT
    extends_when_pruned = True
    joint_search = True

    def check(self, cfg) -> None:
        if cfg.search_method == "grid":
            refuse("--search-method", "grid cannot enumerate the continuous reward weights of --mode joint "
                   "(allowed: random, bayesian, tpe, cmaes, qmc, hyperband)")

    def tuning_configs(self, cfg, has_terms: bool, population: int) -> int:
        cycles = self.cycles(cfg)
        configs = cfg.hp_trials * cycles + (population * cycles if has_terms else 0)
        return min(configs, cfg.max_trials) if cfg.max_trials else configs

    def stages(self, plan, cfg, has_terms: bool) -> list[Stage]:
        quota = plan.cycles * (plan.hp_trials + (plan.population if has_terms else 0))
        return [Stage(Kind.JOINT, 1, min(quota, cfg.max_trials or 10**9))] if quota else []


MODE = JointMode()
