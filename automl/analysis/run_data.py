"""Loading a run directory into RunData: the study (read-only) or else the state file.

Reads `<run_dir>/study.db` (opened read-only) and `<run_dir>/automl_state.yaml`; never writes.

Each trial becomes the core's ``automl.core.record.ConfigRecord`` (re-exported here): HPs in
``params``, reward weights in ``reward_weights`` (term names, no ``reward.`` prefix), ``number``
the trial's order in the run. Analysis reads the full search vector as ``ConfigRecord.vector``
(HPs plus ``reward.<term>`` weights, the study's names). Unlike the state file, analysis keeps
HP values in the study's encoding (``space.encode_choice``: a list choice is "256-128-64"), so
a study run and a state-file run of the same configs give equal vectors; ``decode_value`` turns
them back into the user's view where a report shows them.

Missing parameters (e.g. reward weights the HP phase held fixed, so the driver did not put
them in the trial's params): each config is completed from its own record in the state file
(the value it actually ran with), then, for `reward.<term>`, from the task's default weight
(envs.reward_config). What was completed is listed per record number in ``RunData.filled``
(analysis only: it is no part of the record). A parameter still missing on some complete
config is left out of the importance ranking (importance over the intersection), and a note
says so.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import optuna
import yaml
from optuna.distributions import (BaseDistribution, CategoricalDistribution, FloatDistribution,
                                  IntDistribution)
from optuna.trial import TrialState

from automl.core.errors import AutoMLError
from automl.core.names import DEFAULT_RISK
from automl.core.record import ConfigRecord, Kind, State
from automl.core.values import is_finite_number
from automl.search.space import encode_choice
from automl.search.states import state_name

__all__ = ["BASE_METRICS", "STUDY_NAME", "ConfigRecord", "RunData", "decode_value", "load_run"]

STUDY_NAME = "automl"
_REWARD = "reward."
BASE_METRICS = ("episode_reward_mean", "success_rate", "shaped_return", "iqm")
_SEED_NON_METRICS = {"seed", "state", "reason"}
_ENCODED_LIST = re.compile(r"^\d+(-\d+)+$")


def decode_value(value):
    """User view of a study value: "256-128-64" (``space.encode_choice``) back to [256, 128, 64]."""
    if isinstance(value, str) and _ENCODED_LIST.match(value):
        return [int(v) for v in value.split("-")]
    return value


@dataclass
class RunData:
    """Everything analysis needs from a run directory."""

    run_dir: Path
    source: str  # "study" or "state"
    configs: list[ConfigRecord]
    distributions: dict[str, BaseDistribution]
    status: str | None = None
    env: str | None = None
    notes: list[str] = field(default_factory=list)
    risk: float = DEFAULT_RISK  # K of the mean-std objective (automl analyze --risk)
    filled: dict[int, list[str]] = field(default_factory=dict)  # record number -> coordinates completed here

    def known_metrics(self) -> list[str]:
        """Base metrics plus any numeric per-seed field recorded by the driver."""
        extra = {k for c in self.configs for s in c.seeds for k, v in s.items()
                 if k not in _SEED_NON_METRICS and is_finite_number(v)}
        return list(BASE_METRICS) + sorted(extra - set(BASE_METRICS))

    def ranked(self, metric: str, sort: str = "descending") -> list[ConfigRecord]:
        """Complete configs with a finite metric, best first (failed/NaN never ranked)."""
        done = [c for c in self.configs if c.state == State.COMPLETE and c.metric(metric, self.risk) is not None]
        # every config in done has a finite metric (filtered just above)
        return sorted(done, key=lambda c: cast(float, c.metric(metric, self.risk)), reverse=(sort == "descending"))

    def param_names(self) -> list[str]:
        """Search coordinates: PPO hyperparameters first, then reward weights."""
        return sorted(self.distributions, key=lambda p: (p.startswith("reward."), p))


# ---------------------------------------------------------------- loading
def _read_state(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise AutoMLError(f"{path}: cannot read ({str(exc).splitlines()[0]})") from exc
    if not isinstance(data, dict):
        raise AutoMLError(f"{path}: not a mapping (expected the automl state layout)")
    return data


def _widen(dist: BaseDistribution | None, value) -> BaseDistribution:
    """A distribution that also contains value (studies may narrow ranges between presets)."""
    if isinstance(dist, CategoricalDistribution) or isinstance(value, (str, bool)) or value is None:
        choices = tuple(dist.choices) if isinstance(dist, CategoricalDistribution) else ()
        if isinstance(dist, CategoricalDistribution) and value in choices:
            return dist
        return CategoricalDistribution(choices + (value,))
    if dist is None:
        cls = IntDistribution if isinstance(value, int) else FloatDistribution
        return cls(value, value)
    num = cast("IntDistribution | FloatDistribution", dist)  # not categorical: Optuna's numeric ones
    low, high = min(num.low, value), max(num.high, value)
    if isinstance(num, IntDistribution) and isinstance(value, int):
        return IntDistribution(low, high, log=num.log and low > 0)
    return FloatDistribution(float(low), float(high), log=num.log and low > 0)


def _study_trials(db_path: Path) -> list:
    """Trials of the 'automl' study, read through a read-only SQLite connection."""
    url = f"sqlite:///file:{db_path.resolve()}?mode=ro&uri=true"
    storage = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            storage = optuna.storages.RDBStorage(url, skip_table_creation=True,
                                                 skip_compatibility_check=True)
            names = [s.study_name for s in storage.get_all_studies()]
            if STUDY_NAME not in names:
                raise AutoMLError(f"{db_path}: no Optuna study named '{STUDY_NAME}' "
                                  f"(found: {', '.join(names) or 'none'})")
            study = optuna.load_study(study_name=STUDY_NAME, storage=storage)
            return study.get_trials(deepcopy=False)
    except AutoMLError:
        raise
    except Exception as exc:  # sqlalchemy/optuna raise many types; the user needs one line
        root: BaseException = exc
        while (inner := root.__cause__ or root.__context__) is not None:  # Optuna wraps sqlite's own (clearer) message
            root = inner
        detail = (str(root).splitlines() or [type(root).__name__])[0]
        raise AutoMLError(f"{db_path}: cannot read Optuna study '{STUDY_NAME}' ({detail})") from exc
    finally:
        if storage is not None:
            storage.engine.dispose()


def _configs_from_study(db_path: Path) -> tuple[list[ConfigRecord], dict]:
    configs: list[ConfigRecord] = []
    dists: dict[str, BaseDistribution] = {}
    for t in _study_trials(db_path):
        attrs = t.user_attrs
        state = state_name(t.state)
        if attrs.get("rejected"):
            state = State.REJECTED
        elif t.state != TrialState.COMPLETE and attrs.get("state") not in (None, State.COMPLETE):
            # e.g. stopped_at_deadline, finer than Optuna's FAIL; but a NaN objective that
            # Optuna turned into FAIL stays failed even if the driver called it complete
            state = str(attrs["state"])
        for name, dist in t.distributions.items():
            dists[name] = dist if name not in dists else _merge(dists[name], dist)
        params = {k: v for k, v in t.params.items() if not k.startswith(_REWARD)}
        weights = {k[len(_REWARD):]: v for k, v in t.params.items() if k.startswith(_REWARD)}
        configs.append(ConfigRecord(
            number=t.number, config_id=str(attrs.get("config_id", f"trial_{t.number:03d}")),
            kind=str(attrs.get("kind", Kind.HP)), cycle=attrs.get("cycle"), state=state,
            params=params, reward_weights=weights, seeds=list(attrs.get("seeds") or []),
            score=attrs.get("score"), reason=attrs.get("reason"), heldout_of=attrs.get("heldout_of")))
    return configs, dists


def _merge(a: BaseDistribution, b: BaseDistribution) -> BaseDistribution:
    if isinstance(b, CategoricalDistribution):
        for choice in b.choices:
            a = _widen(a, choice)
        return a
    num = cast("IntDistribution | FloatDistribution", b)  # not categorical: Optuna's numeric ones
    return _widen(_widen(a, num.low), num.high)


def _state_record(rec: dict, i: int) -> ConfigRecord:
    """State-file trial i as a record, its HP values in the study's encoding ("256-128-64").

    Analysis's defaults for an entry without them: config_id trial_<i>, state complete.
    """
    record = ConfigRecord.from_dict({"config_id": f"trial_{i:03d}", "state": State.COMPLETE, **rec}, number=i)
    record.params = {k: encode_choice(v) for k, v in record.params.items()}
    return record


def _configs_from_state(state: dict) -> tuple[list[ConfigRecord], dict]:
    configs: list[ConfigRecord] = []
    dists: dict[str, BaseDistribution] = {}
    for i, rec in enumerate(state.get("trials") or []):
        record = _state_record(rec, i)
        for name, value in record.vector.items():
            dists[name] = _widen(dists.get(name), value)
        configs.append(record)
    return configs, dists


def _reward_defaults(env: str | None) -> dict:
    """The task's default reward weights as reward.<term>; empty if unavailable."""
    if not env:
        return {}
    path = Path(__file__).resolve().parents[2] / "configs" / "rewards" / f"{env}.yaml"  # the task's reward terms
    try:
        terms = yaml.safe_load(path.read_text(encoding="utf-8"))["terms"]
        return {f"reward.{k}": v["default"] for k, v in terms.items()}
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):  # not a task: the intersection
        return {}


def _fill_missing(run: RunData, state: dict | None) -> None:
    """Complete each config's vector from its state-file record, then from reward defaults."""
    records: dict[tuple[Any, Any], dict[str, Any]] = {}
    for i, rec in enumerate((state or {}).get("trials") or []):
        records.setdefault((rec.get("config_id"), rec.get("kind", Kind.HP)), _state_record(rec, i).vector)
    # A coordinate the study never saw (e.g. weights fixed in every HP trial so far) still
    # belongs to the search vector if the state file shows it varying across configs.
    seen: dict[str, set] = {}
    for vector in records.values():
        for name, value in vector.items():
            seen.setdefault(name, set()).add(repr(value))
    # the same dict as run.distributions, which holds None for such a coordinate until it is
    # filled or dropped below
    distributions = cast("dict[str, BaseDistribution | None]", run.distributions)
    for name, values in seen.items():
        if name not in distributions and len(values) > 1:
            distributions[name] = None
    defaults = None
    counts: dict[tuple[str, str], int] = {}
    for c in run.configs:
        for name in sorted(set(distributions) - set(c.vector)):
            value = records.get((c.config_id, c.kind), {}).get(name)
            source = "the state file"
            if value is None and name.startswith(_REWARD):
                defaults = _reward_defaults(run.env) if defaults is None else defaults
                value, source = defaults.get(name), "the task's default weight"
            if value is not None:
                if name.startswith(_REWARD):
                    c.reward_weights[name[len(_REWARD):]] = value
                else:
                    c.params[name] = value
                run.filled.setdefault(cast(int, c.number), []).append(name)  # set by load_run's loaders
                distributions[name] = _widen(distributions[name], value)
                counts[(name, source)] = counts.get((name, source), 0) + 1
    for name in [n for n, d in distributions.items() if d is None]:
        del distributions[name]  # announced by the state file but no value anywhere
    for (name, source), n in sorted(counts.items()):
        run.notes.append(f"{name}: absent from {n} trial(s) in the study, filled from {source}")


def load_run(run_dir) -> RunData:
    """Load a run directory: the study if present (source of truth), else the state file."""
    run_dir = Path(run_dir)
    state_path, db_path = run_dir / "automl_state.yaml", run_dir / "study.db"
    if not state_path.exists() and not db_path.exists():
        raise AutoMLError(f"{run_dir}: no automl_state.yaml or study.db found")
    state = _read_state(state_path)
    if db_path.exists():
        source, (configs, dists) = "study", _configs_from_study(db_path)
    else:
        assert state is not None  # no study.db, so automl_state.yaml exists (checked above)
        source, (configs, dists) = "state", _configs_from_state(state)
    run = RunData(run_dir, source, configs, dists, status=(state or {}).get("status"),
                  env=(state or {}).get("env"))
    _fill_missing(run, state)
    return run
