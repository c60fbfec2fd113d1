"""Several objectives and constraints on them (issue 17, seed 003): parsing, per-config values, the
Pareto front, the knee and constraint violations. Pure Python, no Optuna.

``--metrics success_rate:max,train_time_s:min`` names metrics of the per-seed results; each is
aggregated over a config's seeds by the run's ``--objective`` rule (mean, iqm, lcb, mean-std), with
the sign flipped for ``min`` so that "lower bound" and "risk" stay pessimistic. ``--constraint
"success_rate >= 0.8"`` is one comparison between expressions of those metrics, read by the safe
evaluator of the space constraints (``automl.core.constraints``); its violation is how far the
config is on the wrong side (0 when it holds), Optuna's ``constraints_func`` convention.
"""
from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from automl.core import constraints as safe
from automl.core.errors import AutoMLError

# metric -> the per-seed field it reads (the state file's seed entries)
METRICS = {
    "episode_reward_mean": "episode_reward_mean",  # the task's true metric (success rate on navigation)
    "success_rate": "success_rate",
    "reference_return": "reference_return",
    "shaped_return": "shaped_return",
    "train_time_s": "wall_s",                      # the seed job's wall time (a batch's, for batched seeds)
    "wall_s": "wall_s",
    "params": "params",                            # the policy's parameter count
    "peak_memory_mb": "peak_memory_mb",            # the seed job's peak memory: CUDA max allocated, else peak RSS
    "steps": "steps",
}
STEPS_TO = re.compile(r"^steps_to_(-?\d+(?:\.\d+)?)$")  # steps_to_0.5: first evaluation at or above 0.5
DIRECTIONS = ("max", "min")
_ALLOWED = ", ".join(METRICS) + ", steps_to_<threshold>"


@dataclass(frozen=True)
class Objective:
    name: str
    direction: str  # max | min

    @property
    def sign(self) -> float:
        return 1.0 if self.direction == "max" else -1.0


def parse_metrics(text: str | None, *, where: str = "--metrics") -> tuple[Objective, ...]:
    """``name:max|min,...`` (a name alone is ``max``); AutoMLError names the allowed metrics."""
    if not text:
        return ()
    out: list[Objective] = []
    for part in str(text).split(","):
        name, _, direction = part.strip().partition(":")
        direction = direction or "max"
        if name not in METRICS and not STEPS_TO.match(name):
            raise AutoMLError(f"{where}: unknown metric {name!r} (allowed: {_ALLOWED})")
        if direction not in DIRECTIONS:
            raise AutoMLError(f"{where}: {part.strip()!r}: direction {direction!r} (allowed: max, min)")
        if name in (o.name for o in out):
            raise AutoMLError(f"{where}: {name!r} named twice (allowed: each metric once)")
        out.append(Objective(name, direction))
    if len(out) < 2:
        raise AutoMLError(f"{where}: {text!r} names one metric (allowed: two or more, e.g. "
                          "success_rate:max,train_time_s:min; one objective is --objective)")
    return tuple(out)


@dataclass(frozen=True)
class Constraint:
    text: str
    tree: ast.Expression
    metrics: tuple[str, ...]

    def violation(self, values: Mapping[str, float | None]) -> float:
        """How far ``values`` are on the wrong side (0.0 when the constraint holds; inf without a value)."""
        for m in self.metrics:
            value = values.get(m)
            if value is None or not math.isfinite(value):
                return math.inf
        cmp = self.tree.body
        assert isinstance(cmp, ast.Compare)  # parse_constraint builds a Constraint around one comparison only
        resolve: dict[str, str] = {}
        ctx = (dict(values), resolve, self.text, "--constraint")
        left, right = safe._eval(cmp.left, ctx), safe._eval(cmp.comparators[0], ctx)
        op = type(cmp.ops[0])
        gap = right - left if op in (ast.GtE, ast.Gt) else left - right
        if op in (ast.Gt, ast.Lt) and gap == 0:
            return 1e-12  # on the boundary of a strict inequality
        return max(0.0, float(gap))


def parse_constraint(text: str, *, any_metric: bool = False, where: str = "--constraint") -> Constraint:
    """``success_rate >= 0.8`` (one <, <=, > or >= between expressions of metrics); ``any_metric``: the
    names are a user objective's own metrics (the Python API), not the per-seed ones of a run."""
    tree = safe.parse(text, where=where)
    body = tree.body
    if not (isinstance(body, ast.Compare) and len(body.ops) == 1
            and isinstance(body.ops[0], (ast.Lt, ast.LtE, ast.Gt, ast.GtE))):
        raise AutoMLError(f"{where}: {text!r} is not one comparison (allowed: one <, <=, > or >= between "
                          f"expressions of metrics, e.g. 'success_rate >= 0.8')")
    names = safe.names(tree)
    bad = [] if any_metric else [n for n in names if n not in METRICS and not STEPS_TO.match(n)]
    if bad or not names:
        allowed = "names of the metrics the objective returns" if any_metric else _ALLOWED
        raise AutoMLError(f"{where}: {text!r} names {bad[0] if bad else 'no metric'!r} (allowed: {allowed})")
    return Constraint(text.strip(), tree, tuple(names))


def seed_value(seed: Mapping, metric: str) -> float | None:
    """One seed's value of ``metric`` (None when it has none); ``steps_to_<x>``: the steps of its first
    evaluation at or above x, or its trained steps when it never got there (censored: at least that)."""
    m = STEPS_TO.match(metric)
    if m:
        threshold = float(m.group(1))
        evals = seed.get("evals") or []
        hit = next((s for s, v in evals if v is not None and v >= threshold), None)
        return float(hit if hit is not None else seed.get("steps") or 0) if evals or seed.get("steps") else None
    v = seed.get(METRICS[metric])
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def config_values(seeds: Sequence[Mapping], metrics: Sequence[str], objective: str, risk: float,
                  directions: Mapping[str, str] | None = None) -> dict[str, float | None]:
    """Each metric over a config's complete seeds, aggregated by ``objective`` in its direction (a
    ``min`` metric is negated, aggregated and negated back, so lcb and mean-std stay pessimistic)."""
    from automl.core.scoring import objective_value

    out: dict[str, float | None] = {}
    for name in metrics:
        sign = -1.0 if (directions or {}).get(name) == "min" else 1.0
        vals = [v for s in seeds if s.get("state", "complete") == "complete"
                for v in [seed_value(s, name)] if v is not None]
        out[name] = sign * objective_value([sign * v for v in vals], objective, risk=risk) if vals else None
    return out


def dominates(a: Sequence[float], b: Sequence[float], objectives: Sequence[Objective]) -> bool:
    """``a`` is at least as good as ``b`` everywhere and better somewhere."""
    better = False
    for x, y, o in zip(a, b, objectives):
        x, y = o.sign * x, o.sign * y
        if x < y:
            return False
        better |= x > y
    return better


def pareto_front(points: Sequence[Sequence[float]], objectives: Sequence[Objective]) -> list[int]:
    """Indices of the non-dominated points (duplicates of a front point are all on the front)."""
    return [i for i, p in enumerate(points)
            if not any(dominates(q, p, objectives) for j, q in enumerate(points) if j != i)]


def knee(points: Sequence[Sequence[float]], objectives: Sequence[Objective]) -> int:
    """The front point closest to the ideal point after scaling each objective to [0, 1] over the front
    (the compromise solution); ties go to the earlier point. ``points`` should be a front."""
    if not points:
        raise ValueError("knee: no points")
    return min(range(len(points)), key=lambda i: (_ideal_gap(points, objectives, i), i))


def pick(points: Sequence[Sequence[float]], objectives: Sequence[Objective], rule: str) -> int:
    """``knee`` or the name of one objective (its best point; ties by the knee rule)."""
    if rule == "knee":
        return knee(points, objectives)
    d = next(i for i, o in enumerate(objectives) if o.name == rule)
    best = max(objectives[d].sign * p[d] for p in points)
    tied = [i for i, p in enumerate(points) if objectives[d].sign * p[d] == best]
    return tied[knee([points[i] for i in tied], objectives)]


def check_pick(rule: str, objectives: Sequence[Objective]) -> None:
    """``--pick`` must be knee or one of the objectives."""
    allowed = ["knee", *(o.name for o in objectives)]
    if rule not in allowed:
        raise AutoMLError(f"--pick: {rule!r} (allowed: {', '.join(allowed)})")


@dataclass(frozen=True)
class Selection:
    """How a run with --metrics and/or --constraint chooses: objectives, constraints and the pick rule."""

    objectives: tuple[Objective, ...] = ()
    constraints: tuple[Constraint, ...] = ()
    pick: str = "knee"

    @property
    def names(self) -> list[str]:
        """Every metric the objectives and constraints read, once each."""
        return list(dict.fromkeys([*(o.name for o in self.objectives), *(m for c in self.constraints for m in c.metrics)]))

    def evaluate(self, seeds: Sequence[Mapping], objective: str, risk: float,
                 true_value: float | None = None) -> dict:
        """A config's ``objectives`` (per metric), ``violations`` (per constraint) and ``feasible``; the
        true metric (``episode_reward_mean``) takes ``true_value``, the run's score with failed seeds as worst."""
        directions = {o.name: o.direction for o in self.objectives}
        values = {k: (float(f"{v:.6g}") if v is not None else None)  # 0.68, not 0.6799999999999999
                  for k, v in config_values(seeds, self.names, objective, risk, directions).items()}
        if true_value is not None and "episode_reward_mean" in values:
            values["episode_reward_mean"] = true_value
        violations = {c.text: c.violation(values) for c in self.constraints}
        return {"objectives": {o.name: values[o.name] for o in self.objectives} if self.objectives else None,
                "violations": violations or None, "feasible": all(v == 0.0 for v in violations.values())}

    def order(self, points: Sequence[Sequence[float]]) -> list[int]:
        """The Pareto front of ``points``: the pick first, then the rest by closeness to the ideal point."""
        front = pareto_front(points, self.objectives)
        if not front:
            return []
        sub = [points[i] for i in front]
        first = pick(sub, self.objectives, self.pick)
        rest = sorted((i for i in range(len(sub)) if i != first), key=lambda i: (_ideal_gap(sub, self.objectives, i), i))
        return [front[i] for i in [first, *rest]]


def _ideal_gap(points, objectives, i) -> float:
    """Point i's distance to the ideal point (1, ..., 1) after scaling each objective to [0, 1] over ``points``."""
    lo = [min(o.sign * p[d] for p in points) for d, o in enumerate(objectives)]
    hi = [max(o.sign * p[d] for p in points) for d, o in enumerate(objectives)]
    return math.sqrt(sum(((hi[d] - o.sign * points[i][d]) / (hi[d] - lo[d])) ** 2
                         for d, o in enumerate(objectives) if hi[d] > lo[d]))


def selection(metrics: str | None, constraints: Sequence[str], pick_rule: str) -> Selection | None:
    """The run's Selection from its flags (None: one objective, no constraints)."""
    objectives = parse_metrics(metrics)
    parsed = tuple(parse_constraint(c) for c in constraints)
    if objectives:
        check_pick(pick_rule, objectives)
    elif pick_rule != "knee":
        raise AutoMLError(f"--pick: {pick_rule!r} needs --metrics (allowed: knee without --metrics)")
    return Selection(objectives, parsed, pick_rule) if objectives or parsed else None
