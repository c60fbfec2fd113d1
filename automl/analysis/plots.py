"""Views of an analysis: the YAML/CSV exports, PNG plots, TensorBoard HParams and the rich table.

Everything here writes under `<run_dir>/analysis/` only. Plots use the Agg backend (no
display needed) and Optuna's matplotlib views where one exists.
"""
from __future__ import annotations

import csv
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, cast

import matplotlib

matplotlib.use("Agg")  # headless: analysis runs on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
import yaml  # noqa: E402
from rich import box  # noqa: E402

from automl.analysis.report import AnalysisReport, RunData, decode_value, metric_study  # noqa: E402
from automl.core.values import csv_cell  # noqa: E402
from automl.search.space import encode_choice  # noqa: E402

_MAX_SPREAD_CONFIGS = 25  # beyond this the per-config strip plot is unreadable
_MAX_PARALLEL_PARAMS = 8


# ---------------------------------------------------------------- YAML / CSV
def write_yaml(document: dict, path: Path) -> Path:
    """Write document as block YAML with flow-style leaves, like the DESIGN.md example."""
    path.write_text(yaml.safe_dump(document, sort_keys=False, default_flow_style=None, width=120))
    return path


def trials_csv_columns(run: RunData) -> tuple[list[str], list[str], list[str]]:
    """(params, metrics, per-seed keys) that make up the CSV columns."""
    metrics = run.known_metrics()
    seed_keys: list[str] = []
    for c in run.configs:
        for s in c.seeds:
            seed_keys += [k for k in s if k not in seed_keys]
    return run.param_names(), metrics, seed_keys


def write_trials_csv(run: RunData, path: Path) -> Path:
    """One row per config: every param and weight, aggregates, then seed<i>_<field> columns."""
    params, metrics, seed_keys = trials_csv_columns(run)
    n_seeds = max((len(c.seeds) for c in run.configs), default=0)
    head = ["trial_number", "config_id", "kind", "cycle", "state", "filled_params"]
    score_cols = ["score_mean", "score_iqm", "score_ci95_lo", "score_ci95_hi", "n_seeds"]
    seed_cols = [f"seed{i}_{k}" for i in range(n_seeds) for k in seed_keys]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=head + params + metrics + score_cols + seed_cols)
        writer.writeheader()
        for c in run.configs:
            score = c.score or {}
            ci = score.get("ci95") or [None, None]
            filled = run.filled.get(c.number, []) if c.number is not None else []
            row = {"trial_number": c.number, "config_id": c.config_id, "kind": c.kind,
                   "cycle": c.cycle, "state": c.state, "filled_params": " ".join(filled),
                   "score_mean": score.get("mean"), "score_iqm": score.get("iqm"),
                   "score_ci95_lo": ci[0], "score_ci95_hi": ci[1], "n_seeds": score.get("n_seeds")}
            vector = c.vector
            row.update({p: decode_value(vector.get(p)) for p in params})
            row.update({m: c.metric(m) for m in metrics})
            for i, s in enumerate(c.seeds):
                row.update({f"seed{i}_{k}": s.get(k) for k in seed_keys})
            writer.writerow({k: csv_cell(v) for k, v in row.items()})
    return path


# ---------------------------------------------------------------- PNG plots
def _save(ax, path: Path, title: str, min_size=(8, 5)) -> Path:
    """Title, enlarge to a readable size, write at 100 dpi and free the figure."""
    fig = ax.figure
    ax.set_title(title)
    fig.set_size_inches(max(fig.get_size_inches()[0], min_size[0]),
                        max(fig.get_size_inches()[1], min_size[1]))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_importances(report: AnalysisReport, path: Path) -> Path:
    rows = list(reversed(report.ranking))  # most important at the top of a barh
    names = [r["parameter"] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.8))
    both = "importance_ped_anova" in (rows[0] if rows else {})
    height = 0.4 if both else 0.7
    offsets = [i + (height / 2 if both else 0) for i in range(len(rows))]
    ax.barh(offsets, [r["importance"] for r in rows], height=height,
            label="fANOVA" if report.importance != "ped-anova" else "PED-ANOVA")
    if both:
        ax.barh([i - height / 2 for i in range(len(rows))],
                [r["importance_ped_anova"] for r in rows], height=height, label="PED-ANOVA")
    ax.set_yticks(range(len(rows)), names)
    ax.set_xlabel(f"importance for {report.metric} (normalised, sums to 1)")
    ax.set_ylabel("parameter")
    ax.legend(loc="lower right")
    return _save(ax, path, "Hyperparameter and reward-weight importance")


def _plot_seed_spread(run: RunData, report: AnalysisReport, path: Path) -> Path:
    configs = run.ranked(report.metric, report.sort)[:_MAX_SPREAD_CONFIGS]
    fig, ax = plt.subplots(figsize=(max(8, 0.45 * len(configs) + 2), 5))
    for i, c in enumerate(configs):
        values = c.seed_values(report.metric)
        ax.scatter([i] * len(values), values, s=18, alpha=0.6, color="tab:blue",
                   label="one seed" if i == 0 else None)
        # ranked() keeps only configs with a finite metric
        ax.scatter([i], [cast(float, c.metric(report.metric, run.risk))], marker="_", s=300, color="tab:red",
                   label="config aggregate" if i == 0 else None)
    ax.set_xticks(range(len(configs)), [c.config_id for c in configs], rotation=60, ha="right")
    ax.set_xlabel(f"config (ranked by {report.metric}, {report.sort}; best {len(configs)})")
    ax.set_ylabel(report.metric)
    ax.legend(loc="best")
    share = report.variance["seed_share"] if report.variance else None
    title = "Per-config seed spread" + (f" (seed share of variance {share:.0%})" if share is not None else "")
    return _save(ax, path, title)


def _plot_true_vs_shaped(run: RunData, path: Path) -> Path | None:
    """Hacking check: shaped return should rise with the true metric, not against it."""
    pts = [(c.metric("shaped_return"), c.metric("episode_reward_mean"), c.kind)
           for c in run.configs if c.state == "complete"]
    pts = [p for p in pts if p[0] is not None and p[1] is not None]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(8, 5))
    for kind in sorted({p[2] for p in pts}):
        xs, ys = zip(*[(x, y) for x, y, k in pts if k == kind])
        ax.scatter(xs, ys, label=f"{kind} configs", alpha=0.75)
    ax.set_xlabel("shaped return (what the searched weights reward), mean over seeds")
    ax.set_ylabel("episode_reward_mean (true metric), mean over seeds")
    ax.legend(loc="best")
    return _save(ax, path, "True metric vs shaped return (reward-hacking check)")


def _optuna_plots(run: RunData, report: AnalysisReport, out: Path) -> list[Path]:
    """Optimization history and parallel coordinates through Optuna's matplotlib views."""
    from optuna.visualization import matplotlib as ovm
    study, params = metric_study(run, report.metric, report.sort)
    files = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna flags these views as experimental
        ax = ovm.plot_optimization_history(study, target_name=report.metric)
        ax.set_xlabel("trial (tuning configs, in the order run)")
        ax.set_ylabel(report.metric)
        files.append(_save(ax, out / "optimization_history.png", f"Optimization history ({report.metric})"))
        ranked = [r["parameter"] for r in report.ranking if r["parameter"] in params]
        if ranked and len(study.trials) >= 2:
            ax = ovm.plot_parallel_coordinate(study, params=ranked[:_MAX_PARALLEL_PARAMS],
                                              target_name=report.metric)
            files.append(_save(ax, out / "parallel_coordinate.png",
                               f"Parallel coordinates: one line per config, colour = {report.metric}",
                               min_size=(12, 6)))
    return files


def write_plots(run: RunData, report: AnalysisReport, out: Path) -> list[Path]:
    """Write every PNG that the data supports; returns the paths written."""
    files: list[Path] = []
    with plt.rc_context():  # Optuna's views switch global styles; keep them local
        files += _optuna_plots(run, report, out)
        if report.ranking:
            files.append(_plot_importances(report, out / "param_importances.png"))
        files.append(_plot_seed_spread(run, report, out / "seed_spread.png"))
        hacking = _plot_true_vs_shaped(run, out / "true_vs_shaped.png")
        files += [hacking] if hacking else []
    return files


# ---------------------------------------------------------------- TensorBoard
def _hparam_value(value):
    """TensorBoard HParams accept bool/str/int/float only."""
    return encode_choice(decode_value(value))


def _write_hparams(log_dir: Path, hparams: dict, metrics: dict) -> None:
    """What torch's SummaryWriter.add_hparams writes (experiment, session start and end, the metric
    scalars), with TensorBoard's own event writer and protos: analysis imports no torch."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams import metadata
    from tensorboard.plugins.hparams.api_pb2 import DataType, Experiment, HParamInfo, MetricInfo, MetricName, Status
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData, SessionEndInfo, SessionStartInfo
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    start, infos = SessionStartInfo(), []
    for name, value in hparams.items():
        if isinstance(value, (int, float)):  # bools too, as numbers (as torch writes them)
            start.hparams[name].number_value = float(value)
            infos.append(HParamInfo(name=name, type=DataType.Value("DATA_TYPE_FLOAT64")))
        else:
            start.hparams[name].string_value = str(value)
            infos.append(HParamInfo(name=name, type=DataType.Value("DATA_TYPE_STRING")))

    def plugin_summary(tag: str, data) -> Summary:
        content = HParamsPluginData(version=metadata.PLUGIN_DATA_VERSION, **data).SerializeToString()
        meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name=metadata.PLUGIN_NAME, content=content))
        return Summary(value=[Summary.Value(tag=tag, metadata=meta)])

    experiment = Experiment(hparam_infos=infos, metric_infos=[MetricInfo(name=MetricName(tag=m)) for m in metrics])
    summaries = [plugin_summary(metadata.EXPERIMENT_TAG, {"experiment": experiment}),
                 plugin_summary(metadata.SESSION_START_INFO_TAG, {"session_start_info": start}),
                 plugin_summary(metadata.SESSION_END_INFO_TAG, {"session_end_info": SessionEndInfo(
                     status=Status.Value("STATUS_SUCCESS"))})]
    summaries += [Summary(value=[Summary.Value(tag=m, simple_value=float(v))]) for m, v in metrics.items()]
    writer = EventFileWriter(str(log_dir))
    for summary in summaries:
        writer.add_event(Event(wall_time=time.time(), step=0, summary=summary))
    writer.close()


def write_tb_hparams(run: RunData, metric: str, out: Path) -> Path | None:
    """One HParams summary per complete config under out/<config_id>; None if TensorBoard is absent."""
    try:
        import tensorboard  # noqa: F401 - optional at analysis time
    except ImportError:
        return None
    if out.exists():
        shutil.rmtree(out)  # our own output: rewrite rather than pile up duplicate runs
    out.mkdir(parents=True)
    for c in run.configs:
        value = c.metric(metric, run.risk)
        if c.state != "complete" or value is None:
            continue
        hparams = {p: _hparam_value(v) for p, v in c.vector.items() if v is not None}
        metrics = {f"hparam/{metric}": value}
        for m in ("success_rate", "shaped_return"):
            if m != metric and (extra := c.metric(m)) is not None:
                metrics[f"hparam/{m}"] = extra
        name = f"{c.config_id}_{c.kind}" if c.kind in ("heldout", "test") else c.config_id
        _write_hparams(out / name, hparams, metrics)
    return out


# ---------------------------------------------------------------- rich table
# Shorter column headers when the full names do not fit (SB3's names where they are shorter).
_SHORT = {"policy_hidden_layer_sizes": "net_arch", "entropy_loss_scale": "ent_coef",
          "learning_epochs": "n_epochs", "discount_factor": "gamma", "lambda_param": "gae_lambda",
          "value_loss_scale": "vf_coef", "grad_norm_clip": "max_grad_norm", "learning_rate": "lr"}
_TABLE_STYLE: dict[str, Any] = {"box": box.SIMPLE_HEAD, "show_edge": False, "pad_edge": False, "collapse_padding": True,
                "title_justify": "left"}


def report_renderable(report: AnalysisReport, width: int | None = None):
    """Rich renderable: importance ranking, top configs, variance split and notes.

    It fits `width` columns (None: the console's width when printed) without cutting a cell:
    the top-configs table keeps its fixed columns and adds the most important parameters
    while they fit (full names if everything fits, else short headers); the rest are named
    in a note (every value is in analysis/trials.csv).
    """
    return _ReportView(report, width)


class _ReportView:
    """Lays the report out when printed, for the width asked for or the console's."""

    def __init__(self, report: AnalysisReport, width: int | None):
        self.report, self.width = report, width

    def __rich_console__(self, console, options):
        yield from _report_parts(self.report, console, self.width or options.max_width)


def _natural_width(console, table) -> int:
    from rich.measure import Measurement
    return Measurement.get(console, console.options.update(max_width=10_000), table).maximum


def _report_parts(report: AnalysisReport, console, width: int) -> list:
    from rich.table import Table
    from rich.text import Text

    imp = Table(title=f"Importance for {report.metric} ({report.importance})", **_TABLE_STYLE)
    imp.add_column("parameter", overflow="fold")
    imp.add_column("importance", justify="right", no_wrap=True)
    if any("importance_ped_anova" in r for r in report.ranking):
        imp.add_column("ped-anova", justify="right", no_wrap=True)
    imp.add_column("best value", overflow="fold")
    for r in report.ranking:
        cells = [r["parameter"], f"{r['importance']:.3f}"]
        if "importance_ped_anova" in r:
            cells.append(f"{r['importance_ped_anova']:.3f}")
        imp.add_row(*cells, _short(r["best_value"]))

    params = [r["parameter"] for r in report.ranking]
    fixed = {"config_id", "kind", "n_seeds", "ci95", report.metric}
    for c in report.top_configs:  # parameters that no ranking covers come last
        params += [k for k in c if k not in fixed and k not in params]
    top, shown = _top_table(report, params, short=False), params
    narrow = _natural_width(console, top) > width
    if narrow:
        shown = []
        for p in params:
            if _natural_width(console, _top_table(report, shown + [p], short=True)) > width:
                break
            shown.append(p)
        top = _top_table(report, shown, short=True)
    lines = []
    hidden = [p for p in params if p not in shown]
    if hidden:
        lines.append(f"not shown at this width: {', '.join(hidden)} (see analysis/trials.csv)")
    short = [f"{_SHORT[p]} = {p}" for p in shown if p in _SHORT and narrow]
    if short:
        lines.append("short names: " + ", ".join(short))
    if report.variance:
        lines.append(f"variance: seed share {report.variance['seed_share']:.2f}, "
                     f"config share {report.variance['config_share']:.2f}")
    lines += [f"note: {n}" for n in report.notes]
    lines += [f"wrote {p}" for p in report.files]
    return [imp, top, *report.tables, Text("\n".join(lines))]


def _top_table(report: AnalysisReport, params: list[str], short: bool):
    from rich.table import Table

    title = f"Top {len(report.top_configs)} configs by {report.metric} ({report.sort})"
    top = Table(title=title, **_TABLE_STYLE)
    head = ["#", "config", "kind", "value" if short else report.metric, "ci95", "n" if short else "seeds"]
    for col in head + [_SHORT.get(p, p) if short else p for p in params]:
        top.add_column(col, overflow="fold")
    for i, c in enumerate(report.top_configs, 1):
        top.add_row(str(i), c["config_id"], c["kind"], _short(c[report.metric]), _short(c["ci95"]),
                    str(c["n_seeds"]), *[_short(c.get(p)) for p in params])
    return top


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    return "" if value is None else str(value)
