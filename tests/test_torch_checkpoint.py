"""Checkpoints of the torch trainer (automl/train/torch_state.py, train_seeds_torch(checkpoint_path=...)).

A batch of seeds stopped between two evaluations and started again with the same arguments continues
from its last checkpoint bit for bit (CPU): same evaluations, same final values as the uninterrupted
batch, a failed seed stays failed, and a foreign or corrupt file is ignored with a note.
"""
from __future__ import annotations

import pytest

from automl.train import checkpoint
from automl.train.torch_train import train_seed_torch, train_seeds_torch
from _resume import StopAfter, plain

# Navigation with normalisation (obs and return statistics must survive) and a linear lr schedule
# (a resumed run that lost its place in the schedule would not reproduce the uninterrupted one):
# 16 envs x 32 steps = 512 steps per rollout.
NAV = dict(num_envs=16, rollouts=32, mini_batches=4, learning_epochs=2, learning_rate=3e-4, normalize=True,
           learning_rate_schedule="linear", policy_hidden_layer_sizes=[32, 32], grad_norm_clip=1.0)
RUN = dict(env="navigation", total_steps=8 * 512, eval_every=1024, eval_episodes=4, device="cpu")
SEEDS = [3, 4]


@pytest.fixture(scope="module")
def uninterrupted():
    return train_seeds_torch(NAV, seeds=SEEDS, **RUN)


def test_checkpoints_change_nothing_and_hold_the_last_boundary(tmp_path, uninterrupted):
    path = str(tmp_path / "batch.pt")
    results = train_seeds_torch(NAV, seeds=SEEDS, **RUN, checkpoint_path=path, checkpoint_every=1536)
    assert [plain(r) for r in results] == [plain(r) for r in uninterrupted]
    assert all(r.resumed_from is None and r.checkpoint_note is None for r in results)
    saved = checkpoint.load(path)
    # boundaries every 512 steps; checkpoints at 1536 and 3072 (4608 is past the end of 4096)
    assert saved["header"]["steps"] == 3072 and saved["header"]["seeds"] == SEEDS
    assert saved["header"]["trainer"] == "torch" and saved["state"]["steps"] == 3072
    assert checkpoint.leftovers(path) == []


def test_resume_continues_bit_for_bit(tmp_path, uninterrupted):
    path = str(tmp_path / "batch.pt")
    first = train_seeds_torch(NAV, seeds=SEEDS, **RUN, channel=StopAfter(2), checkpoint_path=path,
                              checkpoint_every=512)
    assert all(r.state == "pruned" for r in first)
    at = checkpoint.steps(path)
    # evaluations at 1024 and 2048; the stop came with the second, so the checkpoint due at 2048 is skipped
    # (the loop obeys a stop before it saves, as the SB3 trainer always did) and the last one is at 1536
    assert at == 1536 and all(r.steps == 2048 for r in first)
    second = train_seeds_torch(NAV, seeds=SEEDS, **RUN, checkpoint_path=path, checkpoint_every=512)
    assert [r.resumed_from for r in second] == [at, at] and all(r.checkpoint_note is None for r in second)
    assert [plain(r) for r in second] == [plain(r) for r in uninterrupted]
    assert second[0].wall_s >= first[0].wall_s  # time before the checkpoint counts


def test_single_seed_job_resumes_too(tmp_path):
    path = str(tmp_path / "seed.pt")
    reference = train_seed_torch(NAV, seed=5, **RUN)
    train_seed_torch(NAV, seed=5, **RUN, channel=StopAfter(1), checkpoint_path=path, checkpoint_every=512)
    again = train_seed_torch(NAV, seed=5, **RUN, checkpoint_path=path)
    assert again.resumed_from == 512 and plain(again) == plain(reference)  # stopped at 1024, before its save


def test_foreign_and_corrupt_checkpoints_are_ignored_with_a_note(tmp_path, uninterrupted):
    path = str(tmp_path / "batch.pt")
    train_seeds_torch(NAV, seeds=[3], **RUN, channel=StopAfter(1), checkpoint_path=path, checkpoint_every=512)
    other = train_seeds_torch(NAV, seeds=SEEDS, **RUN, checkpoint_path=path)  # another seed batch's file
    assert "checkpoint ignored" in other[0].checkpoint_note and "seeds" in other[0].checkpoint_note
    assert other[0].resumed_from is None and [plain(r) for r in other] == [plain(r) for r in uninterrupted]
    with open(path, "wb") as f:
        f.write(b"not a checkpoint")
    broken = train_seeds_torch(NAV, seeds=SEEDS, **RUN, checkpoint_path=path)
    assert "checkpoint unreadable" in broken[0].checkpoint_note
    assert [plain(r) for r in broken] == [plain(r) for r in uninterrupted]


def test_a_failed_seed_stays_failed_after_resume(tmp_path, uninterrupted):
    """A seed recorded as failed in the checkpoint is restored failed; the other seed continues unchanged."""
    path = str(tmp_path / "batch.pt")
    train_seeds_torch(NAV, seeds=SEEDS, **RUN, channel=StopAfter(1), checkpoint_path=path, checkpoint_every=512)
    saved = checkpoint.load(path)
    saved["state"]["failed"] = [[1, 512, "training diverged (nan/inf): test"]]
    for tensor in saved["state"]["params"].values():
        tensor[1].zero_()  # what check_finite leaves of a failed seed
    checkpoint.save(path, saved["header"], saved["state"])
    again = train_seeds_torch(NAV, seeds=SEEDS, **RUN, checkpoint_path=path)
    assert again[1].state == "failed" and again[1].steps == 512 and "test" in again[1].reason
    assert plain(again[0]) == plain(uninterrupted[0])
