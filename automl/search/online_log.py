"""Online tuning across runs and logs: ``replay_plan`` (a mutations log as the actions to re-apply, in
order) and ``evolve_recipe`` (learned priors carried to the next run). Pure functions of the logs the
tuner (``automl.search.online``) writes.
"""
from __future__ import annotations

import math

from automl.core.tune_recipe import Recipe


def _mean(v: list[float]) -> float:
    return sum(v) / len(v)


REWINDS = ("rollback", "control")  # actions after which training goes back to an earlier step


def replay_plan(log: list[dict]) -> list[tuple[int, list[dict]]]:
    """(step, actions) in the order they happened, reproducing a mutations log: every applied mutation at
    its step, its rollback or acceptance at the step it was judged. A step can come twice (training
    re-runs it after a rollback), so the hook consumes the list in order. A branch round (the recipe's
    control ``branches``) replays as what the run became: the adopted branch's mutation applied where the
    round began and kept where it ended; a round that adopted nothing left the run unmutated."""
    plan: list[tuple[int, list[dict]]] = []

    def add(step: int, action: dict) -> None:
        if plan and plan[-1][0] == step and plan[-1][1][-1]["action"] not in REWINDS:
            plan[-1][1].append(action)
        else:
            plan.append((step, [action]))

    for e in sorted(log, key=lambda e: e.get("seq", 0)):
        if e.get("control") == "branches" or (e["event"] == "mutation" and e.get("branch")):
            if e["event"] == "segment" and e.get("mode") == "active" and e["decision"] == "accept":
                add(int(e["from_step"]), {"action": "apply", "name": e["name"], "value": e["new"], "old": e["old"]})
                add(int(e["step"]), {"action": "accept", "name": e["name"], "value": e["new"]})
            continue
        if e["event"] == "mutation" and e.get("applied"):
            action = {"action": "apply", "name": e["name"], "value": e["new"], "old": e["old"]}
        elif e["event"] == "control" and e.get("mode") == "active":
            action = {"action": "control", "name": e["name"], "value": None}
        elif e["event"] == "segment" and e.get("mode") == "active":
            accept = e["decision"] == "accept"
            if e.get("control") == "paired":
                action = {"action": "adopt" if accept else "keep_control", "name": e["name"],
                          "value": e["new"] if accept else e["old"]}
            else:
                action = {"action": "accept" if accept else "rollback", "name": e["name"],
                          "value": e["new"] if accept else e["old"]}
        else:
            continue
        add(int(e["step"]), action)
    return plan


def evolve_recipe(base: Recipe, summaries: list[dict], alpha: float = 0.3) -> Recipe:
    """Carry learned priors across runs: each actuator's prior centre moves ``alpha`` of the way toward the
    mean factor its accepted mutations used (within its bounds); actuators never accepted keep theirs."""
    import dataclasses

    out = []
    for m in base.mutations:
        factors = [f for s in summaries for f in ((s.get("families") or {}).get(m.name) or {}).get("accepted_factors", [])
                   if isinstance(f, (int, float)) and math.isfinite(f)]
        if not factors or m.mode != "mult":
            out.append(m)
            continue
        centre = m.prior_center if m.prior_center is not None else math.sqrt(m.bounds[0] * m.bounds[1])
        target = math.exp(_mean([math.log(f) for f in factors]))
        new = math.exp((1 - alpha) * math.log(centre) + alpha * math.log(target))
        out.append(dataclasses.replace(m, prior_center=min(max(new, m.bounds[0]), m.bounds[1])))
    return dataclasses.replace(base, mutations=tuple(out))
