"""Branches of a torch-trainer run side by side on the seed axis (automl/train/torch_branches.py).

Known answers: the K+1 blocks of a branch batch start from the run's state bit for bit; blocks left
unmutated train alike up to float noise (same env randomness, same computation); a block's mutation does
not touch the control block (bit for bit); the control block equals the unbranched run within float noise;
a block taken back out is the state the run continues from.
"""
from __future__ import annotations

import pytest
import torch

from automl.train import torch_state
from automl.train.result import to_setup
from automl.train.torch_branches import block_state, tile_state
from automl.train.torch_ppo import Args
from automl.train.torch_train import TorchTrainer

NAV = dict(num_envs=16, rollouts=16, mini_batches=4, learning_epochs=2, learning_rate=3e-4, normalize=True,
           policy_hidden_layer_sizes=[32, 32], grad_norm_clip=1.0)
TOTAL = 100 * 256


def trainer(seeds):
    return TorchTrainer(Args.from_setup(to_setup(NAV)), "navigation", seeds, eval_episodes=4, device="cpu",
                        reward_weights=None)


def state(t):
    return torch_state.run_state(t.batch, next_eval=0, eval_s=0.0, spent={})


def train(t, chunks):
    for _ in range(chunks):
        assert t.chunk(TOTAL, None)


def flat(x, path=""):
    """(path, leaf) pairs of a state (tensors, numbers, strings), in order."""
    if isinstance(x, dict):
        return [p for k in sorted(x) for p in flat(x[k], f"{path}.{k}")]
    if isinstance(x, (list, tuple)):
        return [p for i, v in enumerate(x) for p in flat(v, f"{path}[{i}]")]
    return [(path, x)]


def same(a, b) -> bool:
    """Bit for bit: every tensor equal (torch.equal), every other leaf equal."""
    fa, fb = flat(a), flat(b)
    if [p for p, _ in fa] != [p for p, _ in fb]:
        return False
    return all(torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y for (_, x), (_, y) in zip(fa, fb))


def close(a, b) -> bool:
    """Equal up to float noise: float tensors within 1e-5 relative / 1e-6 absolute, the rest bit for bit (the
    stacked networks' batched products round a member's sums by its place in the batch, ~1e-8 here)."""
    fa, fb = flat(a), flat(b)
    if [p for p, _ in fa] != [p for p, _ in fb]:
        return False
    for (_, x), (_, y) in zip(fa, fb):
        if isinstance(x, torch.Tensor) and x.is_floating_point():
            if not torch.allclose(x, y, rtol=1e-5, atol=1e-6):
                return False
        elif not (torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y):
            return False
    return True


@pytest.fixture(scope="module")
def started():
    """Seeds 7 and 8 after two updates: the run a safe point branches."""
    t = trainer([7, 8])
    train(t, 2)
    return state(t)


def test_tiling_and_taking_a_block_back_out_are_inverse(started):
    tiled = tile_state(started, 3)
    assert len(tiled["envs"]) == 6 and tiled["params"]["pi.0.w"].shape[0] == 6
    for b in range(3):
        assert same(block_state(tiled, b, 2), started)
    with pytest.raises(ValueError, match="allowed: 0..2"):
        block_state(tiled, 3, 2)


def test_every_block_starts_from_the_runs_state_bit_for_bit(started):
    branches = trainer([7, 8] * 3)
    branches.load(tile_state(started, 3), TOTAL)
    now = state(branches)
    for b in range(3):
        assert same(block_state(now, b, 2), started)


def test_unmutated_blocks_train_alike_and_a_mutation_leaves_the_control_alone(started):
    plain = trainer([7, 8] * 3)
    plain.load(tile_state(started, 3), TOTAL)
    for s in range(6):  # per-member values in force, as in a branched batch (the config's own here)
        plain.batch.set_values(s, {"learning_rate": 3e-4})
    train(plain, 2)
    blocks = [block_state(state(plain), b, 2) for b in range(3)]
    assert close(blocks[0], blocks[1]) and close(blocks[0], blocks[2])  # same env randomness, same computation

    mutated = trainer([7, 8] * 3)
    mutated.load(tile_state(started, 3), TOTAL)
    for s in (2, 3):  # block 1: both seeds at 10x the learning rate
        mutated.batch.set_values(s, {"learning_rate": 3e-3})
    train(mutated, 2)
    after = [block_state(state(mutated), b, 2) for b in range(3)]
    assert same(after[0], blocks[0]) and same(after[2], blocks[2])  # the control did not see block 1's values
    assert not torch.equal(after[1]["params"][next(iter(after[1]["params"]))],
                           blocks[1]["params"][next(iter(blocks[1]["params"]))])
    assert after[1]["hp"]["learning_rate"].tolist() == pytest.approx([3e-3, 3e-3])


def test_the_control_block_is_the_unbranched_run_and_an_adopted_block_is_continued(started):
    run = trainer([7, 8])
    run.load(started, TOTAL)
    train(run, 2)
    branches = trainer([7, 8] * 2)
    branches.load(tile_state(started, 2), TOTAL)
    for s in (2, 3):
        branches.batch.set_values(s, {"ent_coef": 0.05})
    train(branches, 2)
    control, adopted = (block_state(state(branches), b, 2) for b in range(2))
    for name, tensor in state(run)["params"].items():  # batch neighbours: float noise only
        torch.testing.assert_close(control["params"][name], tensor, rtol=1e-4, atol=1e-5)
    assert control["steps"] == state(run)["steps"] == started["steps"] + 2 * 256

    cont = trainer([7, 8])
    cont.load(adopted, TOTAL)
    assert same(state(cont), adopted)
    assert cont.values()["ent_coef"] == pytest.approx(0.05)
    train(cont, 1)
    assert cont.steps == adopted["steps"] + 256


def test_branches_evaluate_the_same_start_states_so_their_episodes_pair_up(started):
    """Every member of seed s evaluates its eval envs from seed s's start states, and records each env's
    episode in env order: identical blocks give identical episode lists, whose mean is the evaluation's."""
    branches = trainer([7, 8] * 2)
    branches.load(tile_state(started, 2), TOTAL)
    stats = branches.evaluate(None)
    assert len(stats) == 4
    for s in range(2):
        a, b = stats[s], stats[2 + s]
        assert a.per_episode == b.per_episode and len(a.per_episode["reference_return"]) == 4
        assert sum(a.episode_values("reference_return")) / 4 == pytest.approx(a.reference_return)
        assert a.episode_values("true_metric") == a.episode_values("success_rate")
        assert set(a.episode_values("success_rate")) <= {0.0, 1.0}
        assert sum(a.episode_values("success_rate")) / 4 == pytest.approx(a.success_rate)
