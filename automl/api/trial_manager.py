"""TrialManager: read, log, rank, export and plot the trials of a study directory.

Two kinds of directory: an API study (``<study_dir>/<name>.db`` written by SearchEngine or a
tuner, or by log_trial here) and a CLI run directory (``study.db`` with the study "automl" and
``automl_state.yaml``), which is read through automl.analysis.run_data / automl.analysis.report, read-only.
Importances always come from automl.analysis.report (Optuna's fANOVA over the complete trials).
"""
from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from pathlib import Path
from typing import cast

import optuna
from optuna.distributions import BaseDistribution, FloatDistribution

from automl.analysis import report as analysis, run_data
from automl.api import study_io
from automl.api.study_io import TrialRecord
from automl.core.errors import AutoMLError
from automl.core.values import csv_cell, is_finite_number

CLI_METRIC = "episode_reward_mean"


def _is_cli_run(path: Path) -> bool:
    db = path / "study.db"
    return (path / "automl_state.yaml").is_file() or (db.is_file() and run_data.STUDY_NAME in study_io.study_names(db))


class TrialManager:
    """Track, checkpoint and analyse the trials stored in ``study_dir``."""

    def __init__(self, study_dir: str | Path, study_name: str | None = None, *, metric: str = "value",
                 direction: str = "maximize"):
        """Open the study in ``study_dir`` (study_name= picks one of several); a new one is created for log_trial."""
        self.study_dir = Path(study_dir)
        self.metric = metric
        self.cli = self.study_dir.is_dir() and _is_cli_run(self.study_dir) and study_name in (None, run_data.STUDY_NAME)
        self.study: optuna.Study | None = None
        if self.cli:
            self.run = run_data.load_run(self.study_dir)
            return
        has_db = self.study_dir.is_file() or any(self.study_dir.glob("*.db"))
        if has_db:
            db, name = study_io.locate(self.study_dir, study_name)
            stored = optuna.load_study(study_name=name, storage=study_io.storage(db))
            direction = stored.direction.name.lower()
        else:
            db, name = study_io.db_path(self.study_dir, study_name or "trials"), study_name or "trials"
        self.study = study_io.open_study(db.parent, name, direction=study_io.DIRECTIONS.get(direction, direction))

    @property
    def _study(self) -> optuna.Study:
        """The API study (__init__ opens it unless the directory is a CLI run)."""
        assert self.study is not None
        return self.study

    @property
    def direction(self) -> str:
        """maximize or minimize."""
        return "maximize" if self.cli else self._study.direction.name.lower()

    # ------------------------------------------------------------------ records
    def trials(self) -> list[TrialRecord]:
        """Every trial, in order."""
        if self.cli:
            return [_cli_record(c) for c in self.run.configs]
        return [study_io.record(t) for t in self._study.get_trials(deepcopy=False)]

    def log_trial(self, params: Mapping, metrics: Mapping | float, trial_id: str | None = None) -> None:
        """Record a finished trial run elsewhere; its value is metrics[metric] (or the number given)."""
        if self.cli:
            raise AutoMLError(f"{self.study_dir}: log_trial: a CLI run directory is read-only (allowed: an API study dir)")
        metrics = dict(metrics) if isinstance(metrics, Mapping) else {self.metric: metrics}
        if self.metric not in metrics:
            raise AutoMLError(f"TrialManager.log_trial: metrics {', '.join(metrics) or 'none'} lack {self.metric!r} "
                              f"(allowed: include the manager's metric, or pass metric= to TrialManager)")
        value = float(metrics[self.metric])
        trial_id = str(trial_id if trial_id is not None else len(self._study.trials))
        if any(r.trial_id == trial_id for r in self.trials()):
            raise AutoMLError(f"TrialManager.log_trial: trial_id {trial_id!r} already logged (allowed: a new id)")
        # numbers are study coordinates (ranked by importance); other values live in the params attr
        # only, since Optuna cannot grow a categorical distribution trial by trial
        coords = {k: float(v) for k, v in params.items() if is_finite_number(v)}
        finite = math.isfinite(value)
        self._study.add_trial(optuna.trial.create_trial(
            state=optuna.trial.TrialState.COMPLETE if finite else optuna.trial.TrialState.FAIL,
            value=value if finite else None, params=coords,
            distributions={k: _point(v) for k, v in coords.items()},
            user_attrs={"params": study_io.plain(dict(params)), "metrics": study_io.plain(metrics),
                        "trial_id": trial_id, **({} if finite else {"error": f"{self.metric} is {value}"})}))

    def get_trial(self, trial_id: str | int) -> TrialRecord:
        """The trial with this id (CLI runs: config_id or trial number)."""
        for r in self.trials():
            if r.trial_id == str(trial_id) or str(r.number) == str(trial_id):
                return r
        raise AutoMLError(f"{self.study_dir}: no trial {trial_id!r} (allowed: ids {', '.join(r.trial_id for r in self.trials()[:10])} ...)")

    def get_best_trials(self, n: int = 5) -> list[TrialRecord]:
        """The n best complete trials, best first."""
        return [r for r in study_io.rank(self.trials(), self.direction) if r.value is not None][:n]

    # ------------------------------------------------------------------ analysis
    def run_data(self) -> run_data.RunData:
        """The trials as automl.analysis.report reads them (RunData), for the CLI's analysis functions."""
        if self.cli:
            return self.run
        configs: list[run_data.ConfigRecord] = []
        dists: dict[str, BaseDistribution] = {}
        for t in self._study.get_trials(deepcopy=False):
            state = study_io.record(t).state
            for name, dist in t.distributions.items():
                dists[name] = run_data._merge(dists[name], dist) if name in dists else dist
            configs.append(run_data.ConfigRecord(
                number=t.number, config_id=str(t.user_attrs.get("trial_id", t.number)), kind="hp", cycle=None,
                state=state, params=dict(t.params), seeds=[],  # an API study has no reward weights
                score={"mean": t.value} if t.value is not None else None))
        return run_data.RunData(self.study_dir, "study", configs, dists)

    def get_importance(self, evaluator: str = "fanova") -> dict[str, float]:
        """{param: importance} (normalised, highest first) via automl.analysis.report; {} with < 2 complete trials."""
        sort = "descending" if self.direction == "maximize" else "ascending"
        return dict(analysis.importances(self.run_data(), evaluator, metric=CLI_METRIC, sort=sort))

    def export_csv(self, path: str | Path) -> Path:
        """One row per trial: number, id, state, value, every param, every metric."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.cli:
            from automl.analysis.plots import write_trials_csv  # the CLI's own CSV layout for its run dirs

            return write_trials_csv(self.run, path)
        records = self.trials()
        params = _union(r.params for r in records)
        metrics = _union(r.metrics for r in records)
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["number", "trial_id", "state", "value", "duration_s", *params, *metrics, "error"])
            for r in records:
                writer.writerow([r.number, r.trial_id, r.state, csv_cell(r.value), csv_cell(r.duration_s),
                                 *(csv_cell(r.params.get(p)) for p in params), *(csv_cell(r.metrics.get(m)) for m in metrics),
                                 csv_cell(r.error)])
        return path

    def plot_optimization_history(self):
        """Trial values and the best so far, per trial number: a matplotlib Figure."""
        from matplotlib.figure import Figure

        records = [r for r in self.trials() if r.value is not None]
        fig = Figure(figsize=(8, 4.5))
        ax = fig.add_subplot()
        better = max if self.direction == "maximize" else min
        best, best_line = None, []
        for r in records:
            best = r.value if best is None else better(best, r.value)
            best_line.append(best)
        ax.scatter([r.number for r in records], [r.value for r in records], s=16, label="trial value")
        ax.step([r.number for r in records], best_line, where="post", color="tab:red", label="best so far")
        ax.set_xlabel("trial")
        ax.set_ylabel(self.metric if not self.cli else CLI_METRIC)
        ax.set_title("Optimization history")
        ax.legend()
        fig.tight_layout()
        return fig

    def plot_param_importances(self):
        """get_importance() as a horizontal bar chart: a matplotlib Figure."""
        from matplotlib.figure import Figure

        ranking = list(reversed(list(self.get_importance().items())))
        fig = Figure(figsize=(8, 0.45 * len(ranking) + 1.8))
        ax = fig.add_subplot()
        ax.barh(range(len(ranking)), [v for _, v in ranking])
        ax.set_yticks(range(len(ranking)), [p for p, _ in ranking])
        ax.set_xlabel("importance (fANOVA, normalised)")
        ax.set_title("Hyperparameter importance" if ranking else "Hyperparameter importance (too few trials)")
        fig.tight_layout()
        return fig


def _cli_record(c: run_data.ConfigRecord) -> TrialRecord:
    # number: load_run numbers every record of a CLI run
    seed_metrics = {m: c.metric(m) for m in ("episode_reward_mean", "iqm", "success_rate", "shaped_return")}
    return TrialRecord(number=cast(int, c.number), params={k: run_data.decode_value(v) for k, v in c.vector.items()},
                       value=c.metric(CLI_METRIC) if c.state == "complete" else None, state=c.state,
                       metrics={k: v for k, v in seed_metrics.items() if v is not None}, trial_id=c.config_id,
                       config=c)


def _point(value) -> FloatDistribution:
    """A float distribution holding just `value` (run_data widens them over all trials)."""
    return FloatDistribution(float(value), float(value))


def _union(dicts) -> list[str]:
    out: list[str] = []
    for d in dicts:
        out += [k for k in d if k not in out]
    return out


