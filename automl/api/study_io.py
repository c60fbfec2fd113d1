"""Optuna storage for the Python API: where a study lives, and its trials as plain records.

One SQLite file per study: ``<study_dir>/<study_name>.db`` holding the study ``study_name``.
Each trial keeps what the objective saw in user_attrs: ``params`` (decoded values, lists as
lists), ``metrics`` (every metric the objective returned) and ``error`` (one line, on failure).
A trial that trained PPO (the tuners' default ``run_trial``) also keeps ``record``: its
``automl.core.record.ConfigRecord`` (per-seed results, score), the form the CLI's state file uses.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import optuna
from optuna.trial import FrozenTrial, TrialState

from automl.search import studies  # also quiets Optuna's logging and experimental warnings like the CLI
from automl.core.errors import AutoMLError
from automl.core.record import ConfigRecord
from automl.core.values import plain as _plain
from automl.search.states import state_name

DIRECTIONS = {"maximize": "maximize", "minimize": "minimize", "max": "maximize", "min": "minimize"}


@dataclass
class TrialRecord:
    """One trial: its number, the params the objective saw, its value, state and metrics."""

    number: int
    params: dict
    value: float | None
    state: str  # complete | pruned | failed | interrupted | running | waiting
    metrics: dict = field(default_factory=dict)
    trial_id: str = ""
    duration_s: float | None = None
    error: str | None = None
    intermediate: dict = field(default_factory=dict)  # step -> reported value
    config: ConfigRecord | None = None  # the PPO config record, for trials that trained PPO (or a CLI run's)
    values: list | None = None  # every objective's value (several directions); [value] with one
    violations: list | None = None  # per constraint, 0 when it holds (SearchConfig.constraints)

    @property
    def feasible(self) -> bool:
        """Every constraint holds (a trial without constraints is feasible)."""
        return not self.violations or all(v is not None and v <= 0 for v in self.violations)

    @property
    def score(self) -> float | None:
        """Keras-Tuner name of ``value``."""
        return self.value


@dataclass
class SearchResult:
    """What a search produced: the best params and value (None when nothing completed) and every trial."""

    best_params: dict | None
    best_value: float | tuple[float, ...] | None  # a tuple: one value per objective (several directions)
    trials: list[TrialRecord]
    study_name: str = ""
    storage: str = ""
    direction: str = "maximize"
    message: str = ""
    directions: list = field(default_factory=list)  # one per objective
    best_trials: list = field(default_factory=list)  # the Pareto front of feasible complete trials, knee first

    def count(self, state: str) -> int:
        """Number of trials in ``state`` (complete, pruned, failed, ...)."""
        return sum(t.state == state for t in self.trials)

    @property
    def n_complete(self) -> int:
        """Trials that finished with a finite value."""
        return self.count("complete")


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message``: what a trial's error attr and AutoMLErrors show."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


def plain(value: Any) -> Any:
    """A JSON-safe copy (user_attrs go through JSON): ``automl.core.values.plain`` with NaN/inf as None
    and any other object as its repr."""
    return _plain(value, non_finite=None, other=repr)


def db_path(study_dir: str | Path, study_name: str) -> Path:
    """The SQLite file of a study: ``<study_dir>/<study_name>.db``."""
    return Path(study_dir) / f"{study_name}.db"


def sqlite_url(path: str | Path) -> str:
    """Optuna storage URL of a SQLite file."""
    return f"sqlite:///{Path(path).resolve()}"


def _fast_sqlite(dbapi_connection, _record) -> None:
    # WAL + synchronous=NORMAL: ~5x fewer fsyncs per trial; a killed process loses nothing committed
    dbapi_connection.execute("PRAGMA journal_mode=WAL")
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")


def storage(path: str | Path) -> optuna.storages.RDBStorage:
    """The Optuna storage of a SQLite study file (WAL journal); safe when processes create it at once."""
    import sqlalchemy

    rdb = studies.rdb_storage(sqlite_url(path), engine_kwargs={"connect_args": {"timeout": 60}})
    sqlalchemy.event.listen(rdb.engine, "connect", _fast_sqlite)
    rdb.engine.dispose()  # the connection opened while creating tables predates the listener
    return rdb


def open_study(study_dir: str | Path, study_name: str, *, direction: str, sampler=None, pruner=None,
               overwrite: bool = False, directions: Sequence[str] | None = None) -> optuna.Study:
    """Create or load ``study_name`` in ``<study_dir>/<study_name>.db``; overwrite deletes it first;
    ``directions``: several objectives."""
    directions = list(directions) if directions and len(directions) > 1 else None
    Path(study_dir).mkdir(parents=True, exist_ok=True)
    url = sqlite_url(db_path(study_dir, study_name))
    try:
        rdb = storage(db_path(study_dir, study_name))
        if overwrite and study_name in (s.study_name for s in rdb.get_all_studies()):
            optuna.delete_study(study_name=study_name, storage=rdb)
        study = studies.create_or_load(rdb, study_name, sampler=sampler, pruner=pruner, direction=direction,
                                       directions=directions)
    except Exception as exc:  # storage errors come in many library types; the user needs one line
        raise AutoMLError(f"{url}: cannot open study {study_name!r} ({one_line(exc)})") from None
    stored = ", ".join(d.name.lower() for d in study.directions)
    direction = ", ".join(directions) if directions else direction
    if stored != direction:
        raise AutoMLError(f"{url}: direction: the stored study {study_name!r} is {stored}, not {direction} "
                          f"(allowed: {stored}, or overwrite/another study_name)")
    return study


def study_names(path: str | Path) -> list[str]:
    """Names of the studies in a SQLite file ([] when the file does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return [s.study_name for s in storage(path).get_all_studies()]
    except Exception as exc:
        raise AutoMLError(f"{path}: not a readable Optuna study file ({one_line(exc)})") from None


def locate(path: str | Path, study_name: str | None = None) -> tuple[Path, str]:
    """(SQLite file, study name) for a .db file or a directory of them; ``study_name`` picks one."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(path.glob("*.db")) if path.is_dir() else []
    if not files:
        raise AutoMLError(f"{path}: no study found (allowed: a <study_name>.db file or a directory holding one)")
    found = [(f, name) for f in files for name in study_names(f)]
    if study_name is not None:
        found = [(f, n) for f, n in found if n == study_name] or _missing(path, study_name, found)
    if len(found) != 1:
        names = ", ".join(sorted({n for _, n in found})) or "none"
        raise AutoMLError(f"{path}: study_name: {len(found)} studies found (allowed: pass study_name=, one of {names})")
    return found[0]


def _missing(path: Path, name: str, found: list) -> list:
    names = ", ".join(sorted({n for _, n in found})) or "none"
    raise AutoMLError(f"{path}: study_name: no study {name!r} (allowed: {names})")


def record(t: FrozenTrial) -> TrialRecord:
    """A stored trial as a TrialRecord (params as the objective saw them)."""
    attrs = t.user_attrs
    state = "interrupted" if attrs.get("interrupted") else state_name(t.state)
    duration = t.duration.total_seconds() if t.duration is not None else None
    values = list(t.values) if t.state == TrialState.COMPLETE and t.values is not None else None
    value = values[0] if values and len(values) == 1 else None
    violations = attrs.get(studies.VIOLATIONS)
    return TrialRecord(number=t.number, params=dict(attrs.get("params", t.params)), value=value, state=state,
                       metrics=dict(attrs.get("metrics") or {}), trial_id=str(attrs.get("trial_id", t.number)),
                       duration_s=duration, error=attrs.get("error"),
                       intermediate={int(k): float(v) for k, v in t.intermediate_values.items()},
                       config=ConfigRecord.from_dict(attrs["record"], number=t.number) if attrs.get("record") else None,
                       values=values, violations=list(violations) if isinstance(violations, list) else None)


def rank(records: list[TrialRecord], direction: str) -> list[TrialRecord]:
    """Best first; infeasible trials (a constraint broken) after the feasible ones; trials without a value
    (failed, pruned, ...) last, as the worst."""
    done = [r for r in records if r.value is not None and math.isfinite(r.value)]
    rest = [r for r in records if r not in done]
    ranked = sorted(done, key=lambda r: cast(float, r.value), reverse=direction == "maximize")  # done: finite values
    return [r for r in ranked if r.feasible] + [r for r in ranked if not r.feasible] + rest


def counts(records: list[TrialRecord]) -> str:
    """'3 complete, 2 pruned' style summary."""
    tally: dict[str, int] = {}
    for r in records:
        tally[r.state] = tally.get(r.state, 0) + 1
    return ", ".join(f"{n} {s}" for s, n in sorted(tally.items())) or "no trials"


def result(study: optuna.Study, storage: str = "") -> SearchResult:
    """The SearchResult of a study; with no complete (feasible) trial best_* are None and ``message`` says why.

    Several objectives: ``best_trials`` is the Pareto front of the feasible complete trials (the knee first,
    automl.core.objectives), ``best_params`` the knee's and ``best_value`` its values (a tuple).
    """
    records = [record(t) for t in study.get_trials(deepcopy=False)]
    directions = [d.name.lower() for d in study.directions]
    if len(directions) > 1:
        return _multi_result(study, records, directions, storage)
    ranked = rank(records, directions[0])
    best = ranked[0] if ranked and ranked[0].value is not None and ranked[0].feasible else None
    message = (f"best value {best.value:.6g} at trial {best.number} ({counts(records)})" if best else
               f"no complete{' feasible' if any(r.violations for r in records) else ''} trial ({counts(records)}): "
               f"nothing to rank; if all were pruned, raise min_resource or disable pruning")
    return SearchResult(best_params=dict(best.params) if best else None, best_value=best.value if best else None,
                        trials=records, study_name=study.study_name, storage=storage, direction=directions[0],
                        message=message, directions=directions, best_trials=[best] if best else [])


def _multi_result(study: optuna.Study, records: list[TrialRecord], directions: list[str], storage: str) -> SearchResult:
    from automl.core.objectives import Objective, Selection

    objectives = tuple(Objective(f"objective_{i}", "max" if d == "maximize" else "min") for i, d in enumerate(directions))
    done = [r for r in records if r.values is not None and r.feasible and all(math.isfinite(v) for v in r.values)]
    points = [cast("list[float]", r.values) for r in done]  # done keeps trials with values only
    front = [done[i] for i in Selection(objectives=objectives).order(points)] if done else []
    knee = front[0] if front else None
    message = (f"Pareto front of {len(front)} trial(s), knee at trial {knee.number} ({counts(records)})" if knee else
               f"no complete feasible trial ({counts(records)}): no Pareto front")
    return SearchResult(best_params=dict(knee.params) if knee else None,
                        best_value=tuple(cast("list[float]", knee.values)) if knee else None, trials=records,
                        study_name=study.study_name, storage=storage, direction=", ".join(directions),
                        message=message, directions=directions, best_trials=front)


def finished(study: optuna.Study) -> int:
    """Trials that count toward n_trials: finished ones, except those a killed process left behind."""
    done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return sum(t.state in done and not t.user_attrs.get("interrupted") for t in study.get_trials(deepcopy=False))


def retry_interrupted(study: optuna.Study) -> int:
    """Trials left RUNNING by a killed process: mark them failed+interrupted and enqueue their params again.

    Assumes no other process is running this study right now (resume is a single-owner operation).
    """
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in stale:
        handle = studies.attach(study, t._trial_id)
        handle.set_user_attr("interrupted", True)
        handle.set_user_attr("error", "interrupted: the process running it stopped; its params are retried")
        study.tell(handle, state=TrialState.FAIL)
        if t.params:
            study.enqueue_trial(dict(t.params), skip_if_exists=False)
    return len(stale)
