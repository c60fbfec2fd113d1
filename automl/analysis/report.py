"""Read-only analysis of a run directory: importances, top configs, variance split, exports.

Reads `<run_dir>/study.db` (opened read-only) and `<run_dir>/automl_state.yaml`; writes only
under `<run_dir>/analysis/`. Never calls anything that writes to the study or the state file.

Missing parameters (e.g. reward weights the HP phase held fixed, so the driver did not put
them in the trial's params): each config is completed from its own record in the state file
(the value it actually ran with), then, for `reward.<term>`, from the task's default weight
(envs.reward_config). A parameter still missing on some complete config is left out of the
importance ranking (importance over the intersection), and a note says so.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import optuna

from automl.core.errors import AutoMLError
from automl.core.names import DEFAULT_RISK, OBJECTIVES
from automl.core.record import Kind
from automl.core.values import plain
# Run loading lives in run_data; re-exported so `analysis.load_run` etc. keep working.
from automl.analysis.run_data import (BASE_METRICS, STUDY_NAME, ConfigRecord, RunData,  # noqa: F401
                             decode_value, load_run)
from automl.analysis.variance import variance_with_notes

RECHECKS = (Kind.HELDOUT, Kind.TEST)  # re-trainings of tuned configs on other seeds: not configs of the search

SORTS = ("descending", "ascending")
EVALUATORS = ("fanova", "ped-anova")
IMPORTANCE_CHOICES = EVALUATORS + ("both",)


# ---------------------------------------------------------------- importance
def metric_study(run: RunData, metric: str, sort: str = "descending") -> tuple[optuna.Study, list[str]]:
    """In-memory study of complete tuning configs valued by metric, over the shared params.

    Held-out re-evaluations are left out (they repeat a config on other seeds). Returns the
    study and the parameters every config has (the importance intersection).
    """
    configs = [c for c in run.ranked(metric, sort) if c.kind not in RECHECKS]
    configs.sort(key=lambda c: cast(int, c.number))  # trial order, for the optimization history (load_run numbers every record)
    vectors = [c.vector for c in configs]  # HPs and reward.<term> weights, as the study names them
    params = [p for p in run.param_names() if configs and all(p in v for v in vectors)]
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created" chatter
    try:
        study = optuna.create_study(direction="maximize" if sort == "descending" else "minimize")
    finally:
        optuna.logging.set_verbosity(verbosity)
    for c, vector in zip(configs, vectors):
        study.add_trial(optuna.trial.create_trial(
            value=c.metric(metric, run.risk), params={p: vector[p] for p in params},
            distributions={p: run.distributions[p] for p in params},
            user_attrs={"config_id": c.config_id}))
    return study, params


def importances(run_data: RunData, evaluator: str = "fanova", *, metric: str = "episode_reward_mean",
                sort: str = "descending") -> list[tuple[str, float]]:
    """Normalised importances (highest first) of every shared param, via Optuna's evaluators."""
    if evaluator not in EVALUATORS:
        raise AutoMLError(f"--importance: unknown evaluator '{evaluator}' (allowed: {', '.join(EVALUATORS)})")
    study, params = metric_study(run_data, metric, sort)
    n = len(study.trials)
    if n < 2 or not params:
        return []
    # PED-ANOVA contrasts the top quantile with all configs; Optuna's default 10% leaves a
    # handful of configs in small AutoML studies, so keep at least 10 (at most half).
    quantile = min(0.5, max(0.1, 10 / n))
    factories = {"fanova": lambda: optuna.importance.FanovaImportanceEvaluator(seed=0),
                 "ped-anova": lambda: optuna.importance.PedAnovaImportanceEvaluator(
                     target_quantile=quantile)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # experimental / "too few trials" warnings: we add notes
        result = optuna.importance.get_param_importances(
            study, evaluator=factories[evaluator](), params=params)
    return sorted(((p, float(v)) for p, v in result.items()), key=lambda pv: -pv[1])


# ---------------------------------------------------------------- report
@dataclass
class AnalysisReport:
    """What `automl analyze` found and wrote."""

    run_dir: Path
    metric: str
    sort: str
    importance: str
    ranking: list[dict]
    top_configs: list[dict]
    variance: dict | None
    notes: list[str]
    n_complete: int
    n_trials: int
    top: int = 5
    files: list[Path] = field(default_factory=list)
    tables: list = field(default_factory=list)  # more rich tables to print (the Pareto front)

    def to_yaml_dict(self) -> dict:
        """The hyperparameter_importance.yaml document (DESIGN.md layout plus context keys)."""
        return {"metric": self.metric, "sort": self.sort, "importance_evaluator": self.importance,
                "importance_ranking": self.ranking, f"top_{self.top}_configs": self.top_configs,
                "variance": self.variance, "n_complete_configs": self.n_complete,
                "n_trials": self.n_trials, "notes": self.notes}


def _plain(value):
    """YAML-safe plain Python value (numpy scalars, tuples), encoded lists decoded."""
    return plain(value, leaf=decode_value)


def _ci95(config: ConfigRecord, metric: str):
    """CI of the chosen metric: the driver's for the true metric, else bootstrapped here."""
    if metric in ("episode_reward_mean", "iqm") and config.score and config.score.get("ci95"):
        return _plain(config.score["ci95"])
    values = config.seed_values(metric)
    try:
        from automl.core.scoring import bootstrap_ci  # owned by scoring; optional at analysis time
    except ImportError:
        return None
    return [float(v) for v in bootstrap_ci(values)] if len(values) > 1 else None


def _top_entry(c: ConfigRecord, metric: str, names: list[str], risk: float) -> dict:
    entry: dict[str, Any] = {"config_id": c.config_id, "kind": c.kind}
    vector = c.vector
    entry.update({p: _plain(vector[p]) for p in names if p in vector})
    n_seeds = (c.score or {}).get("n_seeds", len(c.seed_values(metric)))
    entry.update({metric: c.metric(metric, risk), "n_seeds": int(n_seeds), "ci95": _ci95(c, metric)})
    return entry


def _ranking(run: RunData, metric: str, sort: str, importance: str, notes: list[str]) -> list[dict]:
    """importance_ranking entries; with 'both', PED-ANOVA sits beside fANOVA."""
    primary = "ped-anova" if importance == "ped-anova" else "fanova"
    ranks = importances(run, primary, metric=metric, sort=sort)
    study, params = metric_study(run, metric, sort)
    n, k = len(study.trials), len(params)
    if n < 2:
        notes.append(f"importance needs at least 2 complete configs (have {n})")
    elif n < max(10, 2 * k):
        notes.append(f"only {n} complete configs for {k} parameters: "
                     "treat the importance ranking as a rough hint")
    dropped = [p for p in run.param_names() if p not in params]
    if dropped and n:
        notes.append(f"not ranked (missing on some complete configs): {', '.join(dropped)}")
    second = dict(importances(run, "ped-anova", metric=metric, sort=sort)) if importance == "both" else {}
    best = run.ranked(metric, sort)[0].vector
    rows = []
    for param, value in ranks:
        row = {"parameter": param, "importance": round(value, 4)}
        if importance == "both":
            row["importance_ped_anova"] = round(second.get(param, 0.0), 4)
        row["best_value"] = _plain(best.get(param))
        rows.append(row)
    return rows


def _check_args(run: RunData, metric: str, sort: str, top: int, importance: str) -> None:
    if sort not in SORTS:
        raise AutoMLError(f"--sort: unknown order '{sort}' (allowed: {', '.join(SORTS)})")
    if importance not in IMPORTANCE_CHOICES:
        raise AutoMLError(f"--importance: unknown evaluator '{importance}' "
                          f"(allowed: {', '.join(IMPORTANCE_CHOICES)})")
    if not isinstance(top, int) or top < 1:
        raise AutoMLError(f"--top: must be a positive integer (got {top!r})")
    known = run.known_metrics() + [o for o in OBJECTIVES if o not in run.known_metrics()]
    if metric not in known:
        raise AutoMLError(f"--metric: unknown metric '{metric}' (known: {', '.join(known)})")


def _nothing_ranked(run: RunData, metric: str) -> AutoMLError:
    counts: dict[str, int] = {}
    for c in run.configs:
        counts[c.state] = counts.get(c.state, 0) + 1
    if not counts:
        return AutoMLError(f"{run.run_dir}: no trial recorded yet")
    states = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    return AutoMLError(f"{run.run_dir}: no complete config with a finite {metric} yet ({states})")


def analyse(run_dir, metric: str = "episode_reward_mean", sort: str = "descending", top: int = 5,
            importance: str = "fanova", risk: float = DEFAULT_RISK) -> tuple[AnalysisReport, RunData]:
    """Analyse a run directory (read only): the report and the run's data (files: automl.analysis.output).
    ``metric`` may be an objective (mean-std with K = ``risk``, lcb): configs are re-ranked by it."""
    data = load_run(run_dir)
    data.risk = risk
    _check_args(data, metric, sort, top, importance)
    ranked = data.ranked(metric, sort)
    if not ranked:
        raise _nothing_ranked(data, metric)
    notes = list(data.notes)
    if data.status == "running":
        notes.append("the run is still going: this analysis covers the configs finished so far")
    ranking = _ranking(data, metric, sort, importance, notes)
    report = AnalysisReport(
        run_dir=Path(run_dir), metric=metric, sort=sort, importance=importance, ranking=ranking,
        top_configs=[_top_entry(c, metric, data.param_names(), data.risk) for c in ranked[:top]],
        variance=variance_with_notes(
            {c.number: c.seed_values(metric) for c in ranked if c.kind not in RECHECKS}, notes),
        notes=notes, top=top,
        n_complete=len(ranked), n_trials=len(data.configs))
    return report, data
