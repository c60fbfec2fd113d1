"""The driver's middle layer under failure: crashing and diverging configs, the deadline, Ctrl-C.

Pinned before the driver's refactor (issue 13, item 8). Real runs use fixed --trial-steps and
budgets with room; the deadline tests run the real driver loop on a fake clock.
"""
import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
import yaml
from _cli import ROOT, TINY, automl, state
from _failures import all_gone, descendants, kill_tree, simulate, write_failing_space

from automl.search import studies

SMALL = ["--env", "cartpole", "--ladder", "off", "--trial-steps", "8192", "--eval-every", "4096", "--eval-episodes", "8",
         "--seeds", "2", "--n-jobs", "1", "--top-k", "1", "--budget-hours", "0.2", "--device", "cpu"]


def _study(run_dir, name):
    return optuna.load_study(study_name=name, storage=studies.storage_url(run_dir, None))


def _events(run_dir):
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


# ---- 1. failures in a real run -------------------------------------------------------------

def test_crashing_and_diverging_configs_become_failed_seeds_told_worst_and_the_run_goes_on(tmp_path):
    run_dir = tmp_path / "run"
    r = automl("--mode", "hp", "--space", write_failing_space(tmp_path), "--search-method", "grid",
               "--hp-trials", "4", *SMALL, "--run-dir", str(run_dir), "--quiet")
    assert r.returncode == 0, r.stderr
    st = state(run_dir)
    assert st["status"] == "finished" and st["stop_reason"] is None

    hp = [t for t in st["trials"] if t["kind"] == "hp"]
    assert [(t["config_id"], t["params"], t["state"]) for t in hp] == [
        ("config_000", {"learning_rate": 1e-3, "num_envs": 32}, "complete"),
        ("config_001", {"learning_rate": 1e-3, "num_envs": 10**14}, "failed"),   # crashes
        ("config_002", {"learning_rate": 1e4, "num_envs": 32}, "failed"),        # diverges
        ("config_003", {"learning_rate": 2e-3, "num_envs": 32}, "complete"),     # the run went on
    ]
    good, crash, nan, after = hp
    for t in (good, after):
        assert [(s["seed"], s["state"], s["steps"]) for s in t["seeds"]] == [(0, "complete", 8192), (1, "complete", 8192)]
    # a crash: an exception in the job, one line, no value
    assert [s["seed"] for s in crash["seeds"]] == [0, 1]
    for s in crash["seeds"]:
        assert set(s) == {"seed", "state", "reason", "wall_s"} and s["state"] == "failed"
        assert s["reason"].startswith("exception: RuntimeError: ") and "allocate" in s["reason"]
        assert "\n" not in s["reason"]
    # a NaN/inf config: the trainer stops the seed and says why, no value
    assert [s["seed"] for s in nan["seeds"]] == [0, 1]
    for s in nan["seeds"]:
        assert s["state"] == "failed" and s["stop_reason"] == "non_finite"
        assert s["reason"].startswith(("policy logits overflowed", "training diverged (nan/inf)"))
        assert "episode_reward_mean" not in s and 0 < s["steps"] < 8192

    # failed seeds count as the worst value: the lowest result recorded so far (config_000's seeds)
    worst = min(s["episode_reward_mean"] for s in good["seeds"])
    for t in (crash, nan):
        assert t["score"] == {"mean": worst, "iqm": worst, "ci95": [worst, worst], "std": 0.0, "n_seeds": 2}
    # ... and that is what the HP sampler is told (as a complete trial, so it learns the region is bad)
    told = [(t.state.name, t.value) for t in _study(run_dir, studies.HP_SAMPLER).get_trials()]
    assert told == [("COMPLETE", pytest.approx(good["score"]["mean"], rel=1e-12)),
                    ("COMPLETE", pytest.approx(worst, rel=1e-12)),
                    ("COMPLETE", pytest.approx(worst, rel=1e-12)),
                    ("COMPLETE", pytest.approx(after["score"]["mean"], rel=1e-12))]
    # the record study marks them FAIL (analysis reads it)
    record = _study(run_dir, studies.RECORD).get_trials()
    assert [t.state.name for t in record[:4]] == ["COMPLETE", "FAIL", "FAIL", "COMPLETE"]

    # failed configs are never the incumbent nor re-checked on held-out seeds
    leader = max((good, after), key=lambda t: t["score"]["mean"])
    assert st["best"]["config_id"] == leader["config_id"]
    held = [t for t in st["trials"] if t["kind"] == "heldout"]
    assert {t["config_id"] for t in held} == {leader["config_id"], "config_000"}  # leader + baseline
    assert all(t["state"] == "complete" and [s["seed"] for s in t["seeds"]] == [1000, 1001] for t in held)
    done = [(e["config_id"], e["state"]) for e in _events(run_dir) if e["event"] == "config_done" and e["kind"] == "hp"]
    assert done == [(t["config_id"], t["state"]) for t in hp]


def test_a_config_failing_before_any_result_is_told_worse_than_every_result(tmp_path):
    # cartpole's metric is a return (not a success rate); every config here earns about -100
    prior_lr = 1e-3   # TINY's prior: the prior trains (calibration needs it), other configs crash at once
    ctx, ex, start, rc = simulate(
        tmp_path / "run", hours=0.2, env="cartpole", space=TINY, mode="hp", hp_trials=3, seeds=1, n_jobs=2,
        trial_steps=8192, search_method="random", value_fn=lambda kw: -100.0,
        crashes=lambda job: ":hp:" in job.job_id and abs(job.kwargs["params"]["learning_rate"] - prior_lr) > 1e-12)
    assert rc == 0
    hp = [t for t in state(tmp_path / "run")["trials"] if t["kind"] == "hp"]
    assert [t["state"] for t in hp] == ["complete", "failed", "failed"]
    told = [t.value for t in _study(tmp_path / "run", studies.HP_SAMPLER).get_trials()]
    assert told[0] == pytest.approx(-100.0)
    assert max(told[1:]) <= min(told[:1])


# ---- 2. the deadline, end to end on a fake clock ---------------------------------------------

def test_admission_stops_tuning_before_a_config_that_would_not_fit_and_keeps_the_reserve(tmp_path):
    # 3 HP trials asked, 2 minutes: the plan shrinks the trials, the last phase takes more configs
    # of that length until the next one would not finish before the tuning deadline.
    ctx, ex, start, rc = simulate(tmp_path / "run", hours=2 / 60, mode="hp", hp_trials=3, seeds=2, n_jobs=1,
                                  trial_steps=400_000, search_method="random")
    assert rc == 0
    st = state(tmp_path / "run")
    assert st["status"] == "budget_exhausted"
    assert st["stop_reason"] == "the next config would not finish before the deadline"
    assert ctx.plan.shrunk and ctx.plan.trial_steps < 400_000
    tuning = [j for j in ex.finished if j["kind"] == "hp"]
    hp = [t for t in st["trials"] if t["kind"] == "hp" and t["state"] != "rejected"]
    assert len(hp) == 5 and len(tuning) == 10    # deterministic on the fake clock (3 asked, 2 more fitted)
    assert all(t["state"] == "complete" and len(t["seeds"]) == 2 for t in hp)
    assert all(j["state"] == "complete" and j["steps"] == ctx.plan.trial_steps for j in tuning)
    last_end = max(j["end"] for j in tuning)
    assert last_end <= ctx.budget.tuning_deadline
    # the config it refused would really not have fitted: two seed jobs in a row on one worker
    config_s = 2 * (tuning[-1]["end"] - tuning[-1]["start"])
    assert ctx.budget.tuning_deadline - last_end < config_s
    # the reserve is kept: held-out starts after tuning and ends within the budget
    heldout = [j for j in ex.finished if j["kind"] == "heldout"]
    assert ctx.budget.deadline - last_end >= ctx.budget.reserve_s > 0
    assert heldout and all(j["state"] == "complete" for j in heldout)
    assert min(j["start"] for j in heldout) >= last_end
    assert max(j["end"] for j in heldout) <= ctx.budget.deadline
    best = yaml.safe_load((tmp_path / "run" / "best.yaml").read_text())
    assert best["heldout_score"]["n_seeds"] == 2 and best["baseline"]["heldout_score"]["n_seeds"] == 2
    assert [e["event"] for e in _events(tmp_path / "run")].count("tuning_over") == 1


def _is_prior(kwargs):
    return abs(kwargs["params"]["learning_rate"] - 3e-4) < 1e-12


@pytest.fixture(scope="module")
def slow_configs_run(tmp_path_factory):
    """The prior trains at the calibrated speed, every other config 20x slower than estimated:
    config_001 is admitted, runs into the tuning deadline and is stopped there."""
    run_dir = tmp_path_factory.mktemp("deadline") / "run"
    ctx, ex, start, rc = simulate(run_dir, hours=2 / 60, mode="hp", hp_trials=3, seeds=2, n_jobs=1,
                                  trial_steps=50_000, search_method="random",
                                  job_slowdown=lambda kw: 1.0 if _is_prior(kw) else 20.0)
    return ctx, ex, rc, run_dir


def test_a_job_running_into_the_tuning_deadline_is_stopped_and_recorded_then_heldout_runs(slow_configs_run):
    ctx, ex, rc, run_dir = slow_configs_run
    assert rc == 0
    st = state(run_dir)
    assert st["status"] == "budget_exhausted"
    hp = [t for t in st["trials"] if t["kind"] == "hp"]
    assert [(t["config_id"], t["state"]) for t in hp] == [("config_000", "complete"),
                                                          ("config_001", "stopped_at_deadline")]
    stopped = hp[1]
    assert [(s["seed"], s["state"], s["stop_reason"]) for s in stopped["seeds"]] == [
        (42, "complete", "step_budget"), (43, "stopped_at_deadline", "deadline")]
    assert stopped["seeds"][1]["steps"] < ctx.plan.trial_steps
    assert "score" not in stopped                 # a cut config has no comparable score
    # tuning jobs get the tuning deadline (not the hard one); the stopped job ended on it
    tuning = [j for j in ex.finished if j["kind"] == "hp"]
    assert [j["state"] for j in tuning] == ["complete", "complete", "complete", "stopped_at_deadline"]
    assert all(j["deadline"] < ctx.budget.deadline for j in tuning)
    assert tuning[-1]["end"] == tuning[-1]["deadline"]
    # nothing was told as a value for the cut config: the sampler has it as FAIL, the record too
    assert [t.state.name for t in _study(run_dir, studies.HP_SAMPLER).get_trials()] == ["COMPLETE", "FAIL"]
    assert [t.state.name for t in _study(run_dir, studies.RECORD).get_trials()[:2]] == ["COMPLETE", "FAIL"]
    # no config started after the tuning deadline; the reserve went to held-out, with the hard deadline
    heldout = [j for j in ex.finished if j["kind"] == "heldout"]
    assert [j["state"] for j in heldout] == ["complete", "complete"]
    assert min(j["start"] for j in heldout) >= tuning[-1]["end"]
    assert all(j["deadline"] == ctx.budget.deadline for j in heldout)
    assert max(j["end"] for j in heldout) <= ctx.budget.deadline
    held = [t for t in st["trials"] if t["kind"] == "heldout"]
    assert [(t["config_id"], t["state"], [s["seed"] for s in t["seeds"]]) for t in held] == [
        ("config_000", "complete", [1042, 1043])]   # leader and baseline: the only complete config


def test_a_run_ended_by_the_tuning_deadline_records_why(slow_configs_run):
    ctx, ex, rc, run_dir = slow_configs_run
    st = state(run_dir)
    assert st["status"] == "budget_exhausted"
    assert st["stop_reason"] == "tuning deadline reached"   # the fake clock passed it while config_001 ran
    assert [e["reason"] for e in _events(run_dir) if e["event"] == "tuning_over"] == [st["stop_reason"]]


# ---- 3. Ctrl-C of the real driver -------------------------------------------------------------

def _recorded(st):
    """(config_id, kind, seed) -> record of every finished seed in a state dict."""
    return {(t["config_id"], t["kind"], s["seed"]): s for t in st["trials"] for s in t["seeds"]}


@pytest.mark.slow  # overlaps a default test; make test-slow runs it
def test_ctrl_c_of_the_real_driver_exits_130_stops_workers_and_the_same_command_resumes(tmp_path):
    run_dir = tmp_path / "run"
    cmd = ["--mode", "hp", "--space", TINY, "--hp-trials", "1", *SMALL, "--run-dir", str(run_dir)]
    out, err = (tmp_path / "stdout.txt").open("w"), (tmp_path / "stderr.txt").open("w")
    # its own session, so that Ctrl-C can reach the whole process group as a terminal sends it
    proc = subprocess.Popen([sys.executable, "-m", "automl", *cmd], cwd=ROOT, stdout=out, stderr=err,
                            start_new_session=True)
    try:
        state_file, before, deadline = run_dir / "automl_state.yaml", {}, time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if state_file.exists():   # the first seed of config_000 done: its second one is training
                before = _recorded(yaml.safe_load(state_file.read_text()) or {"trials": []})
                if before:
                    break
            time.sleep(0.1)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        assert before, "no seed finished in time"
        workers = descendants(proc.pid)
        assert workers, "the driver has no worker processes"
        os.killpg(proc.pid, signal.SIGINT)
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            kill_tree(proc.pid)
        out.close()
        err.close()
    assert rc == 130, (tmp_path / "stderr.txt").read_text()
    assert "automl: interrupted; state saved, re-run the same command to resume" in (tmp_path / "stdout.txt").read_text()
    assert "Traceback" not in (tmp_path / "stderr.txt").read_text()
    assert all_gone(workers, within=5.0), "worker processes outlived the interrupted driver"
    interrupted = state(run_dir)
    assert interrupted["status"] == "interrupted"
    at_interrupt = _recorded(interrupted)
    assert set(at_interrupt) >= set(before)
    # the job that was running is not recorded (not as pruned, failed or stopped): Ctrl-C is no result
    assert all(r["state"] == "complete" for r in at_interrupt.values())
    in_flight = [t for t in interrupted["trials"] if t["state"] == "running"]
    assert len(in_flight) == 1 and len(in_flight[0]["seeds"]) < 2

    done = automl(*cmd)
    assert done.returncode == 0, done.stderr
    final = state(run_dir)
    assert final["status"] == "finished"
    assert final["plan"] == interrupted["plan"]                  # restored, not re-calibrated
    assert final["budget"]["elapsed_s"] > interrupted["budget"]["elapsed_s"]
    after = _recorded(final)
    for key, rec in at_interrupt.items():
        assert after[key] == rec, f"seed {key} changed on resume"
    assert [(t["config_id"], t["kind"], t["state"], [s["seed"] for s in t["seeds"]]) for t in final["trials"]] == [
        ("config_000", "hp", "complete", [0, 1]), ("config_000", "heldout", "complete", [1000, 1001]),
        ("config_000", "test", "complete", [2000, 2001])]
    # only the missing seeds ran again, and there was no second calibration
    events = _events(run_dir)
    resumed_at = max(i for i, e in enumerate(events) if e["event"] == "resume")
    rerun = [(e["config_id"], e["kind"], e["seed"]) for e in events[resumed_at:] if e["event"] == "seed_done"]
    assert sorted(rerun) == sorted(set(after) - set(at_interrupt))
    assert not any(e["event"] == "calibrated" for e in events[resumed_at:])
