"""The torch PPO update (``automl.train.torch_ppo.update``) against SB3's ``PPO.train`` on one fixed batch.

Both start from the same weights (the torch policy's, loaded into SB3's MlpPolicy) and see the same
minibatches in the same order: SB3's buffer is laid out so that its ``np.random.permutation`` picks, minibatch
by minibatch, the rows the torch update's own permutation picks. The batch is built so that every term is
live: ratios far from 1 (clipped surrogate on both sides), value predictions past ``clip_range_vf``, a
non-zero entropy weight, advantages far from mean 0 / std 1 (normalisation matters) and gradients above
``max_grad_norm`` (clipping matters). The known answer: SB3's logged losses, its Adam moments (the clipped
gradients' running averages), its last clipped gradient and its updated weights, within float tolerance.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.logger import configure

import envs
from automl.train import torch_ppo as tp

T, N = 16, 8  # rollout steps x envs: M = 128 samples
M = T * N
# the torch trainer's batch of seeds (named Run before the automl/train refactor that renames it lands)
SeedBatch = getattr(tp, "SeedBatch", None) or getattr(tp, "Run")
HP = dict(learning_rate=3e-3, clip_range=0.2, clip_range_vf=0.1, ent_coef=0.05, vf_coef=0.7, max_grad_norm=0.3)


def _torch_run(task: str, batch_size: int) -> SeedBatch:
    args = tp.Args(**HP, n_steps=T, batch_size=batch_size, n_epochs=1, num_envs=N,
                   policy_kwargs={"net_arch": [16, 16]})
    return SeedBatch(args, task, [3], eval_episodes=1, device=torch.device("cpu"), reward_weights=None)


def _fill_batch(run: SeedBatch) -> None:
    """A fixed synthetic batch in the torch run's storage: the current policy's log-probs and values, shifted."""
    gen = torch.Generator().manual_seed(11)
    S, _, _, D, A = run.dims
    policy = run.policy
    obs = torch.randn(1, M, D, generator=gen)
    with torch.no_grad():
        head, values = policy.forward(obs)
        if policy.discrete:
            actions = torch.randint(0, policy.action_dim, (1, M), generator=gen).float()
        else:
            actions = head + torch.randn(1, M, A, generator=gen)
        logp, _ = policy.log_prob_entropy(head, actions)
    flat = run.data.view(S, M, -1)
    flat[..., :D] = obs
    flat[..., D:D + A] = actions.view(1, M, A)
    flat[..., D + A] = logp + 0.4 * torch.randn(1, M, generator=gen)  # old log-probs: ratios e^{+-0.4}
    flat[..., D + A + 1] = 3.0 + 5.0 * torch.randn(1, M, generator=gen)  # advantages: mean 3, std 5
    old_values = values + 0.3 * torch.randn(1, M, generator=gen)
    flat[..., D + A + 2] = old_values + 2.0 * torch.randn(1, M, generator=gen)  # returns
    flat[..., D + A + 3] = old_values


def test_the_fixed_batch_exercises_value_clipping():
    """Before the update, the value predictions lie past clip_range_vf of the old values on part of the batch."""
    run = _torch_run("cartpole", M)
    _fill_batch(run)
    S, _, _, D, A = run.dims
    flat = run.data.view(S, M, -1)
    with torch.no_grad():
        _, values = run.policy.forward(flat[..., :D])
    outside = ((values - flat[..., D + A + 3]).abs() > HP["clip_range_vf"]).float().mean()
    assert 0.2 < float(outside) < 0.9


def _sb3_model(run: SeedBatch, task: str, batch_size: int) -> PPO:
    model = PPO("MlpPolicy", envs.make_vec(task, N, device="cpu"), n_steps=T, batch_size=batch_size, n_epochs=1,
                gamma=0.99, gae_lambda=0.95, policy_kwargs=run.policy.sb3_policy_kwargs(), device="cpu", **HP)
    model.policy.load_state_dict(run.policy.sb3_state_dict(0), strict=True)
    model.set_logger(configure(None, [""]))
    return model


def _load_sb3_buffer(model: PPO, run: SeedBatch) -> None:
    """SB3's buffer (already flattened) holds the torch rows so that both permutations pick the same rows."""
    torch_perm = _peek_torch_perm(run.perm_gens[0])
    state = np.random.get_state()
    sb3_perm = np.random.permutation(M)  # what RolloutBuffer.get will draw next
    np.random.set_state(state)
    S, _, _, D, A = run.dims
    rows = run.data.view(S, M, -1)[0, torch.as_tensor(torch_perm)].numpy()
    layout = np.empty_like(rows)
    layout[sb3_perm] = rows  # SB3's row sb3_perm[i] = the torch update's i-th pick
    buf = model.rollout_buffer
    buf.observations = layout[:, :D].copy()
    buf.actions = layout[:, D:D + A].copy()
    buf.log_probs, buf.advantages, buf.returns, buf.values = (layout[:, D + A + k].copy() for k in range(4))
    buf.full, buf.generator_ready = True, True


def _peek_torch_perm(gen: torch.Generator) -> np.ndarray:
    state = gen.get_state()
    perm = torch.randperm(M, generator=gen).numpy()
    gen.set_state(state)
    return perm


def _sb3_layout(name: str, tensor: torch.Tensor) -> tuple[str, torch.Tensor]:
    """A stacked torch parameter (seed 0) under SB3's name and layout (as StackedPolicy.sb3_state_dict maps it)."""
    t = tensor[0]
    if name == "log_std":
        return name, t[0]
    prefix, *index, kind = name.split(".")
    base = {"pi": f"mlp_extractor.policy_net.{2 * int(index[0])}" if index else "",
            "vf": f"mlp_extractor.value_net.{2 * int(index[0])}" if index else "",
            "action": "action_net", "value": "value_net"}[prefix]
    return (f"{base}.weight", t.T) if kind == "w" else (f"{base}.bias", t[0])


@pytest.mark.parametrize("task,batch_size", [("cartpole", M), ("cartpole", 32), ("navigation", 32)])
def test_torch_update_equals_sb3_train_on_one_batch(task, batch_size):
    run = _torch_run(task, batch_size)
    _fill_batch(run)
    model = _sb3_model(run, task, batch_size)
    _load_sb3_buffer(model, run)
    torch.manual_seed(0)
    model.train()
    stats = tp.update(run, HP["learning_rate"])
    logged = model.logger.name_to_value
    minibatches = M // batch_size
    assert float(stats["minibatches"][0]) == minibatches and run.optimizer.steps.tolist() == [minibatches]
    assert float(stats["finite"][0]) == 1.0
    for ours, theirs in (("pg", "policy_gradient_loss"), ("value", "value_loss"), ("entropy", "entropy_loss"),
                         ("kl", "approx_kl"), ("clip", "clip_fraction"), ("loss", "loss")):
        assert float(stats[ours][0]) == pytest.approx(float(logged[f"train/{theirs}"]), rel=1e-5, abs=1e-6), ours
    # every term is live on this batch: ratio clipping on some samples, not all; the last gradient clipped to
    # max_grad_norm (SB3 left it in .grad)
    assert 0.05 < float(stats["clip"][0]) < 0.95
    last_norm = torch.stack([p.grad.norm() for p in model.policy.parameters()]).norm()
    assert float(last_norm) == pytest.approx(HP["max_grad_norm"], rel=1e-4)

    sb3_params = dict(model.policy.named_parameters())
    sb3_state = model.policy.optimizer.state
    for (name, param), m, v in zip(run.policy.params.items(), run.optimizer.exp_avg, run.optimizer.exp_avg_sq):
        key, weights = _sb3_layout(name, param.detach())
        theirs = sb3_params[key]
        _, m0 = _sb3_layout(name, m)
        _, v0 = _sb3_layout(name, v)
        torch.testing.assert_close(m0, sb3_state[theirs]["exp_avg"], rtol=1e-4, atol=1e-7, msg=f"exp_avg {key}")
        torch.testing.assert_close(v0, sb3_state[theirs]["exp_avg_sq"], rtol=1e-4, atol=1e-9,
                                   msg=f"exp_avg_sq {key}")
        torch.testing.assert_close(weights, theirs.detach(), rtol=1e-4, atol=1e-6, msg=f"weights {key}")
        if minibatches == 1:  # one Adam step: exp_avg = (1 - beta1) * the clipped gradient SB3 left in .grad
            torch.testing.assert_close(m0 / 0.1, theirs.grad, rtol=1e-4, atol=1e-7, msg=f"grad {key}")
