"""The analyze command: analyse a run directory (automl.analysis.report) and write analysis/ (automl.analysis.plots).

Writes hyperparameter_importance.yaml, trials.csv, PNG plots and TensorBoard HParams; ``table``
is the printed summary. Read-only towards the run itself.
"""
from __future__ import annotations

from pathlib import Path

from automl.analysis import pareto_plots, pbt_plots, plots as views
from automl.analysis.report import AnalysisReport, analyse
from automl.core.names import DEFAULT_RISK


def run(run_dir, metric: str = "episode_reward_mean", sort: str = "descending", top: int = 5,
        importance: str = "fanova", *, plots: bool = True, tensorboard: bool = True,
        risk: float = DEFAULT_RISK) -> AnalysisReport:
    """Analyse a run directory and write analysis/ (YAML, CSV, PNGs, TensorBoard HParams)."""
    report, data = analyse(run_dir, metric=metric, sort=sort, top=top, importance=importance, risk=risk)
    out = Path(run_dir) / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    report.files.append(views.write_yaml(report.to_yaml_dict(), out / "hyperparameter_importance.yaml"))
    report.files.append(views.write_trials_csv(data, out / "trials.csv"))
    pop = pbt_plots.load(run_dir)
    if pop:
        report.notes.append(pbt_plots.summary(pop))
    front = pareto_plots.load(run_dir)
    if front:
        report.notes.append(pareto_plots.summary(front))
        table = pareto_plots.table(front)
        report.tables += [table] if table is not None else []
        report.files += pareto_plots.write(front, out)
    if plots:
        report.files += views.write_plots(data, report, out)
        report.files += pbt_plots.write(pop, out) if pop else []
    if tensorboard:
        tb = views.write_tb_hparams(data, metric, out / "tb_hparams")
        report.files += [tb] if tb else []
    return report


def table(report: AnalysisReport, width: int | None = None):
    """A rich renderable: importance table, top configs, variance split and notes, fitted to
    ``width`` columns (None: the width of the console that prints it)."""
    return views.report_renderable(report, width)
