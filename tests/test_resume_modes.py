"""--mode joint killed with SIGKILL mid-run, then resumed by the same command: it finishes, losing only the
seed that was in flight.

The driver is frozen at a known point (tests/_paused_driver.py: after 3 seed jobs ended and were recorded,
with the 4th on a worker) and killed there, so the test never races the run. The known answers: what was
recorded before the kill is kept as it was, the resumed session trains exactly the seeds not recorded (the
in-flight one again, then the rest; none twice), every config ends complete on both seeds, the sampler was
told every score, and the retrained in-flight seed has the value its config and seed give when trained
alone. The pbt kill-and-resume is in test_pbt_e2e.py; a longer joint one in test_joint.py (slow).
"""
import json

import optuna
import pytest
import yaml
from _cli import TINY, automl, state
from _paused_driver import kill_when_paused

from automl.train.torch_train import train_seed_torch

STEPS, EVAL_EVERY, EPISODES = 2048, 1024, 4


def command(run_dir):
    return ["--mode", "joint", "--env", "cartpole", "--ladder", "off", "--space", TINY, "--budget-hours", "0.3", "--hp-trials", "2",
            "--reward-generations", "1", "--reward-population", "2", "--seeds", "2", "--n-jobs", "1", "--top-k", "1",
            "--trial-steps", str(STEPS), "--eval-every", str(EVAL_EVERY), "--eval-episodes", str(EPISODES),
            "--pruner", "none", "--search-method", "random", "--seed-batching", "off",
            "--run-dir", str(run_dir), "--quiet"]


def _trained_after_resume(run_dir) -> list[str]:
    """config:kind:seed of every seed the resumed session finished, in order."""
    lines = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    start = next(i for i, e in enumerate(lines) if e["event"] == "resume")
    return [f"{e['config_id']}:{e['kind']}:{e['seed']}" for e in lines[start:] if e["event"] == "seed_done"]


def test_a_joint_run_killed_mid_config_resumes_and_loses_only_the_seed_in_flight(tmp_path):
    run_dir = tmp_path / "run"
    seen = kill_when_paused(tmp_path / "paused.json", 3, command(run_dir))
    assert seen["ended"] == ["config_000:joint:0", "config_000:joint:1", "config_001:joint:0"]
    assert seen["in_flight"] == ["config_001:joint:1"]
    before = {t["config_id"]: t for t in state(run_dir)["trials"]}
    assert [(c, t["state"], [s["seed"] for s in t["seeds"]]) for c, t in before.items()] == [
        ("config_000", "complete", [0, 1]), ("config_001", "running", [0])]

    again = automl(*command(run_dir))
    assert again.returncode == 0, again.stderr
    st = state(run_dir)
    assert st["status"] == "finished"
    joint = [t for t in st["trials"] if t["kind"] == "joint"]
    assert [t["config_id"] for t in joint] == [f"config_{i:03d}" for i in range(4)]   # none lost, none twice
    assert all(t["state"] == "complete" and [s["seed"] for s in t["seeds"]] == [0, 1] for t in joint)
    # kept as recorded: config_000 whole, config_001's seed 0 and its proposal
    assert joint[0] == before["config_000"]
    for key in ("params", "reward_weights"):
        assert joint[1][key] == before["config_001"][key]
    assert joint[1]["seeds"][0] == before["config_001"]["seeds"][0]
    # the resumed session trained the in-flight seed and the never-started ones, nothing recorded before
    tuned = [j for j in _trained_after_resume(run_dir) if ":joint:" in j]
    assert tuned == ["config_001:joint:1", "config_002:joint:0", "config_002:joint:1",
                     "config_003:joint:0", "config_003:joint:1"]
    # the retrained in-flight seed: its config on seed 1, trained alone
    fixed = yaml.safe_load(open(TINY))["fixed"]
    alone = train_seed_torch({**fixed, **joint[1]["params"]}, env="cartpole", seed=1, total_steps=STEPS,
                             eval_every=EVAL_EVERY, eval_episodes=EPISODES, reward_weights=joint[1]["reward_weights"],
                             device="cpu")
    assert joint[1]["seeds"][1]["episode_reward_mean"] == pytest.approx(alone.episode_reward_mean, abs=1e-3)
    # the joint sampler was told all four scores; nothing left running in either study
    url = f"sqlite:///{run_dir / 'study.db'}"
    told = optuna.load_study(study_name="automl-joint", storage=url).get_trials()
    assert [t.state.name for t in told] == ["COMPLETE"] * 4
    assert [t.value for t in told] == pytest.approx([t["score"]["mean"] for t in joint], abs=1e-3)
    record = optuna.load_study(study_name="automl", storage=url).get_trials()
    assert "RUNNING" not in {t.state.name for t in record}
    best = yaml.safe_load((run_dir / "best.yaml").read_text())
    assert best["test_score"]["n_seeds"] == 2 and best["baseline"]["test_score"]["n_seeds"] == 2
