"""The run's Optuna studies: one record study plus one sampler study per phase, in one storage.

The record study ("automl") holds every config with its full vector (HPs and `reward.<term>`
weights), its per-seed results and the pruner's intermediate values: it is what analysis reads
and the source of truth for resume. Each phase asks its own sampler study ("automl-hp" with the
chosen HP method, "automl-reward" with CMA-ES over the weights) so that each sampler sees a
consistent history of its own dimensions; the record trial is then enqueued with the full vector.
"""
from __future__ import annotations

import contextlib
import math
import random
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, cast

import optuna
from optuna.trial import TrialState

from automl.core.errors import AutoMLError

if TYPE_CHECKING:
    from optuna.storages._heartbeat import BaseHeartbeat

RECORD = "automl"
HP_SAMPLER = "automl-hp"
REWARD_SAMPLER = "automl-reward"

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")
# cmaes divides by zero while setting up very small populations (e.g. --reward-population 2);
# the sampler still works, and the warning would tear the live view.
warnings.filterwarnings("ignore", category=RuntimeWarning, module="cmaes")


def storage_url(run_dir: str | Path, storage: str | None) -> str:
    """The Optuna storage URL: --storage, else SQLite in the run directory."""
    if storage:
        return storage
    return f"sqlite:///{Path(run_dir).resolve() / 'study.db'}"


CREATION_ATTEMPTS = 8  # a storage or study created by several processes at once: retries, with backoff
_RACE_WORDS = ("already exists", "database is locked", "unique constraint", "duplicate key")


def _sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL (None for other backends, in-memory or unparsable URLs)."""
    import sqlalchemy

    try:
        parsed = sqlalchemy.engine.make_url(url)
    except Exception:  # a bad URL is reported by whoever opens it
        return None
    db = parsed.database
    if parsed.get_backend_name() != "sqlite" or not db or db == ":memory:" or db.startswith("file:"):
        return None
    return Path(db)


@contextlib.contextmanager
def creation_lock(url: str):
    """Exclusive lock on ``<db>.lock`` beside a SQLite file, so one process at a time creates its schema.

    A no-op for other backends, and where the lock file cannot be made (the open then fails on its own).
    """
    db = _sqlite_file(url)
    try:
        import fcntl

        handle = open(f"{db}.lock", "a") if db is not None else None  # noqa: SIM115 - closed below
    except (ImportError, OSError):
        handle = None
    if handle is None:
        yield
        return
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        handle.close()  # closing releases the lock


def is_creation_race(exc: BaseException) -> bool:
    """Whether ``exc`` (or its cause) is what two processes creating one storage or study at once raise."""
    import sqlalchemy

    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, (sqlalchemy.exc.IntegrityError, optuna.exceptions.DuplicatedStudyError)):
            return True
        if isinstance(seen, sqlalchemy.exc.DBAPIError) and any(w in str(seen).lower() for w in _RACE_WORDS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _retrying(make):
    """``make()``, retried with backoff while it fails with a creation race."""
    for attempt in range(CREATION_ATTEMPTS):
        try:
            return make()
        except Exception as exc:
            if attempt == CREATION_ATTEMPTS - 1 or not is_creation_race(exc):
                raise
        time.sleep(0.05 * 2 ** attempt * (1 + random.random()))  # noqa: S311 - jitter, not crypto
    raise AssertionError("unreachable")


HEARTBEAT_S = 30   # a driver on a shared server storage records a heartbeat for its running trials this often
GRACE_S = 90       # ... and is taken for dead when its last heartbeat is older than this
_STORAGES: dict[str, object] = {}


def make_storage(url: str):
    """The Optuna storage for a --storage value, one per URL in a process: ``journal:PATH`` (Optuna's
    JournalStorage on a file, for a shared filesystem), SQLite (one host), or a server database
    (postgresql://, mysql://) with Optuna's heartbeat (``heartbeat_interval``, ``grace_period``)."""
    if url in _STORAGES:
        return _STORAGES[url]
    storage: optuna.storages.BaseStorage
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        storage = optuna.storages.JournalStorage(JournalFileBackend(url.split(":", 1)[1]))
    elif url.startswith("sqlite"):
        storage = rdb_storage(url)
    else:
        storage = rdb_storage(_with_driver(url), heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
    _STORAGES[url] = storage
    return storage


def _with_driver(url: str) -> str:
    """``postgresql://`` names no driver, and SQLAlchemy's default differs between versions (psycopg2, or
    psycopg 3 from 2.1 on): name the one that is installed."""
    if not url.startswith("postgresql://"):
        return url
    import importlib.util

    driver = "psycopg" if importlib.util.find_spec("psycopg") else "psycopg2"
    return f"postgresql+{driver}://" + url[len("postgresql://"):]


def is_shared(url: str | None) -> bool:
    """Whether --storage names a storage several hosts can use (a server database or a journal file)."""
    if not url:
        return False
    return not url.startswith("sqlite")


def rdb_storage(url: str, *, engine_kwargs: Mapping | None = None, **options) -> optuna.storages.RDBStorage:
    """An Optuna RDB storage for ``url``, safe when several processes create the same new storage at once.

    SQLite: the schema is created under :func:`creation_lock`; any backend: creation races
    (UNIQUE constraint on alembic_version, "already exists", "database is locked") are retried.
    """
    def make():
        with creation_lock(url):
            return optuna.storages.RDBStorage(url, engine_kwargs=dict(engine_kwargs or {}), **options)

    return _retrying(make)


def create_or_load(storage, name: str, *, direction: str = "maximize", sampler=None,
                   pruner=None, directions: list[str] | None = None) -> optuna.Study:
    """Create study ``name`` in ``storage`` (an RDBStorage or URL) or load it when it exists, race-safe;
    ``directions``: a multi-objective study."""
    if isinstance(storage, str):
        storage = make_storage(storage)

    def make():
        try:
            return optuna.create_study(storage=storage, study_name=name, sampler=sampler, pruner=pruner,
                                       direction=None if directions else direction, directions=directions,
                                       load_if_exists=True)
        except optuna.exceptions.DuplicatedStudyError:  # created by another process meanwhile
            return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)

    return _retrying(make)


def open_study(url: str, name: str, *, sampler=None, pruner=None, directions: list[str] | None = None) -> optuna.Study:
    """Create or load one study (maximize, or ``directions`` for several objectives) in the run's storage;
    storage errors are one line."""
    try:
        return create_or_load(url, name, sampler=sampler, pruner=pruner, direction="maximize", directions=directions)
    except Exception as exc:  # storage URLs fail in many library-specific ways
        raise AutoMLError(f"--storage: cannot open {url!r}: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}") from None


def record_heartbeats(study: optuna.Study, trial_ids) -> None:
    """Optuna's heartbeat for the driver's running trials (a no-op on storages without one)."""
    storage = study._storage
    if getattr(storage, "get_heartbeat_interval", lambda: None)():
        heartbeat = cast("BaseHeartbeat", storage)  # Optuna's storages with a heartbeat interval are BaseHeartbeats
        for trial_id in trial_ids:
            heartbeat.record_heartbeat(trial_id)


def attach(study: optuna.Study, trial_id: int) -> optuna.Trial:
    """A live handle on an existing RUNNING trial (used to resume in-flight configs)."""
    return optuna.Trial(study, trial_id)


def tell_sampler(study: optuna.Study, trial_id: int, value, state: str, violations: list[float] | None = None) -> None:
    """Tell a sampler study the outcome (one value, or a list with several objectives); failures are told
    as complete-with-worst upstream. ``violations`` (--constraint) go where ``constraints_func`` reads them."""
    trial = attach(study, trial_id)
    values = value if isinstance(value, (list, tuple)) else [value]
    if violations is not None:
        trial.set_user_attr(VIOLATIONS, [float(min(v, 1e300)) for v in violations])
    if state == "pruned":
        study.tell(trial, state=TrialState.PRUNED)
    elif state == "rejected" or any(v is None or not math.isfinite(v) for v in values):
        study.tell(trial, state=TrialState.FAIL)
    else:
        study.tell(trial, list(values) if isinstance(value, (list, tuple)) else value)


def tell_outcome(outcome) -> None:
    """Tell a search owner's sampler study how a proposal ended (an ``automl.search.owner.Outcome``)."""
    study, trial_id = outcome.ticket
    tell_sampler(study, trial_id, outcome.value, outcome.state, outcome.violations)


VIOLATIONS = "violations"


def violations_of(n: int):
    """Optuna's ``constraints_func`` for ``n`` constraints: the violations told with the trial (<= 0 holds);
    a trial without them (pruned before it had a score) counts as breaking every one."""
    import functools

    return functools.partial(_violations, n)


def _violations(n: int, trial) -> list[float]:
    got = trial.user_attrs.get(VIOLATIONS)
    return list(got) if isinstance(got, list) and len(got) == n else [1e300] * n



def record_trial(study: optuna.Study, params: Mapping[str, Any],
                 distributions: Mapping[str, Any], attrs: Mapping[str, Any]) -> optuna.Trial:
    """Enqueue the full vector in the record study and ask it, so every value is recorded."""
    study.enqueue_trial(dict(params), skip_if_exists=False)
    trial = study.ask()
    for name, dist in distributions.items():
        trial._suggest(name, dist)  # fixed by the enqueue: records value and distribution
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    return trial
