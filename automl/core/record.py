"""ConfigRecord: one config of a run as it is recorded — the typed form of a state-file trial.

The run keeps one per record-study trial, the state module writes ``to_dict()`` (the field names
are the contract in DESIGN.md), and ``from_dict`` reads a state-file trial back. Analysis loads a
run's configs as ConfigRecords (``number``: the trial's order in the run) and ranks them with
``metric``; the Python API's tuners keep one per PPO trial. ``Kind`` and ``State`` name the values
``kind`` and ``state`` take.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Mapping

import yaml

from automl.core.names import DEFAULT_RISK
from automl.core.scoring import objective_value
from automl.core.values import is_finite_number


class Kind(StrEnum):
    """What a config was trained for (the state file's ``kind``: each member is its YAML spelling)."""

    HP = "hp"              # an HP-phase config (the incumbent's reward weights)
    REWARD = "reward"      # a reward-phase config (the incumbent's HPs)
    JOINT = "joint"        # a joint-mode config (HPs and reward weights proposed together)
    HELDOUT = "heldout"    # a re-evaluation of a tuned config on held-out seeds
    TEST = "test"          # the chosen winner and the baseline re-trained on test seeds (selected nothing)

    RECHECKS: ClassVar[tuple[Kind, ...]]  # (set below: an enum body's values would be members)
    TUNING: ClassVar[tuple[Kind, ...]]


# Re-checks re-train tuned configs on other seeds; every other kind is a config of the search (so a
# kind added for a new mode counts as tuning everywhere: live panel, scheduler, rankings).
Kind.RECHECKS = (Kind.HELDOUT, Kind.TEST)
Kind.TUNING = tuple(k for k in Kind if k not in Kind.RECHECKS)


class State(StrEnum):
    """How a config ended (or that it has not); each member is its YAML spelling."""

    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"                        # every seed failed (crash, NaN, timeout)
    PRUNED = "pruned"
    STOPPED_AT_DEADLINE = "stopped_at_deadline"
    REJECTED = "rejected"                    # a constraint or an invalid PPO config: never trained

    SCORED: ClassVar[tuple[State, ...]]      # (set below)


State.SCORED = (State.COMPLETE, State.FAILED)  # the states that get a score (failed seeds count as worst)


def _plain_yaml(dumper: yaml.SafeDumper, member: StrEnum) -> yaml.ScalarNode:
    return dumper.represent_str(member.value)


# yaml.safe_dump writes a member as its plain spelling ("kind: hp"), whoever dumps it.
for _enum in (Kind, State):
    for _dumper in {yaml.SafeDumper, getattr(yaml, "CSafeDumper", yaml.SafeDumper)}:
        _dumper.add_representer(_enum, _plain_yaml)


def as_kind(value: Any) -> Kind | str:
    """A recorded kind as its member (an unknown spelling, e.g. from a newer automl, is kept as text)."""
    try:
        return Kind(value)
    except ValueError:
        return str(value)


def as_state(value: Any) -> State | str:
    """A recorded state as its member (an unknown spelling is kept as text)."""
    try:
        return State(value)
    except ValueError:
        return str(value)


_OPTIONAL = ("score", "reason", "heldout_of", "rung", "steps")


@dataclass
class ConfigRecord:
    """One config: its HPs and reward weights, its per-seed results and how it ended."""

    config_id: str
    kind: Kind | str
    cycle: int | None
    state: State | str
    params: dict
    reward_weights: dict = field(default_factory=dict)
    seeds: list[dict] = field(default_factory=list)  # one SeedResult-like dict per finished seed
    score: dict | None = None                          # scoring.score(): mean, iqm, ci95, n_seeds
    reason: str | None = None                          # why it was rejected
    heldout_of: str | None = None                      # the tuned config a held-out record re-checks
    rung: int | None = None                            # a fidelity ladder's config: the highest rung it finished
    steps: int | None = None                           # ... and the steps per seed there (its seeds' and score's)
    number: int | None = field(default=None, compare=False)  # order in the run (not in the state entry)

    @property
    def tuning(self) -> bool:
        """An HP or reward config (not a held-out re-check)."""
        return self.kind in Kind.TUNING

    @property
    def vector(self) -> dict[str, Any]:
        """The full search vector as the record study names it: the HPs and ``reward.<term>`` weights."""
        return {**self.params, **{f"reward.{k}": v for k, v in self.reward_weights.items()}}

    def seed_values(self, metric: str) -> list[float]:
        """Finite per-seed values of ``metric`` over the complete seeds (the aggregates ``iqm``, ``lcb`` and
        ``mean-std`` read the true metric)."""
        key = "episode_reward_mean" if metric in ("iqm", "lcb", "mean-std") else metric
        return [float(s[key]) for s in self.seeds
                if s.get("state", State.COMPLETE) == State.COMPLETE and is_finite_number(s.get(key))]

    def metric(self, metric: str, risk: float = DEFAULT_RISK) -> float | None:
        """The config's aggregate of ``metric`` (None without a finite value): ``iqm``,
        ``episode_reward_mean`` and the objectives ``lcb`` and ``mean-std`` (K = ``risk``) from the
        run's score (failed seeds counted as worst; from the complete seeds' true metric when the score
        lacks them), any other per-seed field as the mean over complete seeds."""
        score = self.score or {}
        value: float | None
        if metric in ("lcb", "mean-std"):
            values = self.seed_values("episode_reward_mean")
            if score and (metric == "lcb" or "std" in score):
                value = objective_value(score, metric, risk=risk)
            else:
                value = objective_value(values, metric, risk=risk) if values else None
        elif metric == "iqm":
            value = score.get("iqm")
        elif metric == "episode_reward_mean" and "mean" in score:
            value = score["mean"]
        else:
            values = self.seed_values(metric)
            value = sum(values) / len(values) if values else None
        return float(value) if is_finite_number(value) else None

    def to_dict(self) -> dict[str, Any]:
        """The state file's trial entry (optional fields only when set)."""
        out = {"config_id": self.config_id, "kind": self.kind, "cycle": self.cycle, "state": self.state,
               "params": self.params, "reward_weights": self.reward_weights, "seeds": self.seeds}
        out.update({k: getattr(self, k) for k in _OPTIONAL if getattr(self, k) is not None})
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], number: int | None = None) -> "ConfigRecord":
        """A state-file trial entry as a record (unknown keys are ignored)."""
        return cls(number=number, config_id=str(d["config_id"]), kind=as_kind(d.get("kind", Kind.HP)), cycle=int(d.get("cycle") or 0),
                   state=as_state(d.get("state", State.RUNNING)), params=dict(d.get("params") or {}),
                   reward_weights=dict(d.get("reward_weights") or {}), seeds=list(d.get("seeds") or []),
                   **{k: d[k] for k in _OPTIONAL if d.get(k) is not None})
