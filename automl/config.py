"""Frozen run/space dataclasses and YAML validation. Imports neither torch nor optuna."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PPOSetup:
    """Everything needed to build one SB3 PPO run, converted from search coordinates."""

    ppo_kwargs: dict = field(default_factory=dict)  # SB3 PPO(...) kwargs, plain picklable values
    num_envs: int = 8
    n_timesteps: int | None = None
    normalize: bool = False
    learning_rate_schedule: str = "constant"  # constant | linear
    seed: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
