"""Keras-Tuner-style ``hp``: define-by-run hyperparameters over an Optuna trial.

    def build(hp):
        return {"learning_rate": hp.Float("learning_rate", 1e-4, 1e-2, sampling="log"),
                "policy_hidden_layer_sizes": hp.Choice("net", [[64, 64], [128, 128]])}

Each call declares one parameter (validated like SearchSpace) and draws it through automl.search.space
on the wrapped trial; without a trial it returns the stored value, else the default.
"""
from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import optuna

from automl.search import space
from automl.api.search_space import SearchSpace
from automl.core.config import ParamSpec, SpaceSpec
from automl.core.errors import AutoMLError
from automl.core.names import thaw

SAMPLINGS = ("linear", "log", "reverse_log")


class HyperParameters:
    """hp.Float / hp.Int / hp.Choice / hp.Boolean / hp.Fixed; ``values`` holds what was drawn."""

    def __init__(self, trial: optuna.Trial | None = None, values: Mapping | None = None,
                 timeout: float | None = None):
        self.trial = trial
        self.values: dict[str, Any] = dict(values or {})
        self.specs: dict[str, ParamSpec] = {}
        self._deadline = time.time() + timeout if timeout else None

    @classmethod
    def from_values(cls, values: Mapping) -> HyperParameters:
        """Fixed values (e.g. the best trial's) that build(hp) reads back."""
        return cls(values=values)

    def _draw(self, spec: ParamSpec, default: Any) -> Any:
        self.specs[spec.name] = spec
        if self.trial is not None:
            value = space.suggest(self.trial, SpaceSpec("hp", "<HyperParameters>", params=(spec,)))[spec.name]
        elif spec.name in self.values:
            value = self.values[spec.name]
        elif default is not None:
            value = default
        else:
            value = spec.low if spec.type != "categorical" else thaw(spec.choices[0])
        self.values[spec.name] = value
        return value

    @staticmethod
    def _log(name: str, sampling: str) -> bool:
        if sampling not in SAMPLINGS:
            raise AutoMLError(f"HyperParameters: {name}: sampling {sampling!r} (allowed: {', '.join(SAMPLINGS)})")
        return sampling != "linear"

    def Float(self, name: str, min_value: float, max_value: float, step: float | None = None,
              sampling: str = "linear", default: float | None = None) -> float:
        """A float in [min_value, max_value] (sampling='log' for log-uniform)."""
        log = self._log(name, sampling)
        spec = SearchSpace("hp").add_float(name, min_value, max_value, log=log, step=step).spec.params[0]
        return self._draw(spec, default)

    def Int(self, name: str, min_value: int, max_value: int, step: int = 1, sampling: str = "linear",
            default: int | None = None) -> int:
        """An integer in [min_value, max_value] on `step`."""
        log = self._log(name, sampling)
        spec = SearchSpace("hp").add_int(name, min_value, max_value, step=step, log=log).spec.params[0]
        return self._draw(spec, default)

    def Choice(self, name: str, values: list, ordered: bool | None = None, default: Any = None) -> Any:
        """One of `values` (numbers, strings, bools or lists such as layer sizes)."""
        spec = SearchSpace("hp").add_categorical(name, list(values)).spec.params[0]
        return self._draw(spec, default)

    def Boolean(self, name: str, default: bool = False) -> bool:
        """True or False."""
        return self.Choice(name, [True, False], default=default)

    def Fixed(self, name: str, value: Any) -> Any:
        """A constant recorded with the trial's values (not searched)."""
        self.values[name] = value
        return value

    def get(self, name: str) -> Any:
        """The value drawn for `name`."""
        if name not in self.values:
            raise AutoMLError(f"HyperParameters: {name!r} not drawn yet (allowed: {', '.join(self.values) or 'none'})")
        return self.values[name]

    def __getitem__(self, name: str) -> Any:
        return self.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self.values

    def __repr__(self) -> str:
        return f"HyperParameters({self.values!r})"

    def space(self) -> SpaceSpec:
        """The parameters declared so far, as a SpaceSpec (GridSearch enumerates it)."""
        return SpaceSpec("hp", "<HyperParameters>", params=tuple(self.specs.values()))

    def report(self, value: float, step: int) -> None:
        """Report an intermediate value of this trial; raises optuna.TrialPruned when the pruner stops it."""
        if self.trial is None:
            return
        if not math.isfinite(float(value)):
            return  # Optuna would store nothing useful; the final value decides the trial's fate
        self.trial.report(float(value), int(step))
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step}")

    @property
    def deadline(self) -> float | None:
        """time.time() by which this trial should stop (timeout_per_trial), or None."""
        return self._deadline
