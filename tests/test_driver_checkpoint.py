import pytest
"""kill -9 of the real driver in the middle of a seed job, then the same command again: the seed
continues from its last checkpoint (steps and evaluations continue, never restart)."""
import os
import signal
import subprocess
import sys
import time

from _cli import ROOT, TINY, automl, state

from automl.train import checkpoint

PLANNED, EVERY = 49_152, 4_096


def command(run_dir, *extra):
    return ["--mode", "hp", "--env", "cartpole", "--ladder", "off", "--space", TINY, "--budget-hours", "0.2",
            "--hp-trials", "1", "--seeds", "1", "--n-jobs", "1", "--top-k", "1",
            "--trial-steps", str(PLANNED), "--eval-every", "8192", "--eval-episodes", "16",
            "--checkpoint-every", str(EVERY), "--run-dir", str(run_dir), "--quiet", *extra]


def hp_seed(st):
    (t,) = [t for t in st["trials"] if t["kind"] == "hp"]
    (s,) = t["seeds"]
    return s


@pytest.mark.slow  # overlaps a default test; make test-slow runs it
def test_kill9_mid_seed_resumes_from_its_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    cmd = command(run_dir)
    proc = subprocess.Popen([sys.executable, "-m", "automl", *cmd], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ckpt = run_dir / "checkpoints" / "config_000" / "hp_seed0.pt"
    seen, deadline = None, time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        seen = checkpoint.steps(str(ckpt)) if ckpt.exists() else None
        if seen is not None and seen >= 3 * EVERY:
            break
        time.sleep(0.2)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()}"
    assert seen is not None and seen < PLANNED
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(2.0)  # the workers die with the driver (parent-death signal); let them go
    at_kill = checkpoint.steps(str(ckpt))   # a later save may have landed before the kill
    assert at_kill >= seen

    again = automl(*cmd)
    assert again.returncode == 0, again.stderr
    s = hp_seed(state(run_dir))
    assert s["state"] == "complete"
    assert s["resumed_from"] == at_kill          # continued from the last checkpoint on disk
    assert s["steps"] == PLANNED                 # the step count continues, never restarts
    # trained in total: < at_kill + EVERY before the kill (else a later checkpoint), then the rest
    assert (at_kill + EVERY) + (s["steps"] - s["resumed_from"]) <= PLANNED + EVERY
    assert not ckpt.exists()                     # recorded, so its checkpoint was deleted

    # the same seed uninterrupted: batched envs resume bit for bit, so the result is equal
    ref_dir = tmp_path / "ref"
    ref = automl(*command(ref_dir))
    assert ref.returncode == 0, ref.stderr
    r = hp_seed(state(ref_dir))
    assert "resumed_from" not in r and r["steps"] == PLANNED
    assert s["episode_reward_mean"] == r["episode_reward_mean"]
