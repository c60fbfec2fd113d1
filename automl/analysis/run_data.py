"""Loading a run directory into RunData: the study (read-only) or else the state file.

Reads `<run_dir>/study.db` (opened read-only) and `<run_dir>/automl_state.yaml`; never writes.

Missing parameters (e.g. reward weights the HP phase held fixed, so the driver did not put
them in the trial's params): each config is completed from its own record in the state file
(the value it actually ran with), then, for `reward.<term>`, from the task's default weight
(envs.reward_config). A parameter still missing on some complete config is left out of the
importance ranking (importance over the intersection), and a note says so.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import yaml
from optuna.distributions import (BaseDistribution, CategoricalDistribution, FloatDistribution,
                                  IntDistribution)
from optuna.trial import TrialState

from automl.core.errors import AutoMLError
from automl.core.values import is_finite_number
from automl.search.space import encode_choice
from automl.search.states import state_name

STUDY_NAME = "automl"
BASE_METRICS = ("episode_reward_mean", "success_rate", "shaped_return", "iqm")
_SEED_NON_METRICS = {"seed", "state", "reason"}
_ENCODED_LIST = re.compile(r"^\d+(-\d+)+$")


def decode_value(value):
    """User view of a study value: "256-128-64" (``space.encode_choice``) back to [256, 128, 64]."""
    if isinstance(value, str) and _ENCODED_LIST.match(value):
        return [int(v) for v in value.split("-")]
    return value


@dataclass
class ConfigRecord:
    """One trial of the run: its full search vector, per-seed results and aggregate score."""

    number: int
    config_id: str
    kind: str
    cycle: int | None
    state: str  # complete | pruned | failed | rejected | running | stopped_at_deadline | ...
    params: dict
    seeds: list[dict]
    score: dict | None
    filled: list[str] = field(default_factory=list)

    def seed_values(self, metric: str) -> list[float]:
        """Finite per-seed values of metric (iqm reads the true metric per seed)."""
        key = "episode_reward_mean" if metric == "iqm" else metric
        return [float(s[key]) for s in self.seeds
                if s.get("state", "complete") == "complete" and is_finite_number(s.get(key))]

    def metric(self, metric: str) -> float | None:
        """The config's aggregate for metric; None when it has no finite value."""
        score = self.score or {}
        if metric == "iqm":
            value = score.get("iqm")
        elif metric == "episode_reward_mean" and "mean" in score:
            value = score["mean"]  # the driver's objective (failed seeds count as worst); NaN stays out
        else:
            values = self.seed_values(metric)
            value = sum(values) / len(values) if values else None
        return float(value) if is_finite_number(value) else None


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

    def known_metrics(self) -> list[str]:
        """Base metrics plus any numeric per-seed field recorded by the driver."""
        extra = {k for c in self.configs for s in c.seeds for k, v in s.items()
                 if k not in _SEED_NON_METRICS and is_finite_number(v)}
        return list(BASE_METRICS) + sorted(extra - set(BASE_METRICS))

    def ranked(self, metric: str, sort: str = "descending") -> list[ConfigRecord]:
        """Complete configs with a finite metric, best first (failed/NaN never ranked)."""
        done = [c for c in self.configs if c.state == "complete" and c.metric(metric) is not None]
        return sorted(done, key=lambda c: c.metric(metric), reverse=(sort == "descending"))

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
        return dist if value in choices else CategoricalDistribution(choices + (value,))
    if dist is None:
        cls = IntDistribution if isinstance(value, int) else FloatDistribution
        return cls(value, value)
    low, high = min(dist.low, value), max(dist.high, value)
    if isinstance(dist, IntDistribution) and isinstance(value, int):
        return IntDistribution(low, high, log=dist.log and low > 0)
    return FloatDistribution(float(low), float(high), log=dist.log and low > 0)


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
        root = exc
        while root.__cause__ or root.__context__:  # Optuna wraps sqlite's own (clearer) message
            root = root.__cause__ or root.__context__
        detail = (str(root).splitlines() or [type(root).__name__])[0]
        raise AutoMLError(f"{db_path}: cannot read Optuna study '{STUDY_NAME}' ({detail})") from exc
    finally:
        if storage is not None:
            storage.engine.dispose()


def _configs_from_study(db_path: Path) -> tuple[list[ConfigRecord], dict]:
    configs, dists = [], {}
    for t in _study_trials(db_path):
        attrs = t.user_attrs
        state = state_name(t.state)
        if attrs.get("rejected"):
            state = "rejected"
        elif t.state != TrialState.COMPLETE and attrs.get("state") not in (None, "complete"):
            # e.g. stopped_at_deadline, finer than Optuna's FAIL; but a NaN objective that
            # Optuna turned into FAIL stays failed even if the driver called it complete
            state = str(attrs["state"])
        for name, dist in t.distributions.items():
            dists[name] = dist if name not in dists else _merge(dists[name], dist)
        configs.append(ConfigRecord(
            number=t.number, config_id=str(attrs.get("config_id", f"trial_{t.number:03d}")),
            kind=str(attrs.get("kind", "hp")), cycle=attrs.get("cycle"), state=state,
            params=dict(t.params), seeds=list(attrs.get("seeds") or []), score=attrs.get("score")))
    return configs, dists


def _merge(a: BaseDistribution, b: BaseDistribution) -> BaseDistribution:
    if isinstance(b, CategoricalDistribution):
        for choice in b.choices:
            a = _widen(a, choice)
        return a
    return _widen(_widen(a, b.low), b.high)


def _state_vector(record: dict) -> dict:
    """A state-file trial's params and reward weights as study names and encodings."""
    vector = {k: encode_choice(v) for k, v in (record.get("params") or {}).items()}
    vector.update({f"reward.{k}": v for k, v in (record.get("reward_weights") or {}).items()})
    return vector


def _configs_from_state(state: dict) -> tuple[list[ConfigRecord], dict]:
    configs, dists = [], {}
    for i, rec in enumerate(state.get("trials") or []):
        params = _state_vector(rec)
        for name, value in params.items():
            dists[name] = _widen(dists.get(name), value)
        configs.append(ConfigRecord(
            number=i, config_id=str(rec.get("config_id", f"trial_{i:03d}")),
            kind=str(rec.get("kind", "hp")), cycle=rec.get("cycle"),
            state=str(rec.get("state", "complete")), params=params,
            seeds=list(rec.get("seeds") or []), score=rec.get("score")))
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
    records = {}
    for rec in (state or {}).get("trials") or []:
        records.setdefault((rec.get("config_id"), rec.get("kind", "hp")), _state_vector(rec))
    # A coordinate the study never saw (e.g. weights fixed in every HP trial so far) still
    # belongs to the search vector if the state file shows it varying across configs.
    seen: dict[str, set] = {}
    for vector in records.values():
        for name, value in vector.items():
            seen.setdefault(name, set()).add(repr(value))
    for name, values in seen.items():
        if name not in run.distributions and len(values) > 1:
            run.distributions[name] = None
    defaults = None
    counts: dict[tuple[str, str], int] = {}
    for c in run.configs:
        for name in set(run.distributions) - set(c.params):
            value = records.get((c.config_id, c.kind), {}).get(name)
            source = "the state file"
            if value is None and name.startswith("reward."):
                defaults = _reward_defaults(run.env) if defaults is None else defaults
                value, source = defaults.get(name), "the task's default weight"
            if value is not None:
                c.params[name] = value
                c.filled.append(name)
                run.distributions[name] = _widen(run.distributions[name], value)
                counts[(name, source)] = counts.get((name, source), 0) + 1
    for name in [n for n, d in run.distributions.items() if d is None]:
        del run.distributions[name]  # announced by the state file but no value anywhere
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
        source, (configs, dists) = "state", _configs_from_state(state)
    run = RunData(run_dir, source, configs, dists, status=(state or {}).get("status"),
                  env=(state or {}).get("env"))
    _fill_missing(run, state)
    return run
