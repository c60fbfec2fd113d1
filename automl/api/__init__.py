"""Python API over the CLI's core: SearchEngine, SearchSpace, TrialManager, LearningRateFinder, tuners.

Importing this package imports Optuna (and torch for the LR finder and tuners only when used).
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "SearchEngine": "engine", "SearchConfig": "engine", "TrialContext": "engine",
    "SearchResult": "study_io", "TrialRecord": "study_io",
    "SearchSpace": "search_space",
    "TrialManager": "trial_manager",
    "LearningRateFinder": "lr_finder", "LRFinderConfig": "lr_finder", "LRFinderResult": "lr_finder",
    "ppo_lr_range": "ppo_lr", "with_lr_range": "ppo_lr",
    "RandomSearch": "tuners", "BayesianOptimization": "tuners", "Hyperband": "tuners", "GridSearch": "tuners",
    "Tuner": "tuners", "Objective": "tuners", "HyperParameters": "hyperparameters",
    "train_tuned": "online",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """Import the defining module on first use (the LR finder and tuners pull in torch)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'automl.api' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"automl.api.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
