"""Several objectives and constraints in a run (``--metrics``, ``--constraint``, ``--pick``).

The record study keeps one value per config (the task's metric by ``--objective``: what the pruner and the
analysis read); the sampler studies get the objectives as a vector (multi-objective TPE or NSGA-II) and
the violations through Optuna's ``constraints_func``. Each config's score carries ``objectives``,
``violations`` and ``feasible``; the ranking (``automl.run.records.ranked``) keeps feasible configs only
and, with several objectives, orders the Pareto front by ``--pick`` (the knee first by default).
"""
from __future__ import annotations

from typing import Iterable

from automl.core.objectives import Selection
from automl.core.record import ConfigRecord
from automl.core.scoring import objective_value
from automl.core.values import is_finite_number


def sampler_options(cfg) -> dict:
    """``directions`` and ``constraints_func`` for the run's sampler studies (empty for one objective)."""
    sel: Selection | None = cfg.selection
    if sel is None:
        return {}
    from automl.search import studies

    out: dict = {}
    if sel.objectives:
        out["directions"] = ["maximize" if o.direction == "max" else "minimize" for o in sel.objectives]
    if sel.constraints:
        out["constraints_func"] = studies.violations_of(len(sel.constraints))
    return out


def with_selection(cfg, score: dict | None, seeds: list[dict]) -> dict | None:
    """``score`` with the config's objectives, violations and feasibility (unchanged without a Selection)."""
    sel: Selection | None = cfg.selection
    if sel is None or not score:
        return score
    true_value = objective_value(score, cfg.objective, risk=cfg.risk)
    found = sel.evaluate(seeds, cfg.objective, cfg.risk, true_value=true_value)
    return {**score, **{k: v for k, v in found.items() if v is not None}}


def told(cfg, score: dict | None):
    """(what the sampler is told, the violations or None): the objective vector with --metrics, else the
    scalar of ``--objective``."""
    sel: Selection | None = cfg.selection
    scalar = objective_value(score, cfg.objective, risk=cfg.risk) if score else None
    if sel is None:
        return scalar, None
    violations = [score["violations"][c.text] for c in sel.constraints] if score and score.get("violations") else \
        ([float("inf")] * len(sel.constraints) if sel.constraints else None)
    if not sel.objectives:
        return scalar, violations
    objectives = (score or {}).get("objectives") or {}
    return [objectives.get(o.name) for o in sel.objectives], violations


def vector(entry: ConfigRecord, sel: Selection) -> list[float] | None:
    """The entry's objective values in --metrics order (None when one is missing)."""
    got = (entry.score or {}).get("objectives") or {}
    values = [got.get(o.name) for o in sel.objectives]
    return [float(v) for v in values if v is not None] if all(is_finite_number(v) for v in values) else None


def order(done: list[ConfigRecord], sel: Selection) -> list[ConfigRecord]:
    """Feasible configs: with several objectives the Pareto front ordered by the pick rule, then the
    dominated ones, best on the first objective first; with constraints only, the given order."""
    feasible = [e for e in done if (e.score or {}).get("feasible", True)]
    if not sel.objectives:
        return feasible
    scored = _scored(feasible, sel)
    first = [scored[i][0] for i in sel.order([v for _, v in scored])]
    on_front = {id(e) for e in first}
    return first + [e for e, _ in scored if id(e) not in on_front]


def front(entries: Iterable[ConfigRecord], sel: Selection) -> list[ConfigRecord]:
    """The Pareto front of the feasible ``entries``, the pick first."""
    scored = _scored([e for e in entries if (e.score or {}).get("feasible", True)], sel)
    return [scored[i][0] for i in sel.order([v for _, v in scored])]


def _scored(entries: list[ConfigRecord], sel: Selection) -> list[tuple[ConfigRecord, list[float]]]:
    """(entry, objective vector) of the entries that have every objective, in one order whatever order
    they came in (ties of the pick rule go to the first): best on the first objective, then by config id."""
    first = sel.objectives[0]
    scored = [(e, v) for e in entries for v in [vector(e, sel)] if v is not None]
    return sorted(scored, key=lambda ev: (-first.sign * ev[1][0], ev[0].config_id))


def summary(entries: Iterable[ConfigRecord], cfg, kinds) -> dict | None:
    """The state file's ``pareto`` section (and best.yaml's ``front``): objectives, pick rule, the front
    (config, values) and the infeasible configs with their violations."""
    sel: Selection | None = cfg.selection
    if sel is None:
        return None
    done = [e for e in entries if e.kind in kinds and e.score]
    out: dict = {"objectives": [f"{o.name}:{o.direction}" for o in sel.objectives],
                 "constraints": [c.text for c in sel.constraints], "pick": sel.pick if sel.objectives else None}
    if sel.objectives:
        out["front"] = [{"config_id": e.config_id, **((e.score or {}).get("objectives") or {})}
                        for e in front(done, sel)]
    out["infeasible"] = [{"config_id": e.config_id, "violations": (e.score or {}).get("violations")}
                         for e in done if not (e.score or {}).get("feasible", True)]
    return out
