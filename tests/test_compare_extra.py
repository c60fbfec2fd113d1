"""bench/compare_modes.py's extra test: which command it runs and how its seeds are pooled (known answers)."""
import argparse
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


def test_extra_values_pool_runs_and_count_nosearch_once(tmp_path):
    args = _args(tmp_path, modes=["stage", "nosearch"])
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
