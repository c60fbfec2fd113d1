"""Known-answer tests for automl.analysis.report on synthetic run directories (no training)."""
from __future__ import annotations

import csv
import hashlib
import math

import numpy as np
import pytest
import yaml
from rich.console import Console

from _synthetic_runs import DRIVERS, SPACE, SynthTrial, make_trials, sample_params, write_run
from automl.analysis import report as analysis, output as analyze
from automl.core.errors import AutoMLError
from automl.core.record import ConfigRecord as CoreRecord
from automl.analysis.variance import variance_split


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def known_run(tmp_path_factory):
    """60 configs x 3 seeds, value driven by DRIVERS only; reward weights absent from HP trials
    in the study (the HP phase held them fixed) but recorded in the state file."""
    trials = make_trials(60, 3, noise=0.2, seed=0)
    for t in trials[30:]:
        t.kind = "reward"
    # Edge cases that must never be ranked, and a held-out re-evaluation that may be.
    rng = np.random.default_rng(5)
    trials += [SynthTrial("config_900", sample_params(rng), [], state="failed"),
               SynthTrial("config_901", sample_params(rng), [], state="rejected"),
               SynthTrial("config_902", sample_params(rng), trials[0].seeds[:1], state="pruned")]
    nan_trial = make_trials(1, 3, seed=9)[0]
    nan_trial.config_id = "config_903"
    for s in nan_trial.seeds:
        s["episode_reward_mean"] = float("nan")
    held = make_trials(1, 3, seed=11, value_fn=lambda p: 50.0, kind="heldout")[0]
    held.config_id = "config_950"
    trials += [nan_trial, held]
    return write_run(tmp_path_factory.mktemp("known"), trials,
                     omit_in_study={"hp": ("reward.collision",)})


@pytest.fixture(scope="module")
def known_report(known_run):
    before = {p.name: _digest(p) for p in (known_run / "study.db", known_run / "automl_state.yaml")}
    report = analyze.run(known_run, importance="both")
    after = {p.name: _digest(p) for p in (known_run / "study.db", known_run / "automl_state.yaml")}
    assert before == after, "analysis must never write to the study or the state file"
    return report


@pytest.mark.parametrize("evaluator", ["fanova", "ped-anova"])
def test_two_driving_params_rank_on_top(known_run, evaluator):
    ranks = analysis.importances(analysis.load_run(known_run), evaluator)
    assert {p for p, _ in ranks} == set(SPACE)
    assert {p for p, _ in ranks[:2]} == set(DRIVERS)
    assert math.isclose(sum(v for _, v in ranks), 1.0, rel_tol=1e-6)


def test_missing_weights_are_filled_from_the_state_file(known_run):
    run = analysis.load_run(known_run)
    hp = [c for c in run.configs if c.kind == "hp" and c.state == "complete"]
    assert all(run.filled[c.number] == ["reward.collision"] for c in hp)
    assert any("filled from the state file" in n for n in run.notes)


def test_without_state_file_importance_uses_the_intersection(tmp_path):
    trials = make_trials(20, 2, seed=3)
    for t in trials[:10]:
        t.kind = "reward"  # half the configs carry the weight, half do not
    run_dir = write_run(tmp_path, trials, state=False, omit_in_study={"hp": ("reward.collision",)})
    report = analyze.run(run_dir, plots=False, tensorboard=False)
    assert "reward.collision" not in {r["parameter"] for r in report.ranking}
    assert any("not ranked" in n and "reward.collision" in n for n in report.notes)


def test_yaml_matches_the_schema(known_report, known_run):
    doc = yaml.safe_load((known_run / "analysis" / "hyperparameter_importance.yaml").read_text())
    assert doc["metric"] == "episode_reward_mean"
    ranking = doc["importance_ranking"]
    assert [r["parameter"] for r in ranking[:2]] and {r["parameter"] for r in ranking[:2]} == set(DRIVERS)
    assert all(set(r) == {"parameter", "importance", "importance_ped_anova", "best_value"} for r in ranking)
    assert [r["importance"] for r in ranking] == sorted((r["importance"] for r in ranking), reverse=True)
    top = doc["top_5_configs"]
    assert len(top) == 5
    for entry in top:
        assert set(SPACE) | {"config_id", "kind", "episode_reward_mean", "n_seeds", "ci95"} <= set(entry)
        assert len(entry["ci95"]) == 2 and entry["n_seeds"] == 3
        assert isinstance(entry["policy_hidden_layer_sizes"], list)  # decoded from "256-128-64"
    values = [e["episode_reward_mean"] for e in top]
    assert values == sorted(values, reverse=True)
    assert top[0]["config_id"] == "config_950" and top[0]["kind"] == "heldout"  # tables allow held-out
    assert set(doc["variance"]) == {"seed_share", "config_share"}
    assert math.isclose(doc["variance"]["seed_share"] + doc["variance"]["config_share"], 1.0, abs_tol=1e-3)
    best_tuning = next(e for e in top if e["kind"] != "heldout")
    assert ranking[0]["best_value"] is not None and best_tuning["config_id"] != "config_903"


def test_failed_rejected_pruned_and_nan_configs_are_never_ranked(known_report):
    ranked_ids = {c["config_id"] for c in known_report.top_configs}
    run = analysis.load_run(known_report.run_dir)
    all_ranked = {c.config_id for c in run.ranked("episode_reward_mean")}
    assert not {"config_900", "config_901", "config_902", "config_903"} & (ranked_ids | all_ranked)
    states = {c.config_id: c.state for c in run.configs}
    assert states["config_901"] == "rejected" and states["config_902"] == "pruned"
    assert states["config_903"] == "failed"  # NaN objective: Optuna FAIL wins over attr "complete"
    assert "config_903" not in {c.config_id for c in run.ranked("success_rate")}


def test_heldout_excluded_from_importance(known_run):
    study, _ = analysis.metric_study(analysis.load_run(known_run), "episode_reward_mean")
    assert "config_950" not in {t.user_attrs["config_id"] for t in study.trials}
    assert len(study.trials) == 60


def test_csv_parses_back_with_every_column(known_report, known_run):
    run = analysis.load_run(known_run)
    with (known_run / "analysis" / "trials.csv").open() as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        header = reader.fieldnames
    assert len(rows) == len(run.configs)
    expected = {"config_id", "kind", "state", *SPACE, *run.known_metrics(), "score_mean", "n_seeds",
                "seed0_seed", "seed2_episode_reward_mean", "seed2_shaped_return"}
    assert expected <= set(header)
    assert len(header) == len(set(header))
    by_id = {r["config_id"]: r for r in rows}
    c0 = next(c for c in run.configs if c.config_id == "config_000")
    assert float(by_id["config_000"]["learning_rate"]) == pytest.approx(c0.params["learning_rate"])
    assert float(by_id["config_000"]["reward.collision"]) == pytest.approx(c0.vector["reward.collision"])
    assert by_id["config_900"]["state"] == "failed" and by_id["config_900"]["episode_reward_mean"] == ""
    assert yaml.safe_load(by_id["config_000"]["policy_hidden_layer_sizes"]) in ([128, 64], [256, 128, 64],
                                                                             [512, 256, 128])


def test_plots_and_tensorboard_are_written(known_report, known_run):
    out = known_run / "analysis"
    for name in ("optimization_history", "param_importances", "parallel_coordinate", "seed_spread",
                 "true_vs_shaped"):
        png = out / f"{name}.png"
        assert png in known_report.files and png.read_bytes()[:4] == b"\x89PNG"
    events = list((out / "tb_hparams").rglob("events.out.tfevents.*"))
    assert len(events) >= 61  # one HParams run per complete config (60 tuning + 1 held-out)
    # what TensorBoard's HParams dashboard reads: the three plugin tags, the hparams and the metric
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    acc = EventAccumulator(str(out / "tb_hparams" / "config_000")).Reload()
    assert set(acc.PluginTagToContent(metadata.PLUGIN_NAME)) == {
        metadata.EXPERIMENT_TAG, metadata.SESSION_START_INFO_TAG, metadata.SESSION_END_INFO_TAG}
    start = metadata.parse_session_start_info_plugin_data(
        acc.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.SESSION_START_INFO_TAG])
    assert "learning_rate" in start.hparams and start.hparams["learning_rate"].number_value > 0
    assert "hparam/episode_reward_mean" in acc.Tags()["scalars"]


def test_table_renders(known_report):
    console = Console(record=True, width=160)
    console.print(analyze.table(known_report))
    text = console.export_text()
    assert "learning_rate" in text and "config_950" in text and "seed share" in text


def _printed(renderable, width):
    console = Console(record=True, width=width)
    console.print(renderable)
    return console.export_text()


def _top_header(text):
    """The header row of the top-configs table (the line after its title)."""
    lines = text.splitlines()
    return lines[next(i for i, line in enumerate(lines) if line.startswith("Top ")) + 1].split()


def test_table_fits_80_columns_without_cutting_cells(known_report):
    text = _printed(analyze.table(known_report, width=80), 80)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text
    for c in known_report.top_configs:        # every top config in full, with its value and CI
        row = next(line for line in text.splitlines() if f" {c['config_id']} " in line)
        assert f" {c['episode_reward_mean']:.4g} " in row
        lo, hi = c["ci95"]
        assert f"[{lo:.4g}, {hi:.4g}]" in row
    first = next(line for line in text.splitlines() if line.startswith("1 "))
    assert first.split()[:4] == ["1", "config_950", "heldout", "50"]     # held-out value is 50
    for r in known_report.ranking:            # importance table: full names and values
        row = next(line for line in text.splitlines() if line.startswith(r["parameter"] + " "))
        assert f"{r['importance']:.3f}" in row and f"{r['importance_ped_anova']:.3f}" in row
    header = _top_header(text)
    assert header[:6] == ["#", "config", "kind", "value", "ci95", "n"]
    shown = header[6:]
    # the two parameters that drive the value (ranked first) fit, in ranking order, short-named
    order = {"learning_rate": "lr", "reward.collision": "reward.collision"}
    assert shown == [order[r["parameter"]] for r in known_report.ranking[:2]]
    assert set(DRIVERS) == {r["parameter"] for r in known_report.ranking[:2]}
    assert "short names: lr = learning_rate" in text
    assert "not shown at this width:" in text
    hidden = " ".join(text.split("not shown at this width:")[1].split("(see")[0].split())
    assert hidden.count(",") == len(known_report.ranking) - len(shown) - 1


def test_wide_table_shows_more_columns(known_report):
    narrow = _top_header(_printed(analyze.table(known_report, width=80), 80))
    text = _printed(analyze.table(known_report, width=160), 160)
    wide = _top_header(text)
    assert len(wide) == 6 + len(known_report.ranking) > len(narrow)
    assert "not shown at this width" not in text and "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 160


def test_table_width_defaults_to_the_console(known_report):
    assert _printed(analyze.table(known_report), 80) == _printed(analyze.table(known_report, width=80), 80)
    assert _printed(analyze.table(known_report), 160) == _printed(analyze.table(known_report, width=160), 160)


def test_sort_ascending_changes_top_configs(known_run, known_report):
    low = analyze.run(known_run, sort="ascending", top=3, plots=False, tensorboard=False)
    values = [c["episode_reward_mean"] for c in low.top_configs]
    assert values == sorted(values) and len(values) == 3
    assert low.top_configs[0]["config_id"] != known_report.top_configs[0]["config_id"]
    doc = yaml.safe_load((known_run / "analysis" / "hyperparameter_importance.yaml").read_text())
    assert "top_3_configs" in doc


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    return write_run(tmp_path_factory.mktemp("small"), make_trials(12, 3, noise=0.2, seed=6))


@pytest.mark.parametrize("metric", ["success_rate", "shaped_return", "iqm", "reference_return"])
def test_other_metrics(small_run, metric):
    report = analyze.run(small_run, metric=metric, top=4, plots=False, tensorboard=False)
    values = [c[metric] for c in report.top_configs]
    assert values == sorted(values, reverse=True)


def test_unknown_metric_lists_the_known_ones(known_run):
    with pytest.raises(AutoMLError) as err:
        analyze.run(known_run, metric="foo", plots=False, tensorboard=False)
    msg = str(err.value)
    assert "\n" not in msg and "--metric: unknown metric 'foo'" in msg
    assert "episode_reward_mean" in msg and "success_rate" in msg and "reference_return" in msg


@pytest.mark.parametrize("kwargs, flag", [({"sort": "up"}, "--sort"), ({"importance": "shap"}, "--importance"),
                                          ({"top": 0}, "--top")])
def test_bad_arguments(known_run, kwargs, flag):
    with pytest.raises(AutoMLError, match=flag):
        analyze.run(known_run, plots=False, tensorboard=False, **kwargs)


def test_missing_run_dir(tmp_path):
    with pytest.raises(AutoMLError, match="no automl_state.yaml or study.db found"):
        analyze.run(tmp_path / "nowhere")


def test_no_complete_trial(tmp_path):
    rng = np.random.default_rng(0)
    trials = [SynthTrial("config_000", sample_params(rng), [], state="pruned"),
              SynthTrial("config_001", sample_params(rng), [], state="failed")]
    with pytest.raises(AutoMLError, match=r"no complete config .* \(1 failed, 1 pruned\)"):
        analyze.run(write_run(tmp_path, trials, status="running"))


def test_single_trial(tmp_path):
    report = analyze.run(write_run(tmp_path, make_trials(1, 3)), plots=True, tensorboard=False)
    assert report.ranking == [] and report.variance is None and len(report.top_configs) == 1
    assert any("at least 2 complete configs" in n for n in report.notes)
    assert (tmp_path / "analysis" / "optimization_history.png").exists()


def test_running_run_with_partial_data(tmp_path):
    trials = make_trials(8, 3, seed=4)
    trials[-1].state, trials[-1].seeds = "running", trials[-1].seeds[:1]
    report = analyze.run(write_run(tmp_path, trials, status="running"), plots=False, tensorboard=False)
    assert report.n_complete == 7 and report.n_trials == 8
    assert any("still going" in n for n in report.notes)
    assert any("rough hint" in n for n in report.notes)


def test_state_file_only(tmp_path):
    run_dir = write_run(tmp_path, make_trials(60, 3, noise=0.2, seed=0), study=False)
    run = analysis.load_run(run_dir)
    assert run.source == "state" and set(run.distributions) == set(SPACE)
    assert {p for p, _ in analysis.importances(run, "fanova")[:2]} == set(DRIVERS)


def test_study_and_state_file_give_the_same_core_records(tmp_path):
    """Both sources load as core ConfigRecords: HPs in params (study encoding kept), weights in
    reward_weights, the same vector; a filled weight goes to reward_weights, listed in run.filled."""
    trials = make_trials(8, 2, seed=4)
    for t in trials[4:]:
        t.kind = "reward"
    study = analysis.load_run(write_run(tmp_path / "study", trials, state=False))
    state = analysis.load_run(write_run(tmp_path / "state", trials, study=False))
    assert (study.source, state.source) == ("study", "state")
    assert all(type(c) is CoreRecord for c in study.configs + state.configs)
    assert study.configs == state.configs and [c.number for c in study.configs] == list(range(8))
    assert [c.vector for c in state.configs] == [t.params for t in trials]  # "256-128-64" as the study has it
    assert all(set(c.reward_weights) == {"collision"} and "reward.collision" not in c.params for c in state.configs)
    filled = analysis.load_run(write_run(tmp_path / "filled", trials, omit_in_study={"hp": ("reward.collision",)}))
    assert filled.filled == {i: ["reward.collision"] for i in range(4)}
    assert filled.configs == state.configs


def test_variance_split_known_answers():
    noise = make_trials(40, 5, noise=1.0, signal=0.0, seed=1)
    clean = make_trials(40, 5, noise=0.0, seed=1)
    split_noise = variance_split({t.config_id: [s["episode_reward_mean"] for s in t.seeds] for t in noise})
    split_clean = variance_split({t.config_id: [s["episode_reward_mean"] for s in t.seeds] for t in clean})
    assert split_noise["seed_share"] > 0.85
    assert split_clean["seed_share"] == pytest.approx(0.0, abs=1e-9)
    assert split_clean["config_share"] == pytest.approx(1.0)
    assert variance_split({"a": [1.0, 2.0]}) is None  # one config: no between-config estimate
    assert variance_split([[1.0], [2.0]]) is None  # no replicate seeds
    assert variance_split([[1.0, float("nan"), 3.0], [5.0, 7.0]])["seed_share"] < 1.0


def test_unreadable_or_foreign_study_is_one_line(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "study.db").write_text("not sqlite")
    with pytest.raises(AutoMLError, match=r"study.db: cannot read Optuna study 'automl' \(file is not a database\)"):
        analysis.load_run(tmp_path / "a")
    import optuna
    optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}", study_name="other")
    with pytest.raises(AutoMLError, match=r"no Optuna study named 'automl' \(found: other\)"):
        analysis.load_run(tmp_path)


def test_nan_config_in_state_file_is_not_ranked(tmp_path):
    trials = make_trials(4, 3, seed=2)
    trials[0].seeds[0]["episode_reward_mean"] = float("nan")  # score.mean becomes NaN
    run = analysis.load_run(write_run(tmp_path, trials, study=False))
    assert "config_000" not in {c.config_id for c in run.ranked("episode_reward_mean")}
    assert len(run.ranked("episode_reward_mean")) == 3
