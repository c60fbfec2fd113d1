"""The torch-native PPO trainer: its pieces against SB3's / torch's own, seed independence, SB3 loading,
failure isolation, channel and deadline, TensorBoard. All on CPU, real envs and networks."""
from __future__ import annotations

import glob
import math
import time

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.running_mean_std import RunningMeanStd

import envs
from automl.train import torch_ppo as tp
from automl.train import torch_train as tt
from automl.train.torch_policy import StackedAdam, StackedPolicy, clip_grad_norms_
from automl.train.torch_normalize import RunningStats
from automl.train.result import SeedResult, to_setup as _to_setup
from automl.exec.workers import LocalChannel
from _clock import FakeClock, JumpAtFirstReport

CART = dict(num_envs=16, rollouts=32, mini_batches=4, learning_epochs=4, learning_rate=1e-3, discount_factor=0.98,
            lambda_param=0.8, entropy_loss_scale=0.0, policy_hidden_layer_sizes=[32, 32], grad_norm_clip=0.5)
NAV = dict(num_envs=32, rollouts=16, mini_batches=4, learning_epochs=3, learning_rate=3e-4,
           policy_hidden_layer_sizes=[32, 32], grad_norm_clip=1.0, normalize=True)
TIMING = ("wall_s", "train_s", "eval_s", "peak_memory_mb")  # measurements of the machine, not results


def _plain(result: SeedResult) -> dict:
    return {k: v for k, v in result.to_dict().items() if k not in TIMING}


def _run(params: dict, env: str, seeds: list[int]) -> tp.SeedBatch:
    run = tp.SeedBatch(tp.Args.from_setup(_to_setup(params)), env, seeds, eval_episodes=4, device=torch.device("cpu"),
                 reward_weights=None)
    run.reset()
    return run


# -- pieces against SB3 / torch ------------------------------------------------------------------

def test_gae_matches_sb3_rollout_buffer():
    """Same values, rewards and dones: advantages and returns equal SB3's RolloutBuffer's."""
    run = _run(CART, "cartpole", [0])
    tp.collect(run, None)
    run.time_limits.zero_()  # the bootstrap is checked separately; SB3's buffer gets the rewards as they are
    rewards, values, dones = run.rewards[0].clone(), run.values[0].clone(), run.dones[0].clone()
    tp.advantages(run)
    T, N = rewards.shape
    with torch.no_grad():
        last_values = run.policy.value(run.next_obs)[0]
    buf = RolloutBuffer(T, run.envs[0].observation_space, run.envs[0].action_space, device="cpu", gamma=0.98,
                        gae_lambda=0.8, n_envs=N)
    starts = torch.cat([torch.zeros(1, N), dones[:-1]])  # SB3 stores "this obs starts an episode"
    for t in range(T):
        buf.add(np.zeros((N, 4), np.float32), np.zeros((N, 1)), rewards[t].numpy(), starts[t].numpy(),
                values[t].unsqueeze(1), torch.zeros(N))
    buf.compute_returns_and_advantage(last_values.unsqueeze(1), dones[-1].numpy())
    np.testing.assert_allclose(run.advantages[0].numpy(), buf.advantages, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(run.returns[0].numpy(), buf.returns, rtol=1e-5, atol=1e-5)


def test_time_limit_bootstrap_adds_gamma_times_value_of_the_terminal_obs():
    run = _run(CART, "cartpole", [0])
    tp.collect(run, None)
    run.time_limits.zero_()
    run.time_limits[0, 3, 5] = 1.0  # as if env 5 hit its time limit at step 3
    before = run.rewards.clone()
    tp.advantages(run)
    with torch.no_grad():
        expected = 0.98 * run.policy.value(run.final_obs[:, 3, 5:6])[0, 0]
    assert float(run.rewards[0, 3, 5] - before[0, 3, 5]) == pytest.approx(float(expected), rel=1e-5)
    changed = (run.rewards != before).nonzero().tolist()
    assert changed == [[0, 3, 5]]


def test_running_stats_match_sb3_running_mean_std():
    gen = torch.Generator().manual_seed(0)
    mine, theirs = RunningStats(2, (3,), torch.device("cpu")), [RunningMeanStd(shape=(3,)) for _ in range(2)]
    for _ in range(5):
        x = torch.randn(2, 7, 3, generator=gen) * 4 + 2
        mine.update(x)
        for s in range(2):
            theirs[s].update(x[s].double().numpy())
    for s in range(2):
        np.testing.assert_allclose(mine.mean[s].numpy(), theirs[s].mean, rtol=1e-6)
        np.testing.assert_allclose(mine.var[s].numpy(), theirs[s].var, rtol=1e-5)


def test_stacked_adam_is_torch_adam_per_seed_and_skips_masked_seeds():
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(3, 4, 5, generator=gen)
    stacked = start.clone().requires_grad_(True)
    opt = StackedAdam([stacked])
    reference = [torch.nn.Parameter(start[s].clone()) for s in range(3)]
    torch_opts = [torch.optim.Adam([p], lr=0.01, eps=1e-5) for p in reference]
    masks = [[1, 1, 1], [1, 0, 1], [1, 0, 1], [0, 1, 1]]
    for mask in masks:
        grad = torch.randn(3, 4, 5, generator=gen)
        opt.step([grad], 0.01, torch.tensor(mask))
        for s in range(3):
            if mask[s]:
                reference[s].grad = grad[s].clone()
                torch_opts[s].step()
    for s in range(3):
        torch.testing.assert_close(stacked.detach()[s], reference[s].detach(), rtol=1e-5, atol=1e-6)


def test_gradient_clipping_is_per_seed():
    gen = torch.Generator().manual_seed(1)
    grads = [torch.randn(2, 3, 4, generator=gen), torch.randn(2, 1, 4, generator=gen)]
    grads[0][1] *= 100  # seed 1's gradient is huge, seed 0's is small
    reference = [[g[s].clone().requires_grad_(False) for g in grads] for s in range(2)]
    norms = clip_grad_norms_(grads, 10.0)
    for s in range(2):
        params = [torch.nn.Parameter(torch.zeros_like(g)) for g in reference[s]]
        for p, g in zip(params, reference[s]):
            p.grad = g
        expected_norm = torch.nn.utils.clip_grad_norm_(params, 10.0)
        assert float(norms[s]) == pytest.approx(float(expected_norm), rel=1e-5)
        for p, g in zip(params, grads):
            torch.testing.assert_close(g[s], p.grad, rtol=1e-5, atol=1e-7)
    assert float(norms[0]) < 10 < float(norms[1])  # seed 0 kept its gradient: not scaled by seed 1's norm


def test_policy_matches_sb3_mlp_policy_layout_and_init_gains():
    space = envs.make("navigation", 1, device="cpu").action_space
    policy = StackedPolicy(17, space, [0, 1], {"net_arch": [64, 32]}, torch.device("cpu"))
    w = policy.params["pi.0.w"][0].detach()  # [in, out] = [17, 64], nn.Linear's weight transposed
    torch.testing.assert_close(w @ w.T, 2.0 * torch.eye(17), atol=1e-5, rtol=1e-5)  # orthogonal, gain sqrt(2)
    head = policy.params["action.w"][0].detach()  # [32, 2]: 2 orthogonal directions of norm 0.01
    torch.testing.assert_close(head.T @ head, 1e-4 * torch.eye(2), atol=1e-9, rtol=1e-5)
    value = policy.params["value.w"][0].detach()
    assert float(value.norm()) == pytest.approx(1.0, rel=1e-5)  # gain 1 on the value head
    assert float(policy.params["pi.0.b"].abs().max()) == 0.0
    assert not torch.equal(policy.params["pi.0.w"][0], policy.params["pi.0.w"][1])  # each seed its own init
    alone = StackedPolicy(17, space, [1], {"net_arch": [64, 32]}, torch.device("cpu"))
    for name, tensor in alone.params.items():  # seed 1's init does not depend on the batch it is in
        assert torch.equal(tensor[0], policy.params[name][1]), name


# -- the trainer --------------------------------------------------------------------------------

def test_single_seed_equals_a_batch_of_one_and_batch_neighbours_do_not_matter():
    kwargs = dict(env="cartpole", total_steps=3 * 512, eval_every=1024, eval_episodes=4, device="cpu")
    single = tt.train_seed_torch(CART, seed=7, **kwargs)
    one = tt.train_seeds_torch(CART, seeds=[7], **kwargs)[0]
    many = tt.train_seeds_torch(CART, seeds=[5, 6, 7], **kwargs)
    assert single.state == "complete" and len(single.evals) == 2
    assert _plain(single) == _plain(one)
    assert [r.seed for r in many] == [5, 6, 7]
    assert many[2].steps == single.steps
    np.testing.assert_allclose([v for _, v in many[2].evals], [v for _, v in single.evals], rtol=1e-5, atol=1e-5)
    assert many[2].shaped_return == pytest.approx(single.shaped_return, rel=1e-5)
    assert len({tuple(v for _, v in r.evals) for r in many}) > 1  # different seeds, different runs


def test_seed_weights_do_not_depend_on_the_batch():
    """After updates, seed 7's parameters are the same alone and beside seeds 5 and 6 (float tolerance)."""
    runs = {key: _run(NAV, "navigation", seeds) for key, seeds in (("alone", [7]), ("batch", [5, 6, 7]))}
    for run in runs.values():
        for _ in range(2):
            tp.collect(run, None)
            tp.advantages(run)
            tp.check_finite(run, tp.update(run, 3e-4))
    for name, tensor in runs["alone"].policy.params.items():
        torch.testing.assert_close(runs["batch"].policy.params[name][2], tensor[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(runs["batch"].norm.obs_rms.mean[2], runs["alone"].norm.obs_rms.mean[0])


def test_a_nan_in_one_seed_fails_that_seed_only():
    batch, pair = _run(CART, "cartpole", [5, 6, 7]), _run(CART, "cartpole", [5, 7])
    for step in range(3):
        for run in (batch, pair):
            tp.collect(run, None)
            tp.advantages(run)
            stats = tp.update(run, 1e-3)
            if step == 0 and run is batch:
                with torch.no_grad():
                    batch.policy.params["pi.0.w"][1, 0, 0] = math.nan  # seed 6 diverges
            tp.check_finite(run, stats)
    assert list(batch.failed) == [1] and "nan" in batch.failed[1][1]
    assert batch.alive.tolist() == [True, False, True]
    for name, tensor in pair.policy.params.items():  # seeds 5 and 7 went on exactly as without seed 6
        torch.testing.assert_close(batch.policy.params[name][[0, 2]], tensor, rtol=1e-4, atol=1e-5)
        assert torch.isfinite(batch.policy.params[name]).all()


def test_diverging_config_fails_without_raising():
    params = {**CART, "learning_rate": 1e4, "grad_norm_clip": 1e9}
    results = tt.train_seeds_torch(params, env="cartpole", seeds=[0, 1], total_steps=4 * 512, eval_every=512,
                                   eval_episodes=2, device="cpu")
    assert [r.state for r in results] == ["failed", "failed"]
    assert all(r.stop_reason == "non_finite" and r.episode_reward_mean is None and r.reason for r in results)


def test_channel_gets_the_mean_over_seeds_and_a_stop_prunes():
    channel = LocalChannel()
    results = tt.train_seeds_torch(CART, env="cartpole", seeds=[0, 1], total_steps=4 * 512, eval_every=512,
                                   eval_episodes=4, device="cpu", channel=channel)
    assert [r["eval_index"] for r in channel.reports] == [0, 1, 2, 3]
    for k, report in enumerate(channel.reports):
        assert report["value"] == pytest.approx(np.mean([r.evals[k][1] for r in results]))
        assert report["steps"] == results[0].evals[k][0]

    class StopAfterFirst(LocalChannel):
        def report(self, payload):
            super().report(payload)
            self.stop("pruned by median pruner")

    channel = StopAfterFirst()
    results = tt.train_seeds_torch(CART, env="cartpole", seeds=[0, 1], total_steps=8 * 512, eval_every=512,
                                   eval_episodes=4, device="cpu", channel=channel)
    assert [(r.state, r.stop_reason, r.steps, len(r.evals)) for r in results] == \
        [("pruned", "pruned by median pruner", 512, 1)] * 2  # first eval: after one rollout


def test_deadline_stops_every_seed(monkeypatch):
    past = tt.train_seeds_torch(CART, env="cartpole", seeds=[0, 1], total_steps=512, device="cpu",
                                deadline=time.time() - 1)
    assert [(r.state, r.steps) for r in past] == [("stopped_at_deadline", 0)] * 2
    # the deadline is a minute away until the first evaluation's report moves the clock past it (issue 26: not
    # the machine's speed): every seed stops right at that boundary, before the next rollout's first step
    clock = FakeClock(monkeypatch)
    soon = tt.train_seeds_torch(CART, env="cartpole", seeds=[0, 1], total_steps=10_000_000, eval_every=512,
                                eval_episodes=4, device="cpu", deadline=time.time() + 60,
                                channel=JumpAtFirstReport(clock))
    assert [(r.state, r.stop_reason, r.steps, len(r.evals)) for r in soon] == \
        [("stopped_at_deadline", "deadline", 512, 1)] * 2


@pytest.mark.parametrize("task,params", [("cartpole", CART), ("navigation", NAV), ("acrobot", CART), ("pendulum", NAV),
                                         ("mountaincar", CART)])
def test_saved_policy_loads_in_sb3_with_the_same_deterministic_actions(tmp_path, task, params):
    path = str(tmp_path / "model")
    result = tt.train_seed_torch(params, env=task, seed=3, total_steps=2 * 512, eval_episodes=2, device="cpu",
                                 save_path=path, tb_dir=str(tmp_path / "tb"))
    assert result.state == "complete"
    model = PPO.load(path + ".zip", device="cpu")
    # the trainer's own policy after the same run, rebuilt from the same seed and steps
    run = _run(params, task, [3])
    for _ in range(2):
        tp.collect(run, None)
        tp.advantages(run)
        tp.check_finite(run, tp.update(run, params["learning_rate"]))
    obs = torch.stack([envs.make(task, 64, device="cpu", seed=s).reset().clone() for s in range(2)]).view(128, -1)
    net_obs = obs.clone().unsqueeze(0)
    if run.norm is not None:
        run.norm.normalize_(net_obs)
        from stable_baselines3.common.vec_env import VecNormalize

        stats = VecNormalize.load(path + "_vecnormalize.pkl", envs.make_vec(task, 1, device="cpu"))
        sb3_obs = stats.normalize_obs(obs.numpy())
    else:
        sb3_obs = obs.numpy()
    with torch.no_grad():
        mine = run.policy.deterministic(run.policy.actor(net_obs))[0]
    if not run.policy.discrete:  # SB3's predict clips to the action space's bounds ([-1, 1]; pendulum [-2, 2])
        space = envs.make(task, 1, device="cpu").action_space
        mine = mine.clamp(float(space.low.min()), float(space.high.max()))
    theirs, _ = model.predict(sb3_obs, deterministic=True)
    np.testing.assert_allclose(theirs.reshape(mine.shape), mine.numpy(), rtol=1e-4, atol=1e-5)
    assert glob.glob(str(tmp_path / "tb" / "seed_3" / "events.out.tfevents.*"))


def test_gymnasium_ids_and_unknown_knobs_are_refused_in_one_line():
    with pytest.raises(ValueError, match="allowed: cartpole, navigation"):
        tt.train_seed_torch(CART, env="CartPole-v1", seed=0, total_steps=512, device="cpu")
    with pytest.raises(ValueError, match="use_sde not supported"):
        tp.Args.from_setup(_to_setup(CART).__class__(ppo_kwargs={"use_sde": True}))


def test_run_jobs_return_plain_dicts():
    kwargs = dict(env="cartpole", total_steps=512, eval_episodes=2, device="cpu")
    one = tt.run_job_torch(params=CART, seed=0, **kwargs)
    many = tt.run_seeds_job_torch(params=CART, seeds=[0, 1], **kwargs)
    assert one["state"] == "complete" and [m["seed"] for m in many] == [0, 1]
    assert {k: v for k, v in one.items() if k not in TIMING} == {k: v for k, v in many[0].items() if k not in TIMING}


def test_target_kl_stops_each_seed_after_its_first_step():
    """SB3: a minibatch whose approx KL > 1.5 * target_kl ends the update before its step. The first minibatch
    has KL 0 (the policy that collected the rollout), every later one > 1.5e-12: one Adam step per seed."""
    run = _run({**CART, "target_kl": 1e-12}, "cartpole", [0, 1])
    tp.collect(run, None)
    tp.advantages(run)
    stats = tp.update(run, 1e-3)
    assert run.optimizer.steps.tolist() == [1.0, 1.0] and stats["minibatches"].tolist() == [1.0, 1.0]
    tp.check_finite(run, stats)
    assert not run.failed
    free = _run(CART, "cartpole", [0, 1])
    tp.collect(free, None)
    tp.advantages(free)
    tp.update(free, 1e-3)
    assert free.optimizer.steps.tolist() == [16.0, 16.0]  # 4 epochs x 4 minibatches
