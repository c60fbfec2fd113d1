"""Staged AutoML for PPO. `import automl` stays light: the Python API (automl.api) loads on first use."""
from __future__ import annotations

__all__ = _API = ("SearchEngine", "SearchConfig", "SearchSpace", "SearchResult", "TrialRecord", "TrialContext",
        "TrialManager", "LearningRateFinder", "LRFinderConfig", "LRFinderResult", "ppo_lr_range", "with_lr_range",
        "RandomSearch", "BayesianOptimization", "Hyperband", "GridSearch", "Tuner", "Objective",
        "HyperParameters")


def __getattr__(name: str):
    """Lazily export the Python API names (`from automl import SearchEngine`) without importing Optuna/torch early."""
    if name in _API:
        from automl import api

        return getattr(api, name)
    raise AttributeError(f"module 'automl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
