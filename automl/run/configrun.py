"""The data the scheduler and the run share: one config's run over its seeds (``ConfigRun``), what its seed
jobs need (``SeedJobs``), the per-seed record a finished job leaves (``seed_record``), a config's final state
(``config_state``) and the events the scheduler hands back (``SeedEnded``, ``ConfigEnded``, ``JobLost``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from automl.core.record import State
from automl.exec.executor import Lost

SEED_FIELDS = ("seed", "state", "episode_reward_mean", "success_rate", "shaped_return",
               "reference_return", "terms", "steps", "wall_s", "params", "evals", "stop_reason", "reason",
               "resumed_from", "peak_memory_mb", "train_s", "eval_s")


@dataclass
class ConfigRun:
    """One config (HPs + reward weights) trained on several seeds, tracked until scored."""

    trial: Any                        # an optuna.Trial (seed_pool's stand-in without a study)
    config_id: str
    kind: str
    cycle: int
    params: dict[str, Any]            # searchable values (canonical names, decoded)
    weights: dict[str, float]
    seeds: list[int]
    train_params: dict[str, Any]      # fixed + searchable: what train_seed receives
    steps: int
    sampler: tuple[Any, int] | None = None   # (sampler study, sampler trial id)
    results: dict[int, dict] = field(default_factory=dict)
    pending: list[int] = field(default_factory=list)
    running: dict[str, Any] = field(default_factory=dict)   # job_id -> seed (or seeds of a batch)
    reports: dict[int, dict[int, float]] = field(default_factory=dict)
    pruned: bool = False
    reported: set[int] = field(default_factory=set)
    batched: bool = False             # all seeds in one job (torch trainer, seeds as a batch axis)
    schedule: list | None = None      # a replayed PBT schedule (torch trainer): values changed at given steps
    rung: int | None = None           # a fidelity ladder's climb: the rung it trains to (``steps``), continuing
    horizon: int | None = None        # ... as a prefix of a run of this many steps (the ladder's top rung)
    timeout_s: float | None = None    # a seed job's timeout, when the caller estimated it (else the scheduler's)
    carried: set[int] = field(default_factory=set)  # seeds finished before a resume: they report no more

    def __post_init__(self):
        self.pending = [s for s in self.seeds if s not in self.results]
        # a carried seed's recorded learning curve (evals[k] = [steps, value]) stands in for its reports;
        # past its curve (or without one) the pruner goes on with the seeds that still report
        self.carried = set(self.results)
        for s, record in self.results.items():
            for k, (_, value) in enumerate(record.get("evals") or []):
                self.reports.setdefault(k, {})[s] = float(value)

    def climb_rung(self) -> int:
        """The rung a fidelity ladder's climb trains to (``rung`` of a climb)."""
        if self.rung is None:
            raise ValueError(f"config {self.config_id} is not a ladder climb")
        return self.rung

    @property
    def finished(self) -> bool:
        """All seeds done (or dropped after pruning)."""
        return not self.pending and not self.running


def seed_record(result: dict) -> dict:
    """The compact per-seed entry kept in the state file and the study."""
    out = {k: result[k] for k in SEED_FIELDS if k in result and result[k] is not None}
    for k in ("wall_s", "train_s", "eval_s", "episode_reward_mean", "success_rate", "shaped_return", "reference_return"):
        if isinstance(out.get(k), float):
            out[k] = round(out[k], 4 if k not in ("wall_s", "train_s", "eval_s") else 2)
    if isinstance(out.get("evals"), list):  # the learning curve: [steps, true metric] (steps_to_<x> reads it)
        out["evals"] = [[int(st), round(float(v), 4)] for st, v in out["evals"]]
    if isinstance(out.get("terms"), dict):
        out["terms"] = {n: round(float(v), 4) for n, v in out["terms"].items()
                        if isinstance(v, (int, float))}
    return out


def config_state(c: ConfigRun) -> str:
    """A config's final state from its seeds: pruned, stopped_at_deadline, failed or complete."""
    states = [c.results[s]["state"] for s in c.seeds if s in c.results]
    if c.pruned or State.PRUNED in states:
        return State.PRUNED
    if State.STOPPED_AT_DEADLINE in states or len(states) < len(c.seeds):
        return State.STOPPED_AT_DEADLINE
    if states and all(s == State.FAILED for s in states):
        return State.FAILED
    return State.COMPLETE


@dataclass(frozen=True)
class SeedJobs:
    """What a config's seed jobs need, handed to the scheduler with the config (``Scheduler.add``): the
    trainer function and each seed's arguments, or one job of all seeds (the torch trainer's seed axis).
    The scheduler adds what only it knows at submission: the deadline of the job's phase (the tuning
    deadline for tuning configs, the hard deadline for re-checks; unless ``own_deadline``: the arguments
    carry theirs) and the job's timeout."""

    fn: Callable
    seed_kwargs: dict[int, dict]               # seed -> the trainer's arguments (the config's queued seeds)
    batch_fn: Callable | None = None           # one job of the config's queued seeds when set
    batch_kwargs: dict | None = None           # ... its arguments; "seeds" (and "save_paths") filled at submission
    save_paths: dict[int, str] | None = None   # seed -> where a batch saves that seed's model
    own_deadline: bool = False

    @property
    def batched(self) -> bool:
        return self.batch_fn is not None


@dataclass(frozen=True)
class SeedEnded:
    """A seed of ``config`` ended with ``record`` (already in ``config.results``)."""

    config: ConfigRun
    seed: int
    record: dict


@dataclass(frozen=True)
class ConfigEnded:
    """Every seed of ``config`` ended (or was dropped): it is no longer active."""

    config: ConfigRun


@dataclass(frozen=True)
class JobLost:
    """A seed job of ``config`` was lost with its worker or node; the executor runs it once more."""

    config: ConfigRun
    lost: Lost


Event = SeedEnded | ConfigEnded | JobLost
