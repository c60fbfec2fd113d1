"""The online tuner attached to a real SB3 training run (automl/train/tuning.py in the seed-job loop): a full-state
snapshot, a rollback that restores it bit for bit, and the tuner's actions carried out while it trains."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml
from _cli import ROOT, TINY, automl

from automl.core.tune_recipe import Mutation, Recipe
from automl.search.online import OnlineTuner
from automl.train import loop
from automl.train.sb3_train import build_run
from automl.train.tuning import TuneHook

PARAMS = {"num_envs": 8, "rollouts": 32, "mini_batches": 2, "learning_epochs": 2, "learning_rate": 1e-3}


def _build(seed=0, eval_every=256, total=4096):
    """An SB3 run in the seed-job loop, set up to train (``job.run_until(steps)``), not trained yet."""
    trainer = build_run(PARAMS, "cartpole", seed=seed, eval_episodes=4, device="cpu")
    job = loop.SeedJob(trainer, loop.Plan(total, eval_every), None, None, time.time())
    trainer.begin(total, False)
    return trainer, job


def _same(a, b, path=""):
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            _same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{path}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), path
    else:
        assert a == b, path


def test_a_rollback_restores_the_whole_training_state_bit_for_bit_and_training_continues_identically():
    torch.set_num_threads(1)
    trainer, job = _build()
    job.run_until(512)
    snap = job.snapshot()
    trainer.set_values({"learning_rate": 3e-3, "ent_coef": 0.05}, {"pole_angle": -1.0})
    job.run_until(1024)                                                # the mutated segment
    assert trainer.steps == 1024 and trainer.values()["learning_rate"] == pytest.approx(3e-3)
    job.restore(snap)
    _same(job.snapshot(), snap)                                        # every tensor, RNG, env and eval equal
    assert trainer.steps == 512 and trainer.values()["reward.pole_angle"] == 0.0
    job.run_until(768)
    # the same run without the mutation
    ref, ref_job = _build()
    ref_job.run_until(768)
    for (k, v), (_, w) in zip(trainer.model.policy.state_dict().items(), ref.model.policy.state_dict().items()):
        assert torch.equal(v, w), k


def test_the_tuner_inside_learn_rolls_a_rejected_mutation_back_and_logs_it(tmp_path):
    torch.set_num_threads(1)
    recipe = Recipe(metric="reference_return", mutations=(Mutation("learning_rate", bounds=(2.0, 3.0), cooldown=0),),
                    algorithm="random", epsilon=1e9, horizon=1, max_global_reject_streak=2)   # nothing can pass
    tuner = OnlineTuner(recipe, "active", seed=0)
    trainer, job = _build(eval_every=256)
    hook = TuneHook({"tuner": tuner, "log_dir": str(tmp_path)}, job)
    job.run_until(2048, hook=hook)
    kinds = [a["action"] for a in hook.actions]
    assert kinds == ["apply", "rollback", "apply", "rollback"] and tuner.blocked == "2 rejections in a row"
    assert trainer.values()["learning_rate"] == pytest.approx(1e-3)   # back to the original value
    applied = [json.loads(line) for line in (tmp_path / "tune.mutations.jsonl").read_text().splitlines()]
    judged = [json.loads(line) for line in (tmp_path / "tune.segments.jsonl").read_text().splitlines()]
    judged = [s for s in judged if s["event"] == "segment"]
    assert [m["old"] for m in applied] == [1e-3, 1e-3] and all(2e-3 <= m["new"] <= 3e-3 for m in applied)
    assert [s["decision"] for s in judged] == ["reject", "reject"]
    assert tuner.kl_hist and all(k > 0 for k in tuner.kl_hist)   # the updates' approx_kl reaches the tuner
    assert tuner.base_kl_hist == tuner.kl_hist   # a constant learning rate: the KL as at the rate set is the KL
    # each rollback went back to the step of its mutation: the rejected segments' steps were re-trained
    assert [a["step"] for a in hook.actions if a["action"] == "apply"] == [s["from_step"] for s in judged]


def _recipe(tmp_path, algorithm="random", **acceptance):
    doc = {"objective": {"primary": "true_metric"},
           "actuators": {"learning_rate": {"mode": "mult", "bounds": [0.5, 3.0], "cooldown": 0},
                         "reward.pole_angle": {"mode": "abs", "bounds": [-1.0, 0.0], "log": False, "cooldown": 0}},
           "search": {"algorithm": algorithm, "startup_trials": 2},
           "acceptance": {"epsilon": 0.0, "horizon": 1, **acceptance},
           "safety": {"max_global_reject_streak": 20}}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def _train(run_dir, recipe, *extra, steps="24576"):
    return automl("train", "--config", TINY, "--env", "cartpole", "--seed-list", "0", "--trial-steps", steps,
                  "--tune", recipe, "--run-dir", str(run_dir), *extra)


def test_automl_train_tune_logs_its_mutations_and_a_replay_reproduces_them(tmp_path):
    # paired control (the example recipe's): apply, control, adopt or keep_control, all replayed in order
    recipe = _recipe(tmp_path, algorithm="tpe", control="paired")
    a = _train(tmp_path / "a", recipe, "--tune-mode", "active")
    assert a.returncode == 0, a.stderr
    logs = tmp_path / "a" / "tune" / "seed_0"
    applied = [json.loads(x) for x in (logs / "tune.mutations.jsonl").read_text().splitlines()]
    judged = [json.loads(x) for x in (logs / "tune.segments.jsonl").read_text().splitlines()]
    judged = [s for s in judged if s["event"] == "segment"]
    summary = json.loads((logs / "tune.summary.json").read_text())
    assert applied and summary["applied"] == len(applied) and summary["judged"] == len(judged)
    assert {s["decision"] for s in judged} <= {"accept", "reject"} and all(s["control"] == "paired" for s in judged)
    import optuna

    told = optuna.load_study(study_name="learning_rate", storage=f"sqlite:///{logs / 'tune.study.sqlite'}")
    assert len([t for t in told.trials if t.state.name == "COMPLETE"]) == sum(s["name"] == "learning_rate" for s in judged)
    status = automl("tune", "status", "--run-dir", str(tmp_path / "a"))
    assert status.returncode == 0 and f"applied {len(applied)}" in status.stdout
    b = _train(tmp_path / "b", recipe, "--tune-mode", "replay", "--tune-replay", str(tmp_path / "a"))
    assert b.returncode == 0, b.stderr
    replayed = [json.loads(x) for x in (tmp_path / "b" / "tune" / "seed_0" / "tune.mutations.jsonl").read_text().splitlines()]
    assert [(r["step"], r["name"], r["value"]) for r in replayed if r["action"] == "apply"] == \
        [(m["step"], m["name"], m["new"]) for m in applied]
    ra, rb = (yaml.safe_load((tmp_path / d / "results.yaml").read_text())["seeds"][0] for d in ("a", "b"))
    assert ra["evals"] == rb["evals"] and ra["episode_reward_mean"] == rb["episode_reward_mean"]   # same run, CPU


def test_a_mode_switch_from_another_process_takes_effect_at_the_next_safe_point(tmp_path):
    """The run is frozen (SIGSTOP to its process group) while `tune enable` and `tune set` write the control
    file and the summary's step is read, so neither can land after the run ends nor a safe point fall between
    the write and the read, however fast or slow the machine: the switch takes effect at the next safe point."""
    recipe = _recipe(tmp_path)
    run_dir = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, "-m", "automl", "train", "--config", TINY, "--env", "cartpole",
                             "--seed-list", "0", "--trial-steps", "98304", "--tune", recipe, "--tune-mode", "observe",
                             "--run-dir", str(run_dir)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    summary = run_dir / "tune" / "seed_0" / "tune.summary.json"
    try:
        s = _poll_summary(proc, summary, min_step=20000, ceiling_s=120)
        os.killpg(proc.pid, signal.SIGSTOP)
        assert proc.poll() is None, proc.stderr.read()
        s = json.loads(summary.read_text())  # final while frozen
        assert s["mode"] == "observe" and s["proposed"] == 0
        switched = automl("tune", "enable", "--mode", "active", "--run-dir", str(run_dir))
        assert switched.returncode == 0, switched.stderr
        assert automl("tune", "set", "acceptance.epsilon=0.5", "--run-dir", str(run_dir)).returncode == 0
        at = s["step"]
    finally:
        os.killpg(proc.pid, signal.SIGCONT)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    first = json.loads((run_dir / "tune" / "seed_0" / "tune.mutations.jsonl").read_text().splitlines()[0])
    every = 98304 // 10 // 1024 * 1024 + 1024          # the evaluation interval, in whole rollouts (or less)
    assert at < first["step"] <= at + 2 * every and first["mode"] == "active"
    final = json.loads(summary.read_text())
    assert final["mode"] == "active" and final["epsilon"] == 0.5
    out = tmp_path / "evolved.yaml"
    assert automl("tune", "export-recipe", "--out", str(out), "--run-dir", str(run_dir)).returncode == 0
    assert yaml.safe_load(out.read_text())["acceptance"]["epsilon"] == 0.5


def _poll_summary(proc, summary, min_step, ceiling_s):
    """The tune summary once its step reaches `min_step` (polled; fails if the run ends or the ceiling passes)."""
    deadline = time.monotonic() + ceiling_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            s = json.loads(summary.read_text())
            if s["step"] >= min_step:
                return s
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    pytest.fail(f"the run ended ({proc.poll()}) or {ceiling_s} s passed before step {min_step}: {proc.stderr.read() if proc.poll() is not None else ''}")


@pytest.mark.parametrize("args, message", [
    (["set", "acceptance.speed=2"], "tune set: 'acceptance.speed=2' (allowed: KEY=VALUE with KEY one of acceptance.epsilon"),
    (["enable", "--mode", "replay"], "--mode: 'replay' (allowed: active, observe, suggest)"),
    (["restart"], "tune: unknown action 'restart' (allowed: enable, disable, status, set, export-recipe)"),
])
def test_bad_tune_commands_get_one_line(tmp_path, args, message):
    (tmp_path / "tune.control.json").write_text('{"mode": "active"}')
    r = automl("tune", *args, "--run-dir", str(tmp_path))
    assert r.returncode != 0 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1


class VfCoef:
    """A user actuator (seed 004's protocol) over PPO's value-loss coefficient."""

    name = "vf_coef"

    def __init__(self):
        self.calls = []

    def snapshot(self, env):
        return {"value": env["model"].vf_coef}

    def validate(self, patch, env):
        return 0.0 < patch["value"] <= 2.0

    def apply(self, patch, env):
        self.calls.append(("apply", env["step"], patch["value"]))
        env["model"].vf_coef = patch["value"]

    def restore(self, snapshot, env):
        self.calls.append(("restore", env["step"], snapshot["value"]))
        env["model"].vf_coef = snapshot["value"]

    def describe_space(self):
        return {"vf_coef": "float"}


def test_the_python_api_tunes_a_user_registered_actuator_and_restores_it_on_rollback(tmp_path):
    from automl.api import train_tuned

    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"actuators": {"value_weight": {"mode": "mult", "bounds": [1.5, 2.0], "cooldown": 0}},
                                      "search": {"algorithm": "random"}, "acceptance": {"epsilon": 1e9, "horizon": 1},
                                      "safety": {"max_global_reject_streak": 1}}))
    act = VfCoef()   # (a user's knob under its own name: vf_coef itself is a built-in actuator now)
    result = train_tuned(PARAMS, env="cartpole", seed=0, recipe=str(recipe), total_steps=4096, eval_every=512,
                         run_dir=str(tmp_path / "run"), actuators={"value_weight": act}, device="cpu")
    assert result.state == "complete"
    (kind, at, value), (kind2, at2, back) = act.calls
    assert kind == "apply" and 0.75 <= value <= 1.0 and kind2 == "restore" and back == 0.5 and at2 > at
    summary = json.loads((tmp_path / "run" / "tune" / "seed_0" / "tune.summary.json").read_text())
    assert summary["families"]["value_weight"]["judged"] == 1 and summary["blocked"] == "1 rejections in a row"
    from automl.core.errors import AutoMLError
    from automl.core.tune_recipe import load_recipe

    with pytest.raises(AutoMLError, match="actuators.value_weight: unknown actuator"):
        load_recipe(recipe)                                                 # not registered: refused


def test_a_paired_control_trains_both_branches_and_adopt_restores_the_treatment_bit_for_bit(monkeypatch):
    import automl.search.online as online

    torch.set_num_threads(1)
    recipe = Recipe(metric="reference_return", mutations=(Mutation("learning_rate", bounds=(2.0, 3.0), cooldown=0),),
                    algorithm="random", horizon=1, control="paired")
    # every treatment wins: what is checked here is the hook's adopt, not the judgement
    monkeypatch.setattr(online, "judge_segment", lambda *a, **k: online.Judgement(True, 1.0, 1.0, 0.0, 0.0, "won"))
    tuner = OnlineTuner(recipe, "active", seed=0)
    trainer, job = _build(eval_every=256)
    seen = {}

    class Checked(TuneHook):
        def restore(self, snap, custom_snaps):
            super().restore(snap, custom_snaps)
            if self.treated is not None and snap is self.treated[0] and not seen:  # the first adopt
                seen["adopted"] = self.job.snapshot()
                seen["treated"] = snap

    hook = Checked({"tuner": tuner}, job)
    job.run_until(2048, hook=hook)
    kinds = [a["action"] for a in hook.actions]
    assert kinds[:4] == ["apply", "control", "adopt", "apply"]
    _same(seen["adopted"], seen["treated"])
    applied = next(a for a in hook.actions if a["action"] == "apply")
    # the adopted state carries the mutated learning rate; the control branch had trained with the old one
    assert seen["adopted"]["values"]["learning_rate"] == pytest.approx(applied["value"])
