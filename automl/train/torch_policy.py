"""S independent PPO actor-critics as stacked tensors: the seed axis of the torch trainer.

Every parameter has the seed as its first dimension (weights ``[S, in, out]``, biases ``[S, 1, out]``,
``log_std`` ``[S, 1, A]``) and every layer is one ``torch.baddbmm``, so S networks cost one call per
layer. Seed s's numbers never mix with another seed's: its init comes from its own generator, its
forward is its own slice of each bmm, its gradient is d(sum of losses)/d(its params) = d(its loss),
and ``StackedAdam`` and gradient clipping work per seed. The networks are SB3's ``MlpPolicy``
(separate pi and vf MLPs, orthogonal init with gains sqrt(2) / 0.01 / 1, Categorical or diagonal
Gaussian with a state-independent log_std), so ``to_sb3`` copies one seed into an SB3 ``PPO``.
Distributions are written out (no ``torch.distributions``): nothing validates or raises on NaN,
so a diverging seed is caught by the trainer's finite check and fails alone.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import gymnasium as gym
import torch
from torch import nn

ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu, "elu": nn.functional.elu, "leakyrelu": nn.functional.leaky_relu,
               "gelu": nn.functional.gelu, "silu": nn.functional.silu}
LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class _SigmoidTanh(torch.autograd.Function):
    """tanh(x) = 2 sigmoid(2x) - 1 and tanh's own backward g (1 - y^2): on CPU ~2.5x faster than torch.tanh (whose
    accurate kernel dominated the update's profile), equal to it within ~1e-7. Used on CPU only: on
    CUDA one tanh kernel beats four."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = torch.mul(x, 2.0).sigmoid_().mul_(2.0).sub_(1.0)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


def cpu_tanh(x: torch.Tensor) -> torch.Tensor:
    """tanh for CPU tensors, see ``_SigmoidTanh`` (plain torch.tanh outside autograd is not used: same numbers everywhere)."""
    return _SigmoidTanh.apply(x)


def activation_name(fn: Any) -> str:
    """SB3's ``activation_fn`` (an nn.Module class such as nn.Tanh, or its name) -> a key of ACTIVATIONS."""
    name = (fn if isinstance(fn, str) else getattr(fn, "__name__", str(fn))).lower().removeprefix("nn.")
    if name not in ACTIVATIONS:
        raise ValueError(f"policy_kwargs.activation_fn: {fn!r} (allowed: {', '.join(ACTIVATIONS)})")
    return name


def net_arch(policy_kwargs: Mapping | None) -> tuple[list[int], list[int]]:
    """(pi sizes, vf sizes) as SB3's MlpPolicy reads ``net_arch``: a list is used for both, a dict names each."""
    arch = (policy_kwargs or {}).get("net_arch")
    if arch is None:
        return [64, 64], [64, 64]
    if isinstance(arch, Mapping):
        return [int(x) for x in arch.get("pi", [])], [int(x) for x in arch.get("vf", [])]
    return [int(x) for x in arch], [int(x) for x in arch]


def _torch_activation_class(name: str) -> type[nn.Module]:
    return {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "leakyrelu": nn.LeakyReLU, "gelu": nn.GELU,
            "silu": nn.SiLU}[name]


class StackedPolicy:
    """S MLP actor-critics (one per seed) in stacked tensors; see the module docstring."""

    def __init__(self, obs_dim: int, action_space: gym.Space, seeds: Sequence[int], policy_kwargs: Mapping | None,
                 device: torch.device):
        kwargs = dict(policy_kwargs or {})
        unknown = set(kwargs) - {"net_arch", "activation_fn", "log_std_init", "ortho_init"}
        if unknown:
            raise ValueError(f"policy_kwargs: {', '.join(sorted(unknown))} not supported by the torch trainer "
                             f"(allowed: net_arch, activation_fn, log_std_init, ortho_init)")
        self.pi_sizes, self.vf_sizes = net_arch(kwargs)
        self.activation = activation_name(kwargs.get("activation_fn", "tanh"))
        self.act = cpu_tanh if self.activation == "tanh" and torch.device(device).type == "cpu" else ACTIVATIONS[self.activation]
        self.ortho_init = bool(kwargs.get("ortho_init", True))
        self.log_std_init = float(kwargs.get("log_std_init", 0.0))
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        if isinstance(action_space, gym.spaces.Discrete):
            self.action_dim = int(action_space.n)
        elif isinstance(action_space, gym.spaces.Box):
            self.action_dim = int(math.prod(action_space.shape))
        else:
            raise ValueError(f"action space {action_space} (allowed: Discrete, Box)")
        self.obs_dim, self.num_seeds, self.device = int(obs_dim), len(seeds), device
        self.params = self._init_params([int(s) for s in seeds])
        self.pi_layers = [(self.params[f"pi.{i}.w"], self.params[f"pi.{i}.b"]) for i in range(len(self.pi_sizes))]
        self.vf_layers = [(self.params[f"vf.{i}.w"], self.params[f"vf.{i}.b"]) for i in range(len(self.vf_sizes))]

    # -- parameters -------------------------------------------------------------------------
    def _layer_shapes(self) -> list[tuple[str, int, int, float]]:
        """(name, fan_in, fan_out, orthogonal gain) in SB3's build order: pi MLP, vf MLP, action head, value head."""
        shapes, root2 = [], math.sqrt(2)
        for prefix, sizes in (("pi", self.pi_sizes), ("vf", self.vf_sizes)):
            fan_in = self.obs_dim
            for i, size in enumerate(sizes):
                shapes.append((f"{prefix}.{i}", fan_in, size, root2))
                fan_in = size
        shapes.append(("action", (self.pi_sizes or [self.obs_dim])[-1], self.action_dim, 0.01))
        shapes.append(("value", (self.vf_sizes or [self.obs_dim])[-1], 1, 1.0))
        return shapes

    def _init_params(self, seeds: list[int]) -> dict[str, torch.Tensor]:
        """Per seed, from its own CPU generator (the same numbers on every device and in any batch of seeds)."""
        per_seed = []
        for seed in seeds:
            gen = torch.Generator().manual_seed(seed)
            tensors = {}
            for name, fan_in, fan_out, gain in self._layer_shapes():
                weight = torch.empty(fan_out, fan_in)  # nn.Linear's layout, so init matches SB3's
                bias = torch.zeros(fan_out)
                if self.ortho_init:
                    nn.init.orthogonal_(weight, gain=gain, generator=gen)
                else:  # nn.Linear's default init
                    bound = 1.0 / math.sqrt(fan_in)
                    weight.uniform_(-bound, bound, generator=gen)
                    bias.uniform_(-bound, bound, generator=gen)
                tensors[f"{name}.w"], tensors[f"{name}.b"] = weight.T.contiguous(), bias[None, :]
            if not self.discrete:
                tensors["log_std"] = torch.full((1, self.action_dim), self.log_std_init)
            per_seed.append(tensors)
        return {k: torch.stack([t[k] for t in per_seed]).to(self.device).requires_grad_(True) for k in per_seed[0]}

    def parameters(self) -> list[torch.Tensor]:
        """The stacked parameters, each [S, ...] (leaf tensors that require grad)."""
        return list(self.params.values())

    # -- forward ------------------------------------------------------------------------------
    def _mlp(self, x: torch.Tensor, layers) -> torch.Tensor:
        for w, b in layers:
            x = self.act(torch.baddbmm(b, x, w))
        return x

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """obs [S, B, D] -> (logits or Gaussian mean [S, B, A], value [S, B])."""
        p = self.params
        head = torch.baddbmm(p["action.b"], self._mlp(obs, self.pi_layers), p["action.w"])
        value = torch.baddbmm(p["value.b"], self._mlp(obs, self.vf_layers), p["value.w"])
        return head, value.squeeze(-1)

    def actor(self, obs: torch.Tensor) -> torch.Tensor:
        """The policy head alone: obs [S, B, D] -> logits or Gaussian mean [S, B, A]."""
        p = self.params
        return torch.baddbmm(p["action.b"], self._mlp(obs, self.pi_layers), p["action.w"])

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """The critic alone: obs [S, B, D] -> [S, B]."""
        p = self.params
        return torch.baddbmm(p["value.b"], self._mlp(obs, self.vf_layers), p["value.w"]).squeeze(-1)

    def sample(self, head: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(action, log-prob) from ``noise``: U[0, 1) [S, B, A] for Discrete (Gumbel-max), N(0, 1) for Box."""
        if self.discrete:
            gumbel = noise.log_().neg_().log_().neg_()
            action = torch.argmax(head + gumbel, dim=-1)
            logp = torch.log_softmax(head, -1).gather(-1, action.unsqueeze(-1)).squeeze(-1)
            return action, logp
        log_std = self.params["log_std"]
        action = torch.addcmul(head, log_std.exp(), noise)
        logp = (noise.square() * -0.5 - log_std - LOG_SQRT_2PI).sum(-1)
        return action, logp

    def log_prob_entropy(self, head: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-prob of stored actions ([S, B] indices as float for Discrete, [S, B, A] for Box) and entropy [S, B]."""
        if self.discrete:
            logp_all = torch.log_softmax(head, -1)
            logp = logp_all.gather(-1, action.long().unsqueeze(-1)).squeeze(-1)
            entropy = -(logp_all.exp() * logp_all).sum(-1)
            return logp, entropy
        log_std = self.params["log_std"]
        z = (action - head) * torch.exp(-log_std)
        logp = (z.square() * -0.5 - log_std - LOG_SQRT_2PI).sum(-1)
        entropy = (log_std + 0.5 + LOG_SQRT_2PI).sum(-1).expand_as(logp)
        return logp, entropy

    def deterministic(self, head: torch.Tensor) -> torch.Tensor:
        """The mode: argmax of the logits, or the Gaussian mean (the caller clips to the action bounds)."""
        return torch.argmax(head, dim=-1) if self.discrete else head

    # -- SB3 export -----------------------------------------------------------------------------
    def sb3_policy_kwargs(self) -> dict:
        """policy_kwargs that make SB3's MlpPolicy build exactly these networks."""
        kwargs = {"net_arch": {"pi": list(self.pi_sizes), "vf": list(self.vf_sizes)},
                  "activation_fn": _torch_activation_class(self.activation), "ortho_init": False}
        if not self.discrete:
            kwargs["log_std_init"] = self.log_std_init
        return kwargs

    def sb3_state_dict(self, seed_index: int) -> dict[str, torch.Tensor]:
        """Seed ``seed_index``'s parameters under SB3 MlpPolicy's names (nn.Linear layout, on CPU)."""
        p, out = self.params, {}
        for prefix, sb3, sizes in (("pi", "policy_net", self.pi_sizes), ("vf", "value_net", self.vf_sizes)):
            for i in range(len(sizes)):  # nn.Sequential(Linear, act, Linear, act, ...): Linears at 0, 2, 4, ...
                out[f"mlp_extractor.{sb3}.{2 * i}.weight"] = p[f"{prefix}.{i}.w"][seed_index].T
                out[f"mlp_extractor.{sb3}.{2 * i}.bias"] = p[f"{prefix}.{i}.b"][seed_index, 0]
        out["action_net.weight"], out["action_net.bias"] = p["action.w"][seed_index].T, p["action.b"][seed_index, 0]
        out["value_net.weight"], out["value_net.bias"] = p["value.w"][seed_index].T, p["value.b"][seed_index, 0]
        if not self.discrete:
            out["log_std"] = p["log_std"][seed_index, 0]
        return {k: v.detach().cpu().contiguous() for k, v in out.items()}


class StackedAdam:
    """Adam (torch.optim.Adam's update, SB3's eps 1e-5) over stacked parameters, per seed.

    ``step(grads, lr, mask)`` updates only the seeds where ``mask`` [S] is 1: the others keep their
    parameters, moments and step count, exactly as if they had not been in the batch.
    """

    def __init__(self, params: Sequence[torch.Tensor], betas=(0.9, 0.999), eps: float = 1e-5,
                 weight_decay: float = 0.0):
        self.params = list(params)
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.weight_decay = weight_decay  # torch.optim.Adam's: L2, added to the gradient (SB3's default 0)
        self.exp_avg = [torch.zeros_like(p, requires_grad=False) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p, requires_grad=False) for p in self.params]
        self.steps = torch.zeros(len(self.params[0]), device=self.params[0].device)  # per seed

    @torch.no_grad()
    def step(self, grads: Sequence[torch.Tensor], lr: float | torch.Tensor, mask: torch.Tensor) -> None:
        """One Adam step for the seeds where mask == 1 (all parameters are [S, a, b]); ``lr``: one, or per seed [S]."""
        mask = mask.to(self.steps.dtype)
        self.steps.add_(mask)
        t = self.steps.clamp(min=1.0)
        # step size lr / (1 - beta1^t) and sqrt of the second bias correction, per seed, as [S, 1, 1]
        step_size = (mask * lr / (1.0 - self.beta1 ** t)).neg_().view(-1, 1, 1)
        bias2_sqrt = (1.0 - self.beta2 ** t).sqrt_().view(-1, 1, 1)
        w1 = (mask * (1.0 - self.beta1)).view(-1, 1, 1)
        w2 = (mask * (1.0 - self.beta2)).view(-1, 1, 1)
        for p, g, m, v in zip(self.params, grads, self.exp_avg, self.exp_avg_sq):
            if self.weight_decay:
                g = g.add(p, alpha=self.weight_decay)
            m.lerp_(g, w1)
            v.lerp_(g * g, w2)
            denom = (v.sqrt() / bias2_sqrt).add_(self.eps)
            p.addcdiv_(m * step_size, denom)


def clip_grad_norms_(grads: Sequence[torch.Tensor], max_norm: float) -> torch.Tensor:
    """nn.utils.clip_grad_norm_ per seed: each seed's gradients scaled to total norm <= max_norm; returns norms [S]."""
    norms = torch.stack([g.square().sum((1, 2)) for g in grads]).sum(0).sqrt_()
    coef = (max_norm / (norms + 1e-6)).clamp_(max=1.0).view(-1, 1, 1)
    for g in grads:
        g.mul_(coef)
    return norms
