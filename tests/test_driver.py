"""The staged driver end to end, as a user runs it: real training on small runs.

Independent of machine speed: every run fixes --trial-steps, --eval-every and --eval-episodes,
and its budget (ROOMY) is many times what it needs, so no deadline binds on a loaded machine
(held-out configs are never skipped). A roomy budget does not make a run longer: with
--trial-steps given the trials are not shrunk, so the last phase is never extended.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from _cli import ROOT, TINY, automl, state

ROOMY = "0.25"  # hours; each run here needs well under a minute of it


def seed_results(st):
    """(config_id, kind, seed) -> per-seed record, for every finished seed."""
    out = {}
    for t in st["trials"]:
        for r in t["seeds"]:
            if r["state"] in ("complete", "failed"):
                key = (t["config_id"], t["kind"], r["seed"])
                assert key not in out, f"duplicated seed result {key}"
                out[key] = r
    return out


def test_kill9_then_resume_keeps_recorded_seeds(tmp_path):
    run_dir = tmp_path / "run"
    cmd = ["--mode", "hp", "--env", "cartpole", "--ladder", "off", "--space", TINY, "--budget-hours", ROOMY,
           "--hp-trials", "4", "--seeds", "2", "--n-jobs", "2", "--top-k", "1",
           "--trial-steps", "6144", "--eval-every", "2048", "--eval-episodes", "8", "--run-dir", str(run_dir)]
    proc = subprocess.Popen([sys.executable, "-m", "automl", *cmd], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state_file = run_dir / "automl_state.yaml"
    deadline = time.time() + 240
    before = {}
    while time.time() < deadline and proc.poll() is None:
        if state_file.exists():  # replaced atomically: always a whole file
            before = seed_results(state(run_dir))
            if len(before) >= 3:
                break
        time.sleep(0.5)
    assert proc.poll() is None, "run ended before it could be killed"
    assert len(before) >= 3
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = seed_results(state(run_dir))  # what was on disk at the kill
    done = automl(*cmd)
    assert done.returncode == 0, done.stderr
    after_state = state(run_dir)
    after = seed_results(after_state)
    for key, rec in before.items():
        assert after[key] == rec, f"seed result {key} changed after resume"
    assert after_state["status"] == "finished"
    hp = [t for t in after_state["trials"] if t["kind"] == "hp" and t["state"] != "rejected"]
    assert len({t["config_id"] for t in hp}) == len(hp) == 4
    held = [t for t in after_state["trials"] if t["kind"] == "heldout"]
    assert len(held) == 2 and all(t["state"] == "complete" for t in held), held  # top-1 and baseline


def test_other_command_is_refused_then_fresh_starts_over(tmp_path):
    run_dir = tmp_path / "run"
    cmd = ["--mode", "hp", "--env", "cartpole", "--ladder", "off", "--space", TINY, "--budget-hours", ROOMY,
           "--hp-trials", "1", "--seeds", "1", "--n-jobs", "1", "--top-k", "1",
           "--trial-steps", "2048", "--eval-every", "1024", "--eval-episodes", "8", "--run-dir", str(run_dir)]
    first = automl(*cmd)
    assert first.returncode == 0, first.stderr
    other = automl(*[c if c != "cartpole" else "navigation" for c in cmd])
    assert other.returncode == 2
    assert "different command" in other.stderr and "--fresh" in other.stderr
    assert "Traceback" not in other.stderr and len(other.stderr.strip().splitlines()) == 1
    st = state(run_dir)
    assert st["env"] == "cartpole"  # nothing recorded was lost


@pytest.mark.parametrize("args,needle", [
    (["--budget-hours", "-1"], "--budget-hours: must be > 0"),
    (["--env", "NoSuchEnv-v9"], "--env: unknown env 'NoSuchEnv-v9'"),
    (["--search-method", "annealing"], "--search-method: unknown value 'annealing'"),
    (["--pruner", "sometimes"], "--pruner: unknown value"),
    (["--seeds", "0"], "--seeds: must be > 0"),
    (["--space", "/nonexistent/space.yaml"], "/nonexistent/space.yaml"),
    (["--budget-hours", "abc"], "--budget-hours: invalid float value"),
    # more than 1000 tuning seeds would reach the held-out seeds (--seed+1000..) and those the test seeds
    (["--seeds", "1001"], "--seeds: 1001 (allowed: 1..1000: the held-out seeds start at --seed+1000"),
    (["--mode", "pbt", "--population", "2001"], "--population: 2001 (allowed: 2..2000 with --mode pbt"),
])
def test_bad_run_flags_are_one_line(tmp_path, args, needle):
    r = automl("--run-dir", str(tmp_path / "r"), "--dry-run", *args)
    assert r.returncode == 2
    assert needle in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_the_three_seed_sets_are_disjoint_up_to_the_most_seeds_allowed():
    from automl.run.runconfig import RunConfig
    from automl.run.inputs import resolve_inputs

    inputs = resolve_inputs(RunConfig(env="cartpole", space=TINY, seeds=1000, seed=7))
    assert inputs.tuning_seeds == list(range(7, 1007)) and inputs.heldout_seeds == list(range(1007, 2007))
    assert inputs.test_seeds == list(range(2007, 3007))  # the offsets of every earlier run: its seeds stay
    small = resolve_inputs(RunConfig(env="cartpole", space=TINY, seeds=3, seed=0))
    assert (small.tuning_seeds, small.heldout_seeds, small.test_seeds) == ([0, 1, 2], [1000, 1001, 1002],
                                                                          [2000, 2001, 2002])


def test_corrupt_state_file_is_refused_and_kept(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    bad = "version: 1\ntrials: [unclosed\n"
    (run_dir / "automl_state.yaml").write_text(bad)
    r = automl("--env", "cartpole", "--space", TINY, "--run-dir", str(run_dir), "--budget-hours", "0.01")
    assert r.returncode == 2 and "corrupt state file" in r.stderr and "Traceback" not in r.stderr
    assert (run_dir / "automl_state.yaml").read_text() == bad


def test_dry_run_prints_plan(tmp_path):
    r = automl("--env", "cartpole", "--space", TINY, "--run-dir", str(tmp_path / "r"), "--dry-run",
               "--hp-trials", "3", "--reward-generations", "2", "--budget-hours", "0.5")
    assert r.returncode == 0, r.stderr
    assert "hp#1 (3 configs) -> reward#1" in r.stdout and "steps per seed job" in r.stdout
    assert not (tmp_path / "r" / "automl_state.yaml").exists()


@pytest.mark.slow  # overlaps a default test; make test-slow runs it
def test_staged_navigation_run_has_hp_reward_and_heldout(tmp_path):
    run_dir = tmp_path / "nav"
    r = automl("--mode", "stage", "--env", "navigation", "--ladder", "off", "--space",
               str(ROOT / "tests" / "data" / "tiny_navigation.yaml"), "--budget-hours", ROOMY,
               "--hp-trials", "2", "--reward-generations", "1", "--reward-population", "2",
               "--seeds", "2", "--top-k", "1", "--n-jobs", "2", "--trial-steps", "4096",
               "--eval-every", "2048", "--eval-episodes", "8", "--run-dir", str(run_dir))
    assert r.returncode == 0, r.stderr
    st = state(run_dir)
    assert st["status"] == "finished" and st["plan"]["shrunk"] is False, (st["status"], st["plan"])
    kinds = {t["kind"] for t in st["trials"] if t["state"] == "complete"}
    assert {"hp", "reward", "heldout"} <= kinds, st["trials"]
    hp = [t for t in st["trials"] if t["kind"] == "hp" and t["state"] == "complete"]
    rw = [t for t in st["trials"] if t["kind"] == "reward" and t["state"] == "complete"]
    # the first HP trial is the warm start (priors, default weights); reward trials vary weights
    assert hp[0]["params"]["learning_rate"] == pytest.approx(3e-4)
    assert any(t["reward_weights"] != hp[0]["reward_weights"] for t in rw)
    for t in hp + rw:
        assert len(t["seeds"]) == 2 and t["score"]["n_seeds"] == 2
        for s in t["seeds"]:
            assert 0.0 <= s["success_rate"] <= 1.0 and s["episode_reward_mean"] == s["success_rate"]
            assert s["steps"] >= 4096
    held = [t for t in st["trials"] if t["kind"] == "heldout"]
    assert all(s["seed"] >= 1007 for t in held for s in t["seeds"])  # disjoint from tuning seeds 7, 8
    tested = [t for t in st["trials"] if t["kind"] == "test"]   # the winner (and the baseline) on test seeds 2007, 2008
    assert tested and all([s["seed"] for s in t["seeds"]] == [2007, 2008] for t in tested)
    # piped (not a terminal): one progress line per finished config, naming it, then a summary
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("[")]
    finished = [t for t in st["trials"] if t["state"] not in ("rejected", "running")]
    assert len(lines) == len(finished)
    for t in finished:
        kind = f"{t['kind']}#{t['cycle']}" if t["kind"] not in ("heldout", "test") else t["kind"]
        assert sum(f"] {kind} {t['config_id']} " in ln for ln in lines) == 1, (t["config_id"], lines)
    assert r.stdout.strip().splitlines()[-1].startswith("automl " + st["status"])
    best = yaml.safe_load((run_dir / "best.yaml").read_text())
    assert best["heldout_score"]["n_seeds"] == 2 and "ppo_kwargs" in best["sb3"]
    assert all(Path(m).exists() for m in best["models"])
    events = (run_dir / "events.jsonl").read_text().splitlines()
    assert any('"event": "seed_done"' in e for e in events)
    # analysis reads the run without touching it
    a = automl("analyze", "--run-dir", str(run_dir))
    assert a.returncode == 0, a.stderr
    assert (run_dir / "analysis" / "hyperparameter_importance.yaml").exists()


def test_torch_trainer_runs_the_staged_loop(tmp_path):
    run_dir = tmp_path / "torch"
    cmd = ["--mode", "hp", "--env", "cartpole", "--ladder", "off", "--space", TINY, "--budget-hours", ROOMY,
           "--hp-trials", "2", "--seeds", "2", "--n-jobs", "2", "--top-k", "1", "--trial-steps", "8192",
           "--eval-every", "4096", "--eval-episodes", "8", "--trainer", "torch", "--run-dir", str(run_dir), "--quiet"]
    r = automl(*cmd)
    assert r.returncode == 0, r.stderr
    st = state(run_dir)
    assert st["trainer"] == "torch" and st["fingerprint"]["trainer"] == "torch" and st["status"] == "finished"
    hp = [t for t in st["trials"] if t["kind"] == "hp"]
    assert len(hp) == 2 and all(s["state"] == "complete" and s["steps"] == 8192 for t in hp for s in t["seeds"])
    assert all(s["episode_reward_mean"] > 9 for t in hp for s in t["seeds"])  # real CartPole returns
    assert any(t["kind"] == "heldout" and t["state"] == "complete" for t in st["trials"])
    # the trainer is part of the run's identity: the same run dir with sb3 is refused
    other = automl(*[c if c != "torch" else "sb3" for c in cmd])
    assert other.returncode == 2 and "trainer" in other.stderr


def test_torch_trainer_refuses_gymnasium_ids(tmp_path):
    r = automl("--mode", "hp", "--env", "CartPole-v1", "--trainer", "torch", "--dry-run",
               "--run-dir", str(tmp_path / "r"))
    assert r.returncode == 2 and "--trainer: torch trains the batched tasks only" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_seed_batching_trains_each_config_as_one_job(tmp_path):
    run_dir = tmp_path / "batched"
    r = automl("--mode", "hp", "--env", "cartpole", "--ladder", "off", "--space", TINY, "--budget-hours", ROOMY,
               "--hp-trials", "2", "--seeds", "3", "--n-jobs", "1", "--top-k", "1", "--trial-steps", "8192",
               "--eval-every", "4096", "--eval-episodes", "8", "--trainer", "torch", "--seed-batching", "on",
               "--run-dir", str(run_dir), "--quiet")
    assert r.returncode == 0, r.stderr
    st = state(run_dir)
    tuned = [t for t in st["trials"] if t["kind"] == "hp"]
    assert len(tuned) == 2
    for t in tuned:  # every seed has its own result, as with one job per seed
        assert [s["seed"] for s in t["seeds"]] == [0, 1, 2]
        assert all(s["state"] == "complete" and s["steps"] == 8192 for s in t["seeds"])
        assert len({s["episode_reward_mean"] for s in t["seeds"]}) > 1   # own env streams and inits
    held = [t for t in st["trials"] if t["kind"] == "heldout" and t["state"] == "complete"]
    best = yaml.safe_load((run_dir / "best.yaml").read_text())
    assert held and all(Path(m).exists() for m in best["models"])
    events = (run_dir / "events.jsonl").read_text()
    # one job per config: its seeds finish together (same wall time)
    walls = {}
    for t in tuned:
        walls[t["config_id"]] = {s["wall_s"] for s in t["seeds"]}
    assert all(len(w) == 1 for w in walls.values()), walls
    assert '"seed_done"' in events


def test_seed_batching_on_needs_the_torch_trainer(tmp_path):
    for trainer in (["--trainer", "sb3"], []):  # explicit, and what auto picks for a gymnasium id
        env = "cartpole" if trainer else "CartPole-v1"
        r = automl("--env", env, *trainer, "--seed-batching", "on", "--dry-run", "--run-dir", str(tmp_path / "r"))
        assert r.returncode == 2 and "--seed-batching: on needs a trainer that batches seeds" in r.stderr
        assert "got --trainer sb3" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_trainer_auto_picks_torch_for_batched_tasks_sb3_for_gym_ids_and_keeps_a_resumed_runs(tmp_path):
    from automl.run.runconfig import RunConfig
    from automl.run.inputs import resolve_defaults as resolve_trainer
    from automl.run.state import StateStore

    store = StateStore(str(tmp_path / "run"))
    assert resolve_trainer(RunConfig(env="cartpole"), store).trainer == "torch"
    assert resolve_trainer(RunConfig(env="navigation"), store).trainer == "torch"
    assert resolve_trainer(RunConfig(env="CartPole-v1"), store).trainer == "sb3"
    assert resolve_trainer(RunConfig(env="cartpole", trainer="sb3"), store).trainer == "sb3"
    # resuming: auto means the trainer the run used; a run recorded before --trainer existed used sb3
    store.write({"version": 1, "fingerprint": {"env": "cartpole"}})
    assert resolve_trainer(RunConfig(env="cartpole"), store).trainer == "sb3"
    store.write({"version": 1, "fingerprint": {"env": "cartpole", "trainer": "torch"}})
    assert resolve_trainer(RunConfig(env="cartpole"), store).trainer == "torch"
    assert resolve_trainer(RunConfig(env="cartpole", fresh=True), store).trainer == "torch"
    store.write({"version": 1, "fingerprint": {"env": "cartpole", "trainer": "sb3"}})
    assert resolve_trainer(RunConfig(env="cartpole", fresh=True), store).trainer == "torch"  # --fresh: a new run
    store.path.write_text("{not yaml: [", encoding="utf-8")
    assert resolve_trainer(RunConfig(env="cartpole"), store).trainer == "torch"  # check_resume reports the file


def test_a_piped_pbt_run_prints_one_line_per_ready_point_and_names_its_winner(tmp_path):
    """Issue 26 defect 7: piped, --mode pbt printed nothing between calibrating and the test replay."""
    import re

    r = automl("--mode", "pbt", "--env", "cartpole", "--space", TINY, "--budget-hours", "0.3", "--population", "4",
               "--trial-steps", "4096", "--ready-steps", "1024", "--eval-episodes", "8", "--n-jobs", "1",
               "--seeds", "2", "--run-dir", str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    ready = [line for line in lines if " pbt ready " in line]
    pop = state(tmp_path / "run")["pbt"]
    assert len(ready) == len(pop["ready"]) == 4
    for line, point in zip(ready, pop["ready"]):
        values = " ".join(f"m{i} {v:.3f}" for i, v in enumerate(point["scores"]))
        action = ", ".join(f"m{c['dst']}<-m{c['src']}" for c in point["copies"])
        assert re.fullmatch(r"\[ *\d+s/18m00s\] pbt ready " + f"{point['index']}/4 step {1024 * point['index']}: "
                            + re.escape(values + " | " + (f"exploit+explore {action}" if action else
                                                          "no copy (gaps within noise)")) + r" \| best m\d \S+", line)
    w = pop["winner"]
    assert f"pbt winner m{w} {pop['ready'][-1]['scores'][w]:.3f} at step 4096" in lines[-1]
    assert "no config finished" not in r.stdout and f"test seeds: pbt_m{w} " in lines[-1]
