"""Branches of one torch-trainer run, side by side on the seed axis (issue 28's first part).

At a safe point a run of S seeds becomes K+1 branches of the same S seeds, stacked as one SeedBatch of
S*(K+1) members: block b (members b*S .. b*S+S-1) starts from the run's full state, bit for bit (networks,
Adam moments and step counts, normalisation statistics, envs with their episodes, action-noise and
minibatch generators, the per-seed values), so every branch sees the same env randomness. Block 0 is the
control (left unmutated); the caller sets each other block's values (``SeedBatch.set_values``) and trains
them together for a horizon as one batched computation. ``block_state`` takes one block's state back out, to
be continued as the run (``TorchTrainer.load``).

The states are ``automl.train.torch_state.run_state``'s: per-seed tensors lead with the seed axis and
per-seed lists hold one entry per seed, so a branch batch's state is the run's tiled K+1 times. A member's
computation does not depend on its batch neighbours up to float noise (the stacked networks run batched
matrix products), so block 0 equals the unbranched run within float tolerance and equals bit for bit a
batch of the same K+1 copies left unmutated.
"""
from __future__ import annotations

import copy
from typing import Any, Mapping

import torch

PER_SEED_LISTS = ("envs", "noise_gens", "perm_gens", "evals", "reward_weights")


def _tile(t: torch.Tensor, copies: int) -> torch.Tensor:
    return torch.cat([t] * copies, dim=0)


def _block(t: torch.Tensor, b: int, seeds: int) -> torch.Tensor:
    return t[b * seeds:(b + 1) * seeds].clone()


def _map_tensors(state: Mapping[str, Any], fn) -> dict:
    """``state`` with ``fn`` applied to every per-seed tensor (params, Adam's moments and steps, the
    normalisation statistics' mean, var and returns, next_obs, the per-seed values)."""
    out = dict(state)
    out["params"] = {k: fn(v) for k, v in state["params"].items()}
    adam = dict(state["adam"])
    adam["exp_avg"] = [fn(m) for m in adam["exp_avg"]]
    adam["exp_avg_sq"] = [fn(v) for v in adam["exp_avg_sq"]]
    adam["steps"] = fn(adam["steps"])
    out["adam"] = adam
    if state.get("norm") is not None:
        norm = state["norm"]
        out["norm"] = {"obs": {**norm["obs"], "mean": fn(norm["obs"]["mean"]), "var": fn(norm["obs"]["var"])},
                       "ret": {**norm["ret"], "mean": fn(norm["ret"]["mean"]), "var": fn(norm["ret"]["var"])},
                       "returns": fn(norm["returns"])}
    out["next_obs"] = fn(state["next_obs"])
    if state.get("hp") is not None:
        out["hp"] = {k: fn(v) for k, v in state["hp"].items()}
    return out


def tile_state(state: Mapping[str, Any], copies: int) -> dict:
    """The state of a batch of ``copies`` blocks, each the run of ``state`` (a run_state of S seeds)."""
    if copies < 1:
        raise ValueError(f"branches: copies {copies} (allowed: >= 1)")
    seeds = len(state["envs"])
    out = _map_tensors(copy.deepcopy(dict(state)), lambda t: _tile(t, copies))
    for key in PER_SEED_LISTS:
        if state.get(key) is not None:
            out[key] = [copy.deepcopy(x) for _ in range(copies) for x in state[key]]
    out["failed"] = [[int(s) + b * seeds, at, why] for b in range(copies) for s, at, why in state["failed"]]
    return out


def block_state(state: Mapping[str, Any], b: int, seeds: int) -> dict:
    """Block ``b``'s S=``seeds`` members of a branch batch's state, as the state of a run of S seeds."""
    members = len(state["envs"])
    if members % seeds or not 0 <= b < members // seeds:
        raise ValueError(f"branches: block {b} of {members} members in blocks of {seeds} "
                         f"(allowed: 0..{members // seeds - 1})")
    out = _map_tensors(dict(state), lambda t: _block(t, b, seeds))
    for key in PER_SEED_LISTS:
        if state.get(key) is not None:
            out[key] = copy.deepcopy(state[key][b * seeds:(b + 1) * seeds])
    out["failed"] = [[int(s) - b * seeds, at, why] for s, at, why in state["failed"]
                     if b * seeds <= int(s) < (b + 1) * seeds]
    return out
