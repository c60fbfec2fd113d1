"""bench/compare_modes.py's extra test: which command it runs and how its seeds are pooled (known answers)."""
import argparse
import json
import importlib.util
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("compare_modes", ROOT / "bench" / "compare_modes.py")
cm = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cm)


def _args(tmp_path, **kw):
    return argparse.Namespace(**{"env": "navigation", "out": str(tmp_path), "n_jobs": 2, "extra_test_seeds": 3,
                                 "modes": ["stage", "pbt", "nosearch"], "base_seeds": [0, 1], "budget_min": 20,
                                 "seeds": 3, **kw})


def _results(path: Path, values: dict) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "results.yaml").write_text(yaml.safe_dump({"seeds": [
        {"seed": s, "state": "complete", "episode_reward_mean": v} for s, v in values.items()]}))


def test_extra_command_trains_best_yaml_at_its_length(tmp_path):
    args = _args(tmp_path)
    run = cm.run_dir("stage", 0, args)
    run.mkdir(parents=True)
    assert cm.extra_command("stage", 0, args) is None  # no best.yaml yet: nothing to train
    (run / "best.yaml").write_text(yaml.safe_dump({"params": {"n_timesteps": 2_000_000}, "test_score": {"iqm": 1},
                                                   "sb3": {"n_timesteps": 1_916_928}}))
    cmd = cm.extra_command("stage", 0, args)
    assert cmd[:3] == ["train", "--config", str(run / "best.yaml")]
    assert cmd[cmd.index("--seed-list") + 1] == "3000,3001,3002"
    assert cmd[cmd.index("--trial-steps") + 1] == "1916928"  # the re-checked length, not the space's 2M
    assert cmd[cmd.index("--run-dir") + 1] == str(run / "extra_test")
    assert cm.extra_command("pbt", 0, args) is None  # a schedule, which automl train does not replay
    nos = cm.extra_command("nosearch", 1, args)
    assert "--trial-steps" not in nos and nos[nos.index("--run-dir") + 1] == str(tmp_path / "nosearch_extra_test")


def _finished_run(path: Path, test: list[float], baseline: list[float], rungs=(639_000, 1_917_000)) -> None:
    """A finished ladder run's state file as automl writes it: its test phase, the winner and the baseline."""
    path.mkdir(parents=True, exist_ok=True)
    trials = [{"kind": "stage", "config_id": "config_001", "state": "complete"},
              {"kind": "test", "config_id": "config_001", "seeds": [
                  {"seed": 2000 + i, "state": "complete", "episode_reward_mean": v} for i, v in enumerate(test)]},
              {"kind": "test", "config_id": "config_000", "seeds": [
                  {"seed": 2000 + i, "state": "complete", "episode_reward_mean": v} for i, v in enumerate(baseline)]}]
    (path / "automl_state.yaml").write_text(yaml.safe_dump({
        "status": "budget_exhausted", "budget": {"elapsed_s": 1150.0}, "plan": {"trial_steps": rungs[-1]},
        "ladder": {"rungs": list(rungs)}, "trials": trials,
        "test": [{"config_id": "config_001", "baseline": False}, {"config_id": "config_000", "baseline": True}]}))
    (path / "best.yaml").write_text(yaml.safe_dump({"config_id": "config_001", "params": {"learning_rate": 1e-3},
                                                    "reward_weights": {"goal": 9.0}, "sb3": {"n_timesteps": rungs[-1]},
                                                    "test_score": {"iqm": 1}}))


def _nosearch_run(path: Path, test: list[float]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "results.yaml").write_text(yaml.safe_dump({"wall_s": 100.0, "seeds": [
        {"seed": 2000 + i, "state": "complete", "episode_reward_mean": v, "steps": 2_015_232}
        for i, v in enumerate(test)]}))


def test_extra_values_pool_runs_and_count_nosearch_once(tmp_path):
    args = _args(tmp_path, modes=["stage", "nosearch"])
    for seed in (0, 1):
        _finished_run(cm.run_dir("stage", seed, args), [0.8, 0.9, 0.7], [0.6, 0.5, 0.7])
        _nosearch_run(cm.run_dir("nosearch", seed, args), [0.5, 0.6, 0.4])
    _results(cm.run_dir("stage", 0, args) / "extra_test", {3000: 0.9, 3001: 0.8, 3002: 1.0})
    _results(cm.run_dir("stage", 1, args) / "extra_test", {3000: 0.5, 3001: 0.6})  # one seed missing: not used
    _results(tmp_path / "nosearch_extra_test", {3000: 0.1, 3001: 0.2, 3002: 0.3})
    assert cm.extra_values("stage", 0, args) == [0.9, 0.8, 1.0] and cm.extra_values("stage", 1, args) == []
    rows = {r["mode"]: r for r in cm.report(args)}
    assert rows["stage"]["extra_test_values"] == [0.9, 0.8, 1.0]
    assert rows["nosearch"]["extra_test_values"] == [0.1, 0.2, 0.3]  # the priors' seeds, once for both base seeds
    assert rows["nosearch"]["extra_test_iqm"][0] == 0.2
    # paired by seed against the priors: base seed 0's three seeds (base seed 1 ran two of three: left out)
    d = cm.paired_diff("stage", "nosearch", args)
    assert d[0] == 0.7 and d[3] == 3 and d[1] <= 0.7 <= d[2]
    assert rows["stage"]["extra_test_paired"]["nosearch"] == d


def test_recorded_runs_pool_with_a_later_batch_and_pair_only_within_a_batch(tmp_path):
    """--record keeps the runs (a new machine has no progress/); --records pools them with a later comparison.
    Known answers: the pooled values, and paired differences taken only within each batch."""
    first = _args(tmp_path / "a", modes=["stage", "random", "nosearch"], base_seeds=[0], record=None, records=[])
    _finished_run(cm.run_dir("stage", 0, first), [0.9, 0.9, 0.8], [0.6, 0.6, 0.6])
    _finished_run(cm.run_dir("random", 0, first), [0.8, 0.7, 0.8], [0.6, 0.5, 0.6], rungs=(524_000, 1_441_000))
    _nosearch_run(cm.run_dir("nosearch", 0, first), [0.5, 0.6, 0.4])
    _results(cm.run_dir("stage", 0, first) / "extra_test", {3000: 0.9, 3001: 1.0, 3002: 0.8})
    _results(cm.run_dir("random", 0, first) / "extra_test", {3000: 0.8, 3001: 0.8, 3002: 0.8})
    _results(tmp_path / "a" / "nosearch_extra_test", {3000: 0.5, 3001: 0.5, 3002: 0.5})
    rec = tmp_path / "results" / "nav20_old.json"
    cm.report(argparse.Namespace(**{**vars(first), "record": str(rec)}))
    kept = json.loads(rec.read_text())
    assert kept["batch"] == "nav20_old" and kept["budget_min"] == 20 and len(kept["runs"]) == 3
    stage = next(r for r in kept["runs"] if r["mode"] == "stage")
    assert stage["test"] == [0.9, 0.9, 0.8] and stage["extra"] == [0.9, 1.0, 0.8]
    assert stage["winner"]["n_timesteps"] == 1_917_000 and stage["winner"]["reward_weights"] == {"goal": 9.0}
    # a later comparison on another machine: base seed 1 only, its own nosearch extra test
    later = _args(tmp_path / "b", modes=["stage", "random", "nosearch"], base_seeds=[1], record=None,
                  records=[str(rec)])
    _finished_run(cm.run_dir("stage", 1, later), [0.7, 0.8, 0.9], [0.5, 0.5, 0.5])
    _finished_run(cm.run_dir("random", 1, later), [0.9, 0.9, 0.9], [0.5, 0.6, 0.5])
    _nosearch_run(cm.run_dir("nosearch", 1, later), [0.5, 0.6, 0.4])
    _results(cm.run_dir("stage", 1, later) / "extra_test", {3000: 0.6, 3001: 0.7, 3002: 0.8})
    _results(cm.run_dir("random", 1, later) / "extra_test", {3000: 0.7, 3001: 0.7, 3002: 0.7})
    _results(tmp_path / "b" / "nosearch_extra_test", {3000: 0.4, 3001: 0.4, 3002: 0.4})
    rows = {r["mode"]: r for r in cm.report(later)}
    assert rows["stage"]["runs"] == 2 and rows["stage"]["extra_test_values"] == [0.6, 0.7, 0.8, 0.9, 1.0, 0.8]
    assert rows["random"]["trial_steps"] == [[639_000, 1_917_000], [524_000, 1_441_000]]
    assert rows["nosearch"]["extra_test_values"] == [0.4, 0.4, 0.4, 0.5, 0.5, 0.5]   # once per batch
    # stage - random: (-0.1, 0, +0.1) in the later batch, (+0.1, +0.2, 0) in the kept one -> mean +0.05 over 6
    d = rows["stage"]["extra_test_paired"]["random"]
    assert d[0] == 0.05 and d[3] == 6 and d[1] <= 0.05 <= d[2]
    assert rows["stage"]["extra_test_paired"]["nosearch"][3] == 6   # each batch paired with its own priors
    assert rows["stage"]["extra_test_paired"]["nosearch"][0] == 0.35   # (0.2 + 0.3 + 0.4) and (0.4 + 0.5 + 0.3), over 6
