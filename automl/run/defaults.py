"""The run's fixed choices and defaults, shared by ``RunConfig`` and the modules that need them at run time
(so those import no ``RunConfig``): trainers, executors, ladder and batching choices, the seed offsets of
held-out and test seeds, and the fingerprint keys of older runs."""
from __future__ import annotations

from automl.core.names import DEFAULT_RISK

# Optuna prunes single-objective studies only (its RFC #3450): with --metrics the pruner reads the task's
# metric at each evaluation, so it prunes only when that is the first objective
PRUNED_METRICS = ("episode_reward_mean", "success_rate")
TRAINERS = ("auto", "sb3", "torch")  # auto: torch on the batched tasks, sb3 for gymnasium ids
SEED_AXIS_TRAINERS = ("torch",)  # trainers that train all seeds of a config as one job (automl.run.trainers)
SEED_BATCHING = ("auto", "on", "off")
EXECUTORS = ("local", "ray")
LADDER = ("auto", "on", "off")  # auto: on for the modes that train configs of a fixed length (not pbt)
# Seeds: tuning --seed+0.., held-out --seed+1000.., test --seed+2000.. (so --seeds is at most 1000: three
# disjoint sets; a run directory's seeds follow from its flags, the same on every resume)
HELDOUT_OFFSET = 1000
TEST_OFFSET = 2000
FINGERPRINT_DEFAULTS = {"trainer": "sb3", "objective": "mean", "risk": DEFAULT_RISK, "pbt": None, "metrics": None,
                        "constraints": [], "ladder": False}  # what runs recorded before a key existed used


def default_trainer(env: str) -> str:
    """``--trainer auto`` for a new run: torch on the batched tasks, sb3 for gymnasium ids."""
    import envs

    return "torch" if env in envs.TASKS else "sb3"
