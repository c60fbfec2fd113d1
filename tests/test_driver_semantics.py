"""Pins of the driver's middle layer (issue 13 item 8) before it is redesigned.

Held-out selection, resume and stage semantics and the reward-hacking alarm, on the real driver
loop (automl.run.driver.run) with a fake clock and scripted per-config values (tests/_scripted.py),
so every answer is known in advance and no machine speed matters; one test runs the real CLI
because only a real process can be interrupted and resumed as a user does.

The ranking rule in force today (commit d144010): one --objective (default iqm for a new run)
ranks the incumbent (the state file's `best`, records.best_entry), the order of the held-out
candidates (heldout.candidates) and the winner in best.yaml (heldout.write_best). With 4 seeds
the IQM trims one seed at each end, so mean and IQM disagree on purpose below.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from _cli import ROOT, TINY, automl, state
from _scripted import FakeClock, ScriptedExecutor, write_space

from automl.run import driver
from automl.run.opening import prepare
from automl.run.runconfig import RunConfig

DEFAULT_WEIGHTS = {"alive": 1.0, "cart_position": 0.0, "pole_angle": 0.0}   # configs/rewards/cartpole.yaml
PRIORS = {"learning_rate": 1e-3, "rollouts": 32, "learning_epochs": 4, "mini_batches": 2}
HELDOUT_BASE = 1000  # held-out seeds: base seed (0 in the space) + 1000 + i


def sim(tmp_path, *, script=None, interrupt_after=None, clock=None, rate=20_000.0, **kw):
    """(ctx, executors, clock): a prepared run of the real driver on a fake clock -- cartpole, the
    unconstrained tiny space (config ids follow proposals), a budget nothing binds. The executor
    is made, and appended to `executors`, when the run starts."""
    clock = clock or FakeClock()
    made = []

    def factory(n):
        made.append(ScriptedExecutor(n, clock, script=script, interrupt_after=interrupt_after, rate=rate))
        return made[-1]

    opts = dict(env="cartpole", space=write_space(tmp_path), run_dir=str(tmp_path / "run"), budget_hours=2.0,
                search_method="random", trainer="torch", device="cpu", seed_batching="off", quiet=True,
                trial_steps=8192, eval_every=4096, eval_episodes=8, n_jobs=2)
    opts.update(kw)
    ctx = prepare(RunConfig(**{"ladder": "off", **opts}), clock=clock, executor_factory=factory)
    return ctx, made, clock


def per_seed(values):
    """A script entry: the i-th seed of a config (tuning 0.., held-out 1000..) gets values[i]."""
    return lambda seed: {"episode_reward_mean": values[seed % HELDOUT_BASE]}


def run_script(table):
    """script(config_id, kind, seed) from {(config_id, kind): per-seed function}."""
    def script(config_id, kind, seed):
        fn = table.get((config_id, kind))
        return fn(seed) if fn else None
    return script


def entries(st, kind):
    return [t for t in st["trials"] if t["kind"] == kind]


def events(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "events.jsonl").read_text().splitlines()]


# ---- held-out selection -------------------------------------------------------------------------

def test_heldout_reevaluates_top_k_plus_baseline_and_ranks_by_the_default_objective_iqm(tmp_path):
    # 4 seeds, so the IQM trims one seed at each end and disagrees with the mean on purpose:
    # tuning: config_002 leads by IQM (0.8); config_001 would lead by mean (1.125, IQM 0.5)
    # held-out: config_001 leads by IQM (0.8); config_002 would lead by mean (1.275, IQM 0.7)
    script = run_script({
        ("config_000", "hp"): per_seed([0.1] * 4),            # the priors: the baseline, last
        ("config_001", "hp"): per_seed([0.5, 0.5, 0.5, 3.0]),
        ("config_002", "hp"): per_seed([0.8] * 4),
        ("config_003", "hp"): per_seed([0.3] * 4),
        ("config_000", "heldout"): per_seed([0.05] * 4),
        ("config_001", "heldout"): per_seed([0.0, 0.8, 0.8, 0.8]),
        ("config_002", "heldout"): per_seed([0.7, 0.7, 0.7, 3.0]),
    })
    ctx, made, _ = sim(tmp_path, script=script, mode="hp", hp_trials=4, seeds=4, top_k=2)
    assert ctx.cfg.objective == "iqm"   # no --objective: iqm for a new run
    assert driver.run(ctx) == 0
    (ex,) = made
    run_dir = tmp_path / "run"
    st = state(run_dir)
    hp = {t["config_id"]: t for t in entries(st, "hp")}
    assert list(hp) == ["config_000", "config_001", "config_002", "config_003"]
    assert hp["config_000"]["params"] == PRIORS and hp["config_000"]["reward_weights"] == DEFAULT_WEIGHTS
    assert hp["config_001"]["score"]["mean"] == pytest.approx(1.125)
    assert hp["config_001"]["score"]["iqm"] == pytest.approx(0.5)
    # the incumbent is the objective's leader
    assert st["best"]["config_id"] == "config_002"

    # candidates: the top-2 by the objective (002, 001) with the baseline right after the leader;
    # config_003 is not re-evaluated; every candidate gets all held-out seeds, in candidate order
    held = entries(st, "heldout")
    assert [t["config_id"] for t in held] == ["config_002", "config_000", "config_001"]
    assert [t["heldout_of"] for t in held] == ["config_002", "config_000", "config_001"]
    seeds = [HELDOUT_BASE + i for i in range(4)]
    assert all([s["seed"] for s in t["seeds"]] == seeds and t["state"] == "complete" for t in held)
    assert [j.rsplit(":", 1)[0] for j in ex.submitted if ":heldout:" in j] == \
        ["config_002:heldout"] * 4 + ["config_000:heldout"] * 4 + ["config_001:heldout"] * 4

    # the held-out ranking is by the objective too, the baseline flagged
    assert [(h["config_id"], h["baseline"], h["objective"]) for h in st["heldout"]] == \
        [("config_001", False, "iqm"), ("config_002", False, "iqm"), ("config_000", True, "iqm")]
    assert [h["value"] for h in st["heldout"]] == pytest.approx([0.8, 0.7, 0.05])
    assert [h["mean"] for h in st["heldout"]] == pytest.approx([0.6, 1.275, 0.05])

    best = yaml.safe_load((run_dir / "best.yaml").read_text())
    assert best["config_id"] == "config_001" and best["objective"] == "iqm"
    assert best["heldout_score"]["iqm"] == pytest.approx(0.8) and best["heldout_score"]["n_seeds"] == 4
    assert best["tuning_score"] == hp["config_001"]["score"]
    assert best["params"] == {**ctx.inputs.spec.fixed, **hp["config_001"]["params"]}
    assert best["reward_weights"] == DEFAULT_WEIGHTS
    assert best["heldout_seeds"] == seeds
    assert best["baseline"]["config_id"] == "config_000"
    assert best["baseline"]["heldout_score"]["mean"] == pytest.approx(0.05)
    assert best["baseline"]["heldout_score"]["n_seeds"] == 4
    assert best["models"] == [str(run_dir / "models" / "config_001" / f"seed_{s}.zip") for s in seeds]
    # ... which is where the winner's held-out jobs were told to save their policies
    assert best["models"] == [ex.kwargs[f"config_001:heldout:{s}"]["save_path"] + ".zip" for s in seeds]
    assert ctx.final_status() == "finished" and st["status"] == "finished"


def test_objective_mean_ranks_everything_by_mean_and_a_baseline_in_the_top_k_is_not_duplicated(tmp_path):
    # by mean: 001 (1.125) > 000 (0.6, the baseline) > 002 (0.55); by IQM it would be 000, 002, 001
    # held-out by mean: the baseline 000 (0.7) beats 001 (0.6); by IQM 001 (0.8) would win
    script = run_script({
        ("config_000", "hp"): per_seed([0.6] * 4),
        ("config_001", "hp"): per_seed([0.5, 0.5, 0.5, 3.0]),
        ("config_002", "hp"): per_seed([0.55] * 4),
        ("config_000", "heldout"): per_seed([0.7] * 4),
        ("config_001", "heldout"): per_seed([0.0, 0.8, 0.8, 0.8]),
    })
    ctx, made, _ = sim(tmp_path, script=script, mode="hp", hp_trials=3, seeds=4, top_k=2, objective="mean")
    assert driver.run(ctx) == 0
    (ex,) = made
    st = state(tmp_path / "run")
    assert st["best"]["config_id"] == "config_001"
    assert [t["config_id"] for t in entries(st, "heldout")] == ["config_001", "config_000"]
    assert not any(j.startswith("config_002:heldout") or j.startswith("baseline") for j in ex.submitted)
    assert [(h["config_id"], h["baseline"], h["objective"]) for h in st["heldout"]] == \
        [("config_000", True, "mean"), ("config_001", False, "mean")]
    best = yaml.safe_load((tmp_path / "run" / "best.yaml").read_text())
    assert best["config_id"] == "config_000" and best["objective"] == "mean"   # the baseline may win
    assert best["params"] == {**ctx.inputs.spec.fixed, **PRIORS}
    assert best["baseline"]["config_id"] == "config_000"
    assert best["baseline"]["heldout_score"] == best["heldout_score"]
    assert best["heldout_score"]["mean"] == pytest.approx(0.7)


# ---- resume ------------------------------------------------------------------------------------

def test_resume_reruns_only_missing_seeds_restores_the_plan_and_carries_elapsed_time(tmp_path):
    # session 1: calibration, then config_000's seeds 0 and 1 end; Ctrl-C while seed 2 trains
    ctx1, made1, clock1 = sim(tmp_path, mode="hp", hp_trials=3, seeds=3, top_k=1, n_jobs=1,
                               rate=5_000.0, interrupt_after=2)
    assert driver.run(ctx1) == 130
    (ex1,) = made1
    assert ex1.seeds_of("config_000", "hp") == [0, 1, 2]
    st1 = state(tmp_path / "run")
    assert st1["status"] == "interrupted"
    (c0,) = entries(st1, "hp")
    assert c0["config_id"] == "config_000" and c0["state"] == "running"
    assert [s["seed"] for s in c0["seeds"]] == [0, 1]
    elapsed1 = st1["budget"]["elapsed_s"]
    assert elapsed1 > 0

    # session 2, much later by the wall clock, on workers 4x faster than the first calibration:
    # a recalibration would make another plan
    clock2 = FakeClock(clock1.t + 50_000.0)
    ctx2, made2, _ = sim(tmp_path, clock=clock2, mode="hp", hp_trials=3, seeds=3, top_k=1, n_jobs=1,
                          rate=20_000.0)
    assert ctx2.budget.elapsed_before_s == elapsed1
    assert ctx2.budget.deadline == pytest.approx(clock2.t + 2.0 * 3600 - elapsed1)
    started2 = ctx2.budget.started
    assert driver.run(ctx2) == 0
    (ex2,) = made2
    st2 = state(tmp_path / "run")

    # no calibration; the recorded plan, unchanged
    assert not any(j.startswith("calibrate") for j in ex2.submitted)
    assert ctx2.plan.to_dict() == st1["plan"] == st2["plan"]
    ev = events(tmp_path / "run")
    assert [e["event"] for e in ev].count("calibrated") == 1 and [e["event"] for e in ev].count("planned") == 1
    assert [e["plan"] for e in ev if e["event"] == "resume"] == [st1["plan"]]

    # only the missing seed of the in-flight config re-ran; the recorded ones are untouched
    assert ex2.seeds_of("config_000", "hp") == [2]
    assert ex2.seeds_of("config_001", "hp") == [0, 1, 2] and ex2.seeds_of("config_002", "hp") == [0, 1, 2]
    hp = {t["config_id"]: t for t in entries(st2, "hp")}
    assert list(hp) == ["config_000", "config_001", "config_002"]
    assert hp["config_000"]["seeds"][:2] == c0["seeds"]
    assert [s["seed"] for s in hp["config_000"]["seeds"]] == [0, 1, 2]
    assert all(t["state"] == "complete" and t["score"]["n_seeds"] == 3 for t in hp.values())
    assert hp["config_000"]["params"] == PRIORS     # still the warm start, not proposed again
    done = [(e["config_id"], e["kind"], e["seed"]) for e in ev if e["event"] == "seed_done"]
    assert len(done) == len(set(done))

    # the budget's elapsed time carries over: session 1's plus session 2's own
    assert st2["budget"]["elapsed_s"] == pytest.approx(elapsed1 + (clock2.t - started2), abs=0.11)
    assert st2["budget"]["deadline_t"] == pytest.approx(started2 + 2.0 * 3600 - elapsed1, abs=1e-3)
    assert st2["status"] == "finished"


@pytest.mark.slow  # ~20 s; the default suite interrupts the real driver in test_cli and test_driver_failures
def test_sigterm_then_rerun_resumes_the_real_process(tmp_path):
    # the real CLI: SIGTERM mid-run saves the state (exit 130); the same command resumes it
    run_dir = tmp_path / "run"
    cmd = ["--mode", "hp", "--env", "cartpole", "--ladder", "off", "--space", TINY, "--trial-steps", "8192",
           "--eval-every", "4096", "--eval-episodes", "8", "--n-jobs", "1", "--budget-hours", "0.5",
           "--hp-trials", "1", "--seeds", "2", "--top-k", "1", "--device", "cpu", "--quiet",
           "--run-dir", str(run_dir)]
    proc = subprocess.Popen([sys.executable, "-m", "automl", *cmd], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    state_file = run_dir / "automl_state.yaml"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        try:
            st = state(run_dir) if state_file.exists() else {}
        except yaml.YAMLError:
            st = {}
        if any(s["state"] == "complete" for t in st.get("trials", []) for s in t["seeds"]):
            break
        time.sleep(0.1)
    if proc.poll() is not None:
        pytest.fail(f"the run ended (exit {proc.returncode}) before it could be interrupted: "
                    f"{proc.communicate()[1][-2000:]}")
    os.kill(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted; state saved" in out
    st1 = state(run_dir)
    assert st1["status"] == "interrupted"
    before = {(t["config_id"], t["kind"], s["seed"]): s for t in st1["trials"] for s in t["seeds"]
              if s["state"] == "complete"}
    assert len(before) >= 1

    again = automl(*cmd)
    assert again.returncode == 0, again.stderr
    st2 = state(run_dir)
    assert st2["status"] == "finished"
    after = {(t["config_id"], t["kind"], s["seed"]): s for t in st2["trials"] for s in t["seeds"]
             if s["state"] == "complete"}
    assert all(after[k] == v for k, v in before.items())   # recorded seeds untouched
    # the config in flight was completed, not proposed again; the held-out stage ran after it
    assert [(t["config_id"], t["kind"], t["state"], [s["seed"] for s in t["seeds"]]) for t in st2["trials"]] == \
        [("config_000", "hp", "complete", [0, 1]), ("config_000", "heldout", "complete", [1000, 1001]),
         ("config_000", "test", "complete", [2000, 2001])]   # (the test phase: the winner, here also the baseline)
    # across both sessions each seed finished exactly once: nothing recorded was trained again
    ev = events(run_dir)
    done = [(e["config_id"], e["kind"], e["seed"]) for e in ev
            if e["event"] == "seed_done" and e["state"] == "complete"]
    assert len(done) == len(set(done)) and set(done) == set(after)
    # one calibration and one plan; the resumed session restored it
    names = [e["event"] for e in ev]
    assert names.count("calibrated") == 1 and names.count("planned") == 1 and names.count("resume") == 1
    planned = next(e["plan"] for e in ev if e["event"] == "planned")
    assert next(e["plan"] for e in ev if e["event"] == "resume") == planned
    assert st2["plan"] == st1["plan"] == pytest.approx(planned)
    # elapsed budget time carries over (the state's two clocks are read microseconds apart)
    assert st2["budget"]["elapsed_s"] == pytest.approx(
        st1["budget"]["elapsed_s"] + st2["overhead"]["session_wall_s"], abs=0.25)


# ---- stage mode --------------------------------------------------------------------------------

def test_stage_mode_reward_phase_keeps_the_incumbents_hps_and_hp_phase_its_weights(tmp_path):
    # hp#1: 000 (priors), 001 | reward#1: 002, 003 | hp#2: 004, 005 | reward#2: 006, 007
    # the incumbent (best mean) after each phase: 001, 002 (not the later 003), 004 (not 005)
    values = {0: 0.1, 1: 0.5, 2: 0.7, 3: 0.2, 4: 0.9, 5: 0.3, 6: 0.4, 7: 0.4}
    script = run_script({(f"config_{n:03d}", kind): per_seed([v, v])
                         for n, v in values.items() for kind in ("hp", "reward")})
    ctx, _, _ = sim(tmp_path, script=script, mode="stage", hp_trials=2, reward_generations=2,
                    reward_population=2, seeds=2, top_k=1)
    assert driver.run(ctx) == 0
    st = state(tmp_path / "run")
    tuned = [t for t in st["trials"] if t["kind"] in ("hp", "reward")]
    assert [(t["config_id"], t["kind"], t["cycle"]) for t in tuned] == [
        ("config_000", "hp", 1), ("config_001", "hp", 1), ("config_002", "reward", 1), ("config_003", "reward", 1),
        ("config_004", "hp", 2), ("config_005", "hp", 2), ("config_006", "reward", 2), ("config_007", "reward", 2)]
    assert all(t["state"] == "complete" for t in tuned)
    c = {t["config_id"]: t for t in tuned}

    # hp#1 searches HPs under the default weights, starting from the priors
    assert c["config_000"]["params"] == PRIORS
    assert c["config_000"]["reward_weights"] == c["config_001"]["reward_weights"] == DEFAULT_WEIGHTS
    # reward#1 keeps the incumbent's HPs (001's, not the priors) and searches the weights
    assert c["config_001"]["params"] != PRIORS
    assert c["config_002"]["params"] == c["config_003"]["params"] == c["config_001"]["params"]
    assert DEFAULT_WEIGHTS != c["config_002"]["reward_weights"] != c["config_003"]["reward_weights"]
    # hp#2 keeps the incumbent's weights (002's: the best, not the latest 003's) and searches HPs
    assert c["config_004"]["reward_weights"] == c["config_005"]["reward_weights"] == c["config_002"]["reward_weights"]
    assert c["config_004"]["params"] != c["config_001"]["params"]
    # reward#2 keeps the HPs of the incumbent after hp#2 (004, not the latest 005)
    assert c["config_006"]["params"] == c["config_007"]["params"] == c["config_004"]["params"]
    assert c["config_005"]["params"] != c["config_004"]["params"]
    assert st["best"]["config_id"] == "config_004"
    # the true metric fell in 003 but its shaped return did not rise: no alarm
    assert st["alarms"] == []


# ---- the reward-hacking alarm ------------------------------------------------------------------

def test_reward_hacking_alarm_reaches_the_state_file_and_survives_resume(tmp_path):
    # config_000 (hp, priors): true ~1.0, shaped 10 -- the incumbent
    # config_001 (reward): shaped 20 (+100%) while true falls to ~0.5 (-50%), far beyond seed noise: alarm
    # config_002 (reward): shaped 30 and true ~1.2 (a rise): no alarm; it becomes the incumbent
    # config_003 (reward): shaped 40 (+33%), true mean 0.73 (-39%) but too noisy to tell: no alarm
    def seeds(true, shaped):
        return lambda seed: {"episode_reward_mean": true[seed], "shaped_return": shaped, "terms": {}}

    script = run_script({
        ("config_000", "hp"): seeds([1.0, 1.02, 0.98], 10.0),
        ("config_001", "reward"): seeds([0.5, 0.52, 0.48], 20.0),
        ("config_002", "reward"): seeds([1.2, 1.22, 1.18], 30.0),
        ("config_003", "reward"): seeds([0.2, 1.9, 0.1], 40.0),
    })
    common = dict(script=script, mode="stage", hp_trials=1, reward_generations=1, reward_population=3,
                  seeds=3, top_k=1, n_jobs=1)
    # session 1 is interrupted once config_001 (6 seed jobs) is recorded
    ctx1, _, clock1 = sim(tmp_path, interrupt_after=6, **common)
    assert driver.run(ctx1) == 130
    st1 = state(tmp_path / "run")
    assert [(t["config_id"], t["state"]) for t in st1["trials"]][:2] == \
        [("config_000", "complete"), ("config_001", "complete")]
    (alarm,) = st1["alarms"]
    assert alarm["kind"] == "reward_hacking" and alarm["config_id"] == "config_001"
    assert alarm["detail"].startswith(
        "shaped return +100% (both under its weights), true metric -50% vs incumbent config_000 (95% CIs [")
    assert alarm["detail"].endswith(" disjoint, drop 30.6 pooled s.e. (need 2))")
    assert [{k: e[k] for k in alarm} for e in events(tmp_path / "run") if e["event"] == "alarm"] == [alarm]

    ctx2, _, _ = sim(tmp_path, clock=FakeClock(clock1.t + 1000.0), **common)
    assert driver.run(ctx2) == 0
    st2 = state(tmp_path / "run")
    rw = {t["config_id"]: t for t in entries(st2, "reward")}
    assert list(rw) == ["config_001", "config_002", "config_003"]
    assert all(t["state"] == "complete" for t in rw.values())
    assert rw["config_003"]["score"]["mean"] == pytest.approx(0.7333, abs=1e-3)
    assert st2["best"]["config_id"] == "config_002"
    assert st2["alarms"] == [alarm]   # kept across the resume; 002 and 003 raise none
    assert [e["config_id"] for e in events(tmp_path / "run") if e["event"] == "alarm"] == ["config_001"]


def test_a_resumed_session_does_not_repeat_the_first_sessions_proposals(tmp_path):
    # session 1 proposes the prior and one random config, then Ctrl-C; session 2 proposes two more.
    # A sampler re-seeded with the same seed would propose config_001's params again.
    ctx1, _, clock1 = sim(tmp_path, mode="hp", hp_trials=4, seeds=1, top_k=1, n_jobs=1, interrupt_after=2)
    assert driver.run(ctx1) == 130
    ctx2, _, _ = sim(tmp_path, clock=FakeClock(clock1.t + 10.0), mode="hp", hp_trials=4, seeds=1, top_k=1, n_jobs=1)
    assert driver.run(ctx2) == 0
    hp = entries(state(tmp_path / "run"), "hp")
    assert [t["config_id"] for t in hp] == ["config_000", "config_001", "config_002", "config_003"]
    params = [tuple(sorted(t["params"].items())) for t in hp]
    assert len(set(params)) == 4, params


def test_a_record_trial_killed_before_it_was_recorded_is_failed_not_resumed(tmp_path):
    # kill -9 between the record study's ask() and the config's attributes: a RUNNING trial with no
    # config_id. On resume it is told FAIL and never shows up as a config.
    ctx1, _, _ = sim(tmp_path, mode="hp", hp_trials=1, seeds=1, top_k=1, n_jobs=1)
    assert driver.run(ctx1) == 0
    half = ctx1.record_study.ask()   # what the killed session left behind
    half.set_user_attr("kind", "hp")
    ctx2, _, _ = sim(tmp_path, mode="hp", hp_trials=1, seeds=1, top_k=1, n_jobs=1)
    assert driver.run(ctx2) == 0
    st = state(tmp_path / "run")
    assert [t["config_id"] for t in st["trials"] if t["kind"] == "hp"] == ["config_000"]
    assert all(t["state"] != "running" for t in st["trials"])
    assert ctx2.record_study.get_trials()[half.number].state.name == "FAIL"
