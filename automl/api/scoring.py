"""What a trial's objective returned, as the study is told it: one value or several (``directions``), the
metrics kept, and the violations of ``constraints`` (Optuna's ``constraints_func`` reads them), on the same
code the CLI's --metrics/--constraint use (automl.core.objectives, automl.search.studies.violations_of).

    SearchConfig(directions=["minimize", "minimize"], metrics=["validation_loss", "training_time"],
                 constraints=["memory_usage <= 2048"], sampler="nsga2")

An objective returns a tuple/list (in ``metrics`` order) or a dict holding every name in ``metrics``
(and any name a constraint reads). The Pareto front of the feasible complete trials is
``SearchResult.best_trials``, the knee of the front first (automl.core.objectives.Selection.order).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from automl.core import objectives as core
from automl.core.errors import AutoMLError
from automl.core.values import plain as _plain
from automl.search import studies


def _plain_value(value: Any) -> Any:
    return _plain(value, non_finite=None, other=repr)


def constraint_texts(raw: Any, where: str = "SearchConfig: constraints") -> tuple[str, ...]:
    """Strings as given, or the seed's {metric: (min, max)} (None for no bound) as two comparisons."""
    if raw is None:
        return ()
    if isinstance(raw, str):
        raw = [raw]
    if isinstance(raw, Mapping):
        out = []
        for name, pair in raw.items():
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise AutoMLError(f"{where}: {name}: {pair!r} (allowed: (min, max), None for no bound)")
            lo, hi = pair
            out += ([f"{name} >= {float(lo)!r}"] if lo is not None else []) + \
                ([f"{name} <= {float(hi)!r}"] if hi is not None else [])
        return tuple(out)
    if not isinstance(raw, (list, tuple)) or not all(isinstance(c, str) for c in raw):
        raise AutoMLError(f"{where}: {raw!r} (allowed: a list of 'metric <= value' strings or {{metric: (min, max)}})")
    return tuple(c.strip() for c in raw)


def split_value(out: Any, metric: str) -> tuple[float, dict]:
    """(value to optimize, metrics) from an objective's float or dict of metrics."""
    if isinstance(out, Mapping):
        if metric not in out:
            raise AutoMLError(f"objective: returned metrics {', '.join(map(str, out)) or 'none'} without "
                              f"{metric!r} (allowed: a float, or a dict holding SearchConfig.metric)")
        metrics = _plain_value(dict(out))
        out = out[metric]
    else:
        metrics = None
    try:
        value = float(out)
    except (TypeError, ValueError):
        raise AutoMLError(f"objective: returned {type(out).__name__} (allowed: a number or a dict of numbers)") from None
    return value, metrics if metrics is not None else {metric: _plain_value(value)}


@dataclass(frozen=True)
class Scoring:
    """How a SearchConfig scores a trial: objective names and directions, constraints."""

    names: tuple[str, ...]
    directions: tuple[str, ...]  # maximize | minimize, one per name
    constraints: tuple[core.Constraint, ...] = ()

    @classmethod
    def of(cls, metric: str, directions: Sequence[str], metrics: Sequence[str], constraints: Sequence[str]) -> Scoring:
        """From a SearchConfig's fields (already checked)."""
        names = tuple(metrics) or ((metric,) if len(directions) <= 1 else
                                   tuple(f"objective_{i}" for i in range(len(directions))))
        parsed = tuple(core.parse_constraint(c, any_metric=True, where="SearchConfig: constraints") for c in constraints)
        return cls(names, tuple(directions), parsed)

    @property
    def multi(self) -> bool:
        """Several objectives: a multi-objective study (no pruning: Optuna prunes one objective only)."""
        return len(self.names) > 1

    @property
    def objectives(self) -> tuple[core.Objective, ...]:
        return tuple(core.Objective(n, "max" if d == "maximize" else "min") for n, d in zip(self.names, self.directions))

    def split(self, out: Any) -> tuple[list[float], dict]:
        """(the values to tell, the metrics to keep) from an objective's number, sequence or dict."""
        if isinstance(out, Mapping):
            missing = [n for n in self.names if n not in out]
            if missing:
                raise AutoMLError(f"objective: returned metrics {', '.join(map(str, out)) or 'none'} without "
                                  f"{missing[0]!r} (allowed: a dict holding {', '.join(self.names)})")
            metrics, raw = {str(k): _plain_value(v) for k, v in out.items()}, [out[n] for n in self.names]
        elif isinstance(out, (list, tuple)) and not isinstance(out, str):
            if len(out) != len(self.names):
                raise AutoMLError(f"objective: returned {len(out)} values for {len(self.names)} objectives "
                                  f"({', '.join(self.names)}) (allowed: one value per direction)")
            raw, metrics = list(out), None
        elif len(self.names) == 1:
            raw, metrics = [out], None
        else:
            raise AutoMLError(f"objective: returned {type(out).__name__} (allowed: {len(self.names)} values, a tuple "
                              f"or a dict holding {', '.join(self.names)})")
        try:
            values = [float(v) for v in raw]
        except (TypeError, ValueError):
            raise AutoMLError(f"objective: returned {raw!r} (allowed: numbers)") from None
        return values, metrics if metrics is not None else {n: _plain_value(v) for n, v in zip(self.names, values)}

    def violations(self, metrics: Mapping) -> list[float]:
        """Each constraint's violation (0 when it holds; inf when the metric is missing), Optuna's convention."""
        return [c.violation({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
                for c in self.constraints]

    def constraints_func(self):
        """Optuna's constraints_func for these constraints (None without any)."""
        return studies.violations_of(len(self.constraints)) if self.constraints else None
