"""Mid-run resume: checkpoints of a seed job (automl/train/checkpoint.py, train_seed(checkpoint_path=...)).

Batched envs continue bit for bit (the env's tensors and generator are in the checkpoint), so
the known answer for a resumed run is the uninterrupted run of the same seed, exactly.
Gymnasium ids are reset at resume, so there the answer is "within the seed-to-seed spread".
"""
from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time

import pytest
import torch

import envs
from automl.train import checkpoint
from automl.core.config import PPOSetup
from automl.train.sb3_train import run_job, train_seed
from _resume import StopAfter, plain
from automl.exec.workers import LocalChannel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Batched CartPole, 32 envs x 32 steps = 1024 steps per rollout; linear lr schedule, so a resumed
# run that lost its place in the schedule would not reproduce the uninterrupted one.
SMALL = dict(num_envs=32, rollouts=32, mini_batches=4, learning_epochs=4, learning_rate=1e-3,
             learning_rate_schedule="linear", discount_factor=0.99, lambda_param=0.95, entropy_loss_scale=0.0)
SMALL_RUN = dict(env="cartpole", seed=0, total_steps=8192, eval_every=2048, eval_episodes=4, device="cpu")
# Navigation with VecNormalize: 16 envs x 32 steps = 512 per rollout (exercises obs/return statistics).
NAV = dict(num_envs=16, rollouts=32, mini_batches=4, learning_epochs=2, learning_rate=3e-4, normalize=True,
           policy_hidden_layer_sizes=[32, 32])
NAV_RUN = dict(env="navigation", seed=3, total_steps=4096, eval_every=1024, eval_episodes=4, device="cpu")
GYM_SETUP = PPOSetup(
    ppo_kwargs=dict(n_steps=32, batch_size=256, n_epochs=4, gamma=0.98, gae_lambda=0.8, learning_rate=1e-3, ent_coef=0.0),
    num_envs=8, normalize=True,
)
GYM_RUN = dict(env="CartPole-v1", total_steps=6144, eval_every=1024, eval_episodes=8, device="cpu")


@pytest.fixture(scope="module")
def uninterrupted():
    """The SMALL run of seed 0 without any checkpoint: the known answer for several tests."""
    return train_seed(SMALL, **SMALL_RUN)


# -- the module -----------------------------------------------------------------------------------

def test_default_checkpoint_every_is_about_two_minutes_of_whole_rollouts():
    assert checkpoint.default_checkpoint_every(1000.0, rollout=2048) == 120_000 // 2048 * 2048 + 2048  # 58.6 -> 59
    assert checkpoint.default_checkpoint_every(1000.0, 60.0, rollout=1000) == 60_000
    assert checkpoint.default_checkpoint_every(1.0, rollout=16384) == 16384  # at least one rollout
    for bad in (dict(steps_per_s=0.0, rollout=8), dict(steps_per_s=float("nan"), rollout=8), dict(steps_per_s=1.0, rollout=0)):
        with pytest.raises(ValueError):
            checkpoint.default_checkpoint_every(**bad)


def test_save_is_atomic_and_remove_cleans_up(tmp_path):
    path = str(tmp_path / "job.pt")
    size = checkpoint.save(path, {"seed": 1, "steps": 10}, {"x": torch.arange(3)})
    assert size == os.path.getsize(path)
    # A save that fails half-way (an object weights_only could never load) leaves the old file intact.
    # (pickle's error for a local object: AttributeError up to Python 3.13, PicklingError from 3.14)
    with pytest.raises((AttributeError, pickle.PicklingError), match="Can't pickle local object"):
        checkpoint.save(path, {"seed": 1, "steps": 20}, {"x": lambda: None})
    assert checkpoint.load(path)["state"]["x"].tolist() == [0, 1, 2] and checkpoint.steps(path) == 10
    assert checkpoint.leftovers(path) == []
    # What a kill -9 during a save leaves behind: a temp file; remove() deletes it with the checkpoint.
    (tmp_path / "job.pt.abc123.tmp").write_bytes(b"half")
    (tmp_path / "other.pt").write_bytes(b"not mine")
    assert checkpoint.leftovers(path) == [str(tmp_path / "job.pt.abc123.tmp")]
    checkpoint.remove(path)
    assert sorted(os.listdir(tmp_path)) == ["other.pt"]
    checkpoint.remove(path)  # nothing left: fine
    assert checkpoint.load_matching(path, {"seed": 1}) == (None, None)


@pytest.mark.parametrize("task", ["cartpole", "navigation"])
def test_env_state_dict_continues_bit_for_bit(task):
    def run(env, n):
        gen = torch.Generator().manual_seed(5)
        out = []
        for _ in range(n):
            if task == "cartpole":
                actions = torch.randint(0, 2, (env.num_envs,), generator=gen)
            else:
                actions = torch.rand((env.num_envs, 2), generator=gen) * 2 - 1
            obs, reward, terminated, truncated, info = env.step(actions)
            out.append([t.clone() for t in (obs, reward, terminated, truncated, info["episode_stats"])])
        return out

    a = envs.make(task, 8, device="cpu", seed=1)
    a.reset()
    run(a, 37)  # mid-episode, some envs already reset
    state = a.state_dict()
    expected = run(a, 300)  # long enough for terminations, time limits and fresh random episodes
    b = envs.make(task, 8, device="cpu", seed=99)
    b.reset()
    b.load_state_dict(state)
    got = run(b, 300)
    assert any(bool(step[2].any() | step[3].any()) for step in expected)
    for want, have in zip(expected, got):
        for w, h in zip(want, have):
            assert torch.equal(w, h)
    with pytest.raises(ValueError):
        envs.make(task, 4, device="cpu").load_state_dict(state)


# -- train_seed -----------------------------------------------------------------------------------

def test_checkpoint_holds_the_last_boundary_and_is_left_in_place(tmp_path, uninterrupted):
    path = str(tmp_path / "ck" / "seed_0.pt")
    result = train_seed(SMALL, **SMALL_RUN, checkpoint_path=path, checkpoint_every=3072)
    # Saving checkpoints changes nothing about the run.
    assert plain(result) == plain(uninterrupted)
    assert result.resumed_from is None and result.checkpoint_note is None
    # Boundaries every 1024 steps; checkpoints at 3072 and 6144 (9216 is past the end): the file holds 6144.
    saved = checkpoint.load(path)
    assert saved["header"]["steps"] == saved["state"]["steps"] == 6144
    assert saved["header"]["seed"] == 0 and saved["header"]["total_steps"] == 8192
    assert [e["steps"] for e in saved["state"]["callback"]["evals"]] == [2048, 4096, 6144]
    assert [e["true_metric"] for e in saved["state"]["callback"]["evals"]] == [v for _, v in result.evals[:3]]
    assert os.listdir(tmp_path / "ck") == ["seed_0.pt"]  # no temp files; not deleted at the end
    assert os.path.getsize(path) < 200_000


@pytest.mark.parametrize("config,run", [(SMALL, SMALL_RUN), (NAV, NAV_RUN)], ids=["cartpole", "navigation-normalize"])
def test_resume_continues_bit_for_bit(tmp_path, config, run, uninterrupted):
    path = str(tmp_path / "seed.pt")
    every = run["eval_every"]
    whole = uninterrupted if config is SMALL else train_seed(config, **run)
    # First session: stopped after its 3rd evaluation (like a kill right after it); checkpoints every
    # 1.5 evaluation intervals, so the last one is older than the stop and some work is redone.
    first = train_seed(config, **run, channel=StopAfter(3), checkpoint_path=path, checkpoint_every=every * 3 // 2)
    assert first.state == "pruned" and first.steps < run["total_steps"]
    at = checkpoint.steps(path)
    # checkpoint at 1.5 intervals; the one due at 3 intervals is skipped because the stop came first
    assert at == every * 3 // 2 and first.steps == 3 * every  # the stop takes effect at that boundary
    channel = LocalChannel()
    second = train_seed(config, **run, channel=channel, checkpoint_path=path, checkpoint_every=every * 3 // 2)
    assert second.resumed_from == at and second.checkpoint_note is None
    assert second.state == "complete" and second.steps == run["total_steps"]
    # Evaluations continue: the first session's up to the checkpoint are kept, numbering goes on.
    assert second.evals[: at // every] == first.evals[: at // every]
    assert [s for s, _ in second.evals] == list(range(every, run["total_steps"] + 1, every))
    assert [r["eval_index"] for r in channel.reports] == list(range(at // every, len(second.evals)))
    # Bit for bit the uninterrupted run (policy, optimizer, schedule, env, RNG all restored).
    assert plain(second) == plain(whole)


def test_gymnasium_id_resumes_with_reset_envs_within_seed_spread(tmp_path):
    """DummyVecEnv path (VecNormalize on): envs restart at resume, so the run differs from the
    uninterrupted one but must land inside the seed-to-seed spread of uninterrupted runs."""
    spread = [train_seed(GYM_SETUP, seed=s, **GYM_RUN).episode_reward_mean for s in (0, 1, 2)]
    path = str(tmp_path / "gym.pt")
    first = train_seed(GYM_SETUP, seed=0, **GYM_RUN, channel=StopAfter(4), checkpoint_path=path, checkpoint_every=3072)
    assert checkpoint.steps(path) == 3072 and first.steps < 6144
    second = train_seed(GYM_SETUP, seed=0, **GYM_RUN, checkpoint_path=path, checkpoint_every=3072)
    assert second.resumed_from == 3072 and second.steps == 6144 and second.state == "complete"
    assert second.evals[:3] == first.evals[:3]
    assert [s for s, _ in second.evals] == [1024 * k for k in range(1, 7)]
    margin = (max(spread) - min(spread)) / 2  # CPU runs are deterministic: no flakiness from this bound
    assert min(spread) - margin <= second.episode_reward_mean <= max(spread) + margin, (spread, second.evals)


def test_pendulum_resumes(tmp_path):
    setup = PPOSetup(ppo_kwargs=dict(n_steps=64, batch_size=256, n_epochs=2, learning_rate=1e-3), num_envs=4)
    kwargs = dict(env="Pendulum-v1", seed=0, total_steps=2048, eval_every=512, eval_episodes=2, device="cpu")
    path = str(tmp_path / "pendulum.pt")
    first = train_seed(setup, **kwargs, channel=StopAfter(3), checkpoint_path=path, checkpoint_every=512)
    assert first.state == "pruned" and checkpoint.steps(path) == 1024  # the 3rd evaluation stopped it at 1536
    second = train_seed(setup, **kwargs, checkpoint_path=path, checkpoint_every=512)
    assert (second.resumed_from, second.steps, len(second.evals)) == (1024, 2048, 4)
    assert second.evals[:2] == first.evals[:2]


def test_corrupt_checkpoint_starts_from_scratch(tmp_path, uninterrupted):
    path = tmp_path / "seed_0.pt"
    train_seed(SMALL, **SMALL_RUN, checkpoint_path=str(path), checkpoint_every=3072)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # e.g. a disk that filled up under a non-atomic writer
    result = train_seed(SMALL, **SMALL_RUN, checkpoint_path=str(path), checkpoint_every=3072)
    assert result.resumed_from is None and "unreadable" in result.checkpoint_note
    assert plain(result) == plain(uninterrupted)  # exactly a fresh run
    assert checkpoint.steps(str(path)) == 6144  # replaced by a good one
    # Readable, right header, but a state that does not fit the model: rebuilt and started over.
    saved = checkpoint.load(str(path))
    saved["state"]["policy"].pop(next(iter(saved["state"]["policy"])))
    header = {k: v for k, v in saved["header"].items() if k != "format"}
    checkpoint.save(str(path), header, saved["state"])
    result = train_seed(SMALL, **SMALL_RUN, checkpoint_path=str(path), checkpoint_every=3072)
    assert result.resumed_from is None and "could not be restored" in result.checkpoint_note
    assert plain(result) == plain(uninterrupted)
    path.write_bytes(b"garbage")
    out = run_job(params=SMALL, **SMALL_RUN, checkpoint_path=str(path), checkpoint_every=3072)
    assert out["state"] == "complete" and out["resumed_from"] is None and "unreadable" in out["checkpoint_note"]


def test_checkpoint_of_another_job_is_ignored(tmp_path, uninterrupted):
    path = str(tmp_path / "seed.pt")
    train_seed(SMALL, **{**SMALL_RUN, "seed": 1, "total_steps": 4096}, checkpoint_path=path, checkpoint_every=2048)
    result = train_seed(SMALL, **SMALL_RUN, checkpoint_path=path, checkpoint_every=3072)
    assert result.resumed_from is None
    assert "seed 1 != 0" in result.checkpoint_note and "total_steps 4096 != 8192" in result.checkpoint_note
    assert plain(result) == plain(uninterrupted)
    assert checkpoint.load(path)["header"]["seed"] == 0


def test_unwritable_checkpoint_is_noted_and_training_goes_on(tmp_path, uninterrupted):
    path = tmp_path / "a_directory.pt"
    path.mkdir()  # neither loadable nor replaceable by a file
    result = train_seed(SMALL, **SMALL_RUN, checkpoint_path=str(path), checkpoint_every=3072)
    assert result.state == "complete" and plain(result) == plain(uninterrupted)
    assert "unreadable" in result.checkpoint_note and result.checkpoint_note.count("save failed at 3072 steps") == 1
    assert os.listdir(tmp_path) == ["a_directory.pt"]  # no temp files left by the failed saves


def test_diverging_job_leaves_no_partial_checkpoint(tmp_path):
    setup = PPOSetup(ppo_kwargs=dict(n_steps=32, batch_size=64, n_epochs=4, learning_rate=10.0), num_envs=8)
    path = str(tmp_path / "nan.pt")
    result = train_seed(setup, env="CartPole-v1", seed=0, total_steps=50_000, eval_every=5000, eval_episodes=2,
                        device="cpu", checkpoint_path=path, checkpoint_every=256)
    assert result.state == "failed" and result.stop_reason == "non_finite"
    assert checkpoint.leftovers(path) == []
    # lr 10 breaks the second update (512 steps, seed 0 on CPU); the checkpoint of the rollout before it
    # (256 steps) is the one left, and it loads cleanly with finite weights
    assert result.steps == 512 and os.path.exists(path)
    saved = checkpoint.load(path)["state"]
    assert saved["steps"] == result.steps - 256 == 256
    assert all(torch.isfinite(t).all() for t in saved["policy"].values())


def test_kill_9_mid_run_resumes_where_the_checkpoint_was(tmp_path):
    """The real thing: a worker process killed with SIGKILL, then the same job started again."""
    path = str(tmp_path / "seed_0.pt")
    config = dict(num_envs=64, rollouts=32, mini_batches=4, learning_epochs=10, learning_rate=1e-3,
                  learning_rate_schedule="linear", discount_factor=0.99, lambda_param=0.95, entropy_loss_scale=0.0)
    job = dict(env="cartpole", seed=0, total_steps=20480, eval_every=5120, eval_episodes=8, device="cpu",
               checkpoint_path=path, checkpoint_every=4096)
    code = (
        "import json, sys, torch; torch.set_num_threads(1)\n"
        "from automl.train.sb3_train import train_seed\n"
        "from automl.exec.workers import LocalChannel\n"
        "channel = LocalChannel()\n"
        f"r = train_seed({config!r}, channel=channel, **{job!r})\n"
        "print(json.dumps({'result': r.to_dict(), 'reports': channel.reports}))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 180
    while (checkpoint.steps(path) or 0) < 8192:
        assert proc.poll() is None, f"the job ended before it could be killed: {proc.communicate()[1][-2000:]}"
        assert time.time() < deadline, "no checkpoint at >= 8192 steps within 180 s"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    at = checkpoint.steps(path)  # the last checkpoint written before the kill (a newer one may have landed)
    assert at >= 8192 and at % 4096 == 0
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    result, reports = out["result"], out["reports"]
    assert result["state"] == "complete" and result["resumed_from"] == at and result["steps"] == 20480
    # The second process trained only from the checkpoint on: it reported no evaluation at or before it.
    assert reports and all(r["steps"] > at for r in reports)
    assert [r["eval_index"] for r in reports] == list(range(at // 5120, 4))
    # Steps trained in all: at most the checkpoint + one interval before the kill, then the rest.
    assert (at + 4096) + (result["steps"] - result["resumed_from"]) <= 20480 + 4096
    # Batched envs resume bit for bit: the same values as an uninterrupted run of the same seed,
    # which learned (so the comparison means something).
    whole = train_seed(config, **{k: v for k, v in job.items() if not k.startswith("checkpoint")})
    assert result["evals"] == whole.evals and result["episode_reward_mean"] == whole.episode_reward_mean
    assert whole.episode_reward_mean > 150
