"""Torch-native PPO on the batched envs, with seeds as a batch axis (read top to bottom, like CleanRL).

Rollout storage, GAE, observation/reward normalisation, the update and evaluation stay on the env's
device: no numpy, no per-step host copy (the host learns a few numbers once per update and per
evaluation). A ``SeedBatch`` is S seeds of one config as one computation: one batched env per seed (its
own stream), stacked networks (``automl.train.torch_policy``), per-seed Adam, gradient clipping,
minibatch permutations, normalisation statistics and failure; one seed is the same code with S = 1.
The loop around it (evaluations, channel, checkpoints, saving) is ``automl.train.loop`` through the
adapter ``automl.train.torch_train.TorchTrainer``.

Semantics are SB3 PPO's (with VecNormalize when ``normalize``), see ``automl.train.sb3_train.train_seed``:
same PPOSetup, evaluations, SeedResult, channel, deadline and non-finite handling.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Sequence, cast

import torch

from automl.core.config import PPOSetup
from automl.train.evaluation import EVAL_SEED_OFFSET
from automl.train.torch_policy import StackedAdam, StackedPolicy, clip_grad_norms_
from automl.train.torch_normalize import Normalizer

if TYPE_CHECKING:
    import gymnasium as gym

# the values a member of a population (PBT) or a replayed schedule may change between rollouts: per-seed
# tensors in ``SeedBatch.hp`` (SB3 names); the rest (rollout and batch sizes, epochs, networks) is shared.
MEMBER_PARAMS = ("learning_rate", "gamma", "gae_lambda", "clip_range", "ent_coef", "vf_coef", "max_grad_norm")
# PPO's Adam, as the online tuner names them: one value for the whole batch (a tuned job trains one seed)
OPTIMIZER_PARAMS = {"weight_decay": "weight_decay", "adam_beta1": "beta1", "adam_beta2": "beta2", "adam_eps": "eps"}

_SUPPORTED = {"policy", "learning_rate", "n_steps", "batch_size", "n_epochs", "gamma", "gae_lambda", "clip_range",
              "clip_range_vf", "ent_coef", "vf_coef", "max_grad_norm", "target_kl", "policy_kwargs",
              "normalize_advantage"}


@dataclass(frozen=True)
class Args:
    """Every knob of a run (SB3 PPO's names and defaults), read from a PPOSetup by ``from_setup``.

    :param learning_rate: Adam step size; with ``schedule`` 'linear' it decays to 0 at ``total_steps``
    :param n_steps: env steps per env per rollout; a rollout is n_steps * num_envs samples per seed
    :param batch_size: minibatch size (samples per seed); n_epochs passes over the rollout
    :param clip_range: PPO ratio clip; ``clip_range_vf`` (None: off) clips the value change the same way
    :param target_kl: a seed stops this update's epochs once its minibatch approx KL > 1.5 * target_kl
    :param normalize: VecNormalize: observations (clip 10) and rewards (by the discounted return's std, clip 10)
    """

    learning_rate: float = 3e-4
    schedule: str = "constant"
    n_steps: int = 2048
    batch_size: int = 64
    n_epochs: int = 10
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    clip_range_vf: float | None = None
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    target_kl: float | None = None
    normalize_advantage: bool = True
    num_envs: int = 8
    normalize: bool = False
    policy_kwargs: Mapping | None = None

    @classmethod
    def from_setup(cls, setup: PPOSetup) -> "Args":
        """The trainer's knobs from the same PPOSetup the SB3 path takes (ValueError for one it lacks)."""
        kwargs = dict(setup.ppo_kwargs)
        unknown = set(kwargs) - _SUPPORTED
        if unknown or kwargs.pop("policy", "MlpPolicy") != "MlpPolicy":
            raise ValueError(f"ppo_kwargs: {', '.join(sorted(unknown)) or 'policy'} not supported by the torch "
                             f"trainer (allowed: {', '.join(sorted(_SUPPORTED))}; policy MlpPolicy)")
        return cls(**kwargs, schedule=setup.learning_rate_schedule, num_envs=int(setup.num_envs),
                   normalize=bool(setup.normalize))


class SeedBatch:
    """One batch of seeds: envs, networks, optimizer, storage and the per-seed bookkeeping."""

    def __init__(self, args: Args, env: str, seeds: Sequence[int], *, eval_episodes: int, device: torch.device,
                 reward_weights: Mapping | None):
        import envs

        self.args, self.seeds, self.device = args, [int(s) for s in seeds], device
        weights = dict(reward_weights) if reward_weights else None
        self.envs = [envs.make(env, args.num_envs, device=device, seed=s, reward_weights=weights) for s in self.seeds]
        self.eval_envs = [envs.make(env, eval_episodes, device=device, seed=s + EVAL_SEED_OFFSET,
                                    reward_weights=weights) for s in self.seeds]
        first = self.envs[0]
        self.true_metric = first.true_metric
        self.policy = StackedPolicy(first.observation_space.shape[0], first.action_space, self.seeds,
                                    args.policy_kwargs, device)
        self.optimizer = StackedAdam(self.policy.parameters())
        # own streams per seed: action noise and minibatch order never depend on the other seeds
        self.noise_gens = [torch.Generator(device=device).manual_seed(s + 1_000_003) for s in self.seeds]
        self.perm_gens = [torch.Generator(device=device).manual_seed(s + 2_000_003) for s in self.seeds]
        S, N, T, D = len(self.seeds), args.num_envs, args.n_steps, first.observation_space.shape[0]
        A = 1 if self.policy.discrete else self.policy.action_dim
        self.dims = (S, T, N, D, A)
        # one packed buffer, so a minibatch is one gather: obs | action | logp | advantage | return | value
        self.data = torch.zeros(S, T, N, D + A + 4, device=device)
        self.obs, self.actions = self.data[..., :D], self.data[..., D:D + A]
        self.logp, self.advantages, self.returns, self.values = self.data[..., D + A:].unbind(-1)
        self.rewards = torch.zeros(S, T, N, device=device)
        self.dones = torch.zeros(S, T, N, device=device)
        self.time_limits = torch.zeros(S, T, N, device=device)  # truncated and not terminated
        self.final_obs = torch.zeros(S, T, N, D, device=device)
        self.next_obs = torch.zeros(S, N, D, device=device)
        self.next_done = torch.zeros(S, N, device=device)
        self.noise = torch.zeros(S, N, self.policy.action_dim, device=device)
        space = first.action_space
        if not self.policy.discrete:
            space = cast("gym.spaces.Box", space)  # StackedPolicy accepts Discrete or Box only
            self.low = torch.as_tensor(space.low, device=device).float()
            self.high = torch.as_tensor(space.high, device=device).float()
        self.norm = Normalizer(S, N, D, gamma=args.gamma, device=device) if args.normalize else None
        self.alive = torch.ones(S, dtype=torch.bool, device=device)
        self.failed: dict[int, tuple[int, str]] = {}  # seed index -> (steps, detail)
        self.steps = 0
        self.hp: dict[str, torch.Tensor] | None = None  # per-seed MEMBER_PARAMS once set_values ran

    def coef(self, name: str, dims: int = 1):
        """``args.<name>``, or the per-seed values as a tensor [S, 1, ...] of ``dims`` dims once set."""
        if self.hp is None:
            return getattr(self.args, name)
        return self.hp[name].view(-1, *([1] * (dims - 1)))

    def set_values(self, s: int, values: Mapping[str, float], weights: Mapping[str, float] | None = None) -> None:
        """Give seed ``s`` its own MEMBER_PARAMS values (missing ones: args') and reward weights (PBT, replays);
        OPTIMIZER_PARAMS (the tuner's) set Adam's for the whole batch."""
        unknown = set(values) - set(MEMBER_PARAMS) - set(OPTIMIZER_PARAMS)
        if unknown:
            raise ValueError(f"per-member values: {', '.join(sorted(unknown))} (allowed: "
                             f"{', '.join((*MEMBER_PARAMS, *OPTIMIZER_PARAMS))})")
        for k in set(values) & set(OPTIMIZER_PARAMS):
            setattr(self.optimizer, OPTIMIZER_PARAMS[k], float(values[k]))
        if set(values) <= set(OPTIMIZER_PARAMS) and values and not weights:
            return  # Adam's only: the per-seed values stay as they were (None: the config's)
        values = {k: v for k, v in values.items() if k in MEMBER_PARAMS}
        if self.hp is None:
            S = len(self.seeds)
            self.hp = {k: torch.full((S,), float(getattr(self.args, k)), device=self.device) for k in MEMBER_PARAMS}
        for k, v in values.items():
            self.hp[k][s] = float(v)
        if self.norm is not None:
            self.norm.gamma = self.hp["gamma"].double().view(-1, 1)
        if weights:
            for env in (self.envs[s], self.eval_envs[s]):
                env.set_reward_weights(weights)

    def optimizer_values(self) -> dict[str, float]:
        """Adam's OPTIMIZER_PARAMS now."""
        return {k: float(getattr(self.optimizer, attr)) for k, attr in OPTIMIZER_PARAMS.items()}

    def reset(self) -> None:
        """First observations of every seed's envs (seeded by their seeds at construction)."""
        for s, env in enumerate(self.envs):
            self.next_obs[s].copy_(env.reset())
        if self.norm is not None:
            self.norm.observe(self.next_obs)

    def live(self) -> list[int]:
        """Indices of the seeds that have not failed."""
        return [s for s in range(len(self.seeds)) if s not in self.failed]


def collect(run: SeedBatch, deadline: float | None) -> bool:
    """Fill the rollout storage (n_steps of every seed's envs); False if the deadline hit first."""
    policy = run.policy
    S, T, N, D, A = run.dims
    for t in range(T):
        if deadline is not None and time.time() >= deadline:
            return False
        run.obs[:, t] = run.next_obs
        with torch.no_grad():
            head, value = policy.forward(run.next_obs)
            for s, gen in enumerate(run.noise_gens):
                (run.noise[s].uniform_ if policy.discrete else run.noise[s].normal_)(generator=gen)
            action, logp = policy.sample(head, run.noise)
        run.values[:, t], run.logp[:, t] = value, logp
        if policy.discrete:
            run.actions[:, t, :, 0] = action
            env_actions = action
        else:
            run.actions[:, t] = action
            env_actions = torch.maximum(torch.minimum(action, run.high), run.low)  # SB3 clips what the env sees
        for s, env in enumerate(run.envs):
            obs, reward, terminated, truncated, info = env.step(env_actions[s])
            run.next_obs[s].copy_(obs)
            run.rewards[s, t].copy_(reward)
            torch.logical_or(terminated, truncated, out=run.next_done[s])
            torch.logical_and(truncated, ~terminated, out=run.time_limits[s, t])
            run.final_obs[s, t].copy_(info["final_observation"])
        run.dones[:, t] = run.next_done
        if run.norm is not None:
            run.norm.observe(run.next_obs)
            run.norm.normalize_(run.final_obs[:, t])
            run.norm.reward_(run.rewards[:, t], run.next_done)
        run.steps += N
    return True


def advantages(run: SeedBatch) -> None:
    """Time-limit bootstrap, then GAE(lambda) and returns, as SB3's RolloutBuffer computes them."""
    S, T, N = run.dims[:3]
    gamma, lam = run.coef("gamma", 2), run.coef("gae_lambda", 2)
    with torch.no_grad():
        if bool(run.time_limits.any()):  # one host sync per rollout; one value pass for all truncations
            final_values = run.policy.value(run.final_obs.view(S, T * N, -1)).view(S, T, N)
            if run.hp is None:
                run.rewards.addcmul_(final_values.nan_to_num_(), run.time_limits, value=gamma)
            else:
                run.rewards.addcmul_(final_values.nan_to_num_() * run.coef("gamma", 3), run.time_limits)
        last_values = run.policy.value(run.next_obs)
    last = torch.zeros(S, N, device=run.device)
    for t in reversed(range(T)):
        next_values = last_values if t == T - 1 else run.values[:, t + 1]
        not_done = 1.0 - run.dones[:, t]
        delta = run.rewards[:, t] + gamma * next_values * not_done - run.values[:, t]
        last = delta + gamma * lam * not_done * last
        run.advantages[:, t] = last
    torch.add(run.advantages, run.values, out=run.returns)


def update(run: SeedBatch, lr: float | torch.Tensor) -> dict[str, torch.Tensor]:
    """n_epochs of clipped PPO over shuffled minibatches, per seed (``lr``: one or per seed [S]); returns
    per-seed statistics [S]."""
    args, policy = run.args, run.policy
    clip, ent_coef, vf_coef = run.coef("clip_range", 2), run.coef("ent_coef"), run.coef("vf_coef")
    max_grad_norm = run.coef("max_grad_norm")
    S, T, N, D, A = run.dims
    M = T * N
    flat = run.data.view(S, M, -1)
    params = policy.parameters()
    active = run.alive.clone()  # a seed leaves this update at its target_kl stop (SB3's break)
    sums = {k: torch.zeros(S, device=run.device) for k in ("pg", "value", "entropy", "kl", "clip", "n")}
    all_finite = torch.ones(S, dtype=torch.bool, device=run.device)
    loss = torch.zeros(S, device=run.device)
    rows = flat.view(S * M, -1)
    offsets = torch.arange(S, device=run.device).unsqueeze(1) * M  # seed s's samples are rows s*M ... s*M+M-1
    for _ in range(args.n_epochs):
        perms = torch.stack([torch.randperm(M, generator=g, device=run.device) for g in run.perm_gens]).add_(offsets)
        for start in range(0, M, args.batch_size):
            idx = perms[:, start:start + args.batch_size]
            batch = rows.index_select(0, idx.reshape(-1)).view(S, idx.shape[1], -1)
            obs, actions = batch[..., :D], batch[..., D:D + A]
            old_logp, adv, returns, old_values = batch[..., D + A:].unbind(-1)
            if policy.discrete:
                actions = actions.squeeze(-1)
            if args.normalize_advantage and adv.shape[1] > 1:
                adv = (adv - adv.mean(1, keepdim=True)) / (adv.std(1, keepdim=True) + 1e-8)
            head, values = policy.forward(obs)
            logp, entropy = policy.log_prob_entropy(head, actions)
            log_ratio = logp - old_logp
            ratio = log_ratio.exp()
            clipped = ratio.clamp(1.0 - clip, 1.0 + clip)  # clip: a number, or per seed [S, 1]
            pg_loss = -torch.minimum(adv * ratio, adv * clipped).mean(1)
            if args.clip_range_vf is not None:
                values = old_values + (values - old_values).clamp(-args.clip_range_vf, args.clip_range_vf)
            value_loss = (returns - values).square().mean(1)
            entropy_loss = -entropy.mean(1)
            loss = pg_loss + ent_coef * entropy_loss + vf_coef * value_loss
            with torch.no_grad():
                kl = ((ratio - 1.0) - log_ratio).mean(1)
                if args.target_kl is not None:
                    active &= kl <= 1.5 * args.target_kl
                step = active.float()
                all_finite &= torch.isfinite(loss) | ~active
                for key, val in (("pg", pg_loss), ("value", value_loss), ("entropy", entropy_loss), ("kl", kl),
                                 ("clip", ((ratio - 1.0).abs() > clip).float().mean(1))):
                    sums[key].add_(val * step)
                sums["n"].add_(step)
            grads = torch.autograd.grad(loss.sum(), params)
            with torch.no_grad():
                clip_grad_norms_(grads, max_grad_norm)
            run.optimizer.step(grads, lr, active)
        if args.target_kl is not None and not bool(active.any()):
            break
    n = sums.pop("n")
    stats = {k: v / n.clamp(min=1.0) for k, v in sums.items()}
    stats["loss"], stats["finite"], stats["minibatches"] = loss.detach(), all_finite, n
    return stats


def check_finite(run: SeedBatch, stats: dict[str, torch.Tensor]) -> None:
    """Fail the seeds whose loss or parameters went non-finite (or whose Discrete policy saturated), and only them.

    A failed seed's parameters are zeroed (finite, so it cannot disturb anything) and it is never updated again.
    """
    with torch.no_grad():
        ok = stats["finite"].clone()
        for p in run.policy.parameters():
            ok &= torch.isfinite(p).flatten(1).all(1)
        # (a seed stopped by target_kl before its first minibatch has no entropy to judge)
        saturated = (stats["entropy"] == 0.0) & (stats["minibatches"] > 0) if run.policy.discrete else torch.zeros_like(ok)
        bad = (run.alive & ~(ok & ~saturated)).tolist()
        why = saturated.tolist()
    for s, is_bad in enumerate(bad):
        if not is_bad:
            continue
        detail = ("policy logits overflowed (inf-like saturation): entropy exactly 0, gradients vanish" if why[s]
                  else "training diverged (nan/inf): non-finite PPO loss or policy parameter")
        run.failed[s] = (run.steps, detail)
        run.alive[s] = False
        with torch.no_grad():
            for p in run.policy.parameters():
                p[s].zero_()
