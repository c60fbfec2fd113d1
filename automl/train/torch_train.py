"""The torch trainer: train one config on a batch of seeds (``train_seeds_torch``) through the seed-job loop.

``TorchTrainer`` is the loop's adapter (``automl.train.loop``) over a ``automl.train.torch_ppo.SeedBatch``:
a chunk is collect, advantages, update (learning rate by the schedule) and the per-seed finite check;
it evaluates every seed at once, snapshots and restores the batch (``automl.train.torch_state``), logs to
TensorBoard and writes SB3-loadable model files (``automl.train.torch_report``). The same arguments and
SeedResult as ``automl.train.sb3_train.train_seed``, online tuning (one seed per job) included.
"""
from __future__ import annotations

import math
import time
from typing import Any, Mapping, Sequence

import torch

from automl.core.config import PPOSetup
from automl.train import loop, torch_state
from automl.train.evaluation import EvalStats
from automl.train.result import SeedResult, hparams, to_setup
from automl.train.torch_ppo import MEMBER_PARAMS, Args, SeedBatch, advantages, check_finite, collect, update
from automl.train.torch_report import TBLogger, evaluate_stacked, save_sb3


class TorchModel:
    """What a user actuator sees as env["model"] on the torch trainer: PPO's coefficients by SB3's names
    (``model.vf_coef``, ``model.learning_rate``, ... of MEMBER_PARAMS; set on every seed), and the SeedBatch's
    own attributes (``model.policy``, ``model.steps``, ...) otherwise."""

    def __init__(self, trainer: "TorchTrainer"):
        object.__setattr__(self, "_trainer", trainer)

    def __getattr__(self, name: str) -> Any:
        if name in MEMBER_PARAMS:
            return self._trainer.values()[name]
        return getattr(self._trainer.batch, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in MEMBER_PARAMS:
            raise AttributeError(f"model.{name}: not settable (allowed: {', '.join(MEMBER_PARAMS)})")
        self._trainer.set_values({name: float(value)}, None)


class TorchTrainer:
    """The loop's adapter over one SeedBatch (S seeds of one config as one computation)."""

    state_has_values = True  # per-seed values and reward weights are part of the batch's state

    def __init__(self, args: Args, env: str, seeds: Sequence[int], *, eval_episodes: int, device: str,
                 reward_weights: Mapping | None, tb_dir: str | None = None, hparams: Mapping | None = None,
                 save_paths: Sequence[str | None] | None = None):
        self.batch = SeedBatch(args, env, seeds, eval_episodes=eval_episodes, device=torch.device(device),
                               reward_weights=reward_weights)
        self.eval_episodes, self.device = eval_episodes, device
        self.batch.reset()
        self.model, self.args, self.env = TorchModel(self), args, env
        self.seeds, self.rollout = list(self.batch.seeds), args.n_steps * args.num_envs
        self.log = TBLogger(tb_dir, self.seeds, hparams or {}) if tb_dir else None
        self.save_paths = list(save_paths or [])
        self.started = time.time()
        self._stats: dict | None = None
        self._lr_scale = 1.0

    @property
    def steps(self) -> int:
        return int(self.batch.steps)

    def begin(self, total: int, resumed: bool) -> None:
        """Nothing to set up: the batch is ready once built (or restored)."""

    def chunk(self, total: int, deadline: float | None) -> bool:
        """Collect, advantages, one update at the schedule's learning rate, the per-seed finite check."""
        run, args = self.batch, self.args
        if not collect(run, deadline):
            return False
        advantages(run)
        remaining = max(1.0 - run.steps / total, 0.0)
        base_lr = args.learning_rate if run.hp is None else run.hp["learning_rate"]
        self._lr_scale = remaining if args.schedule == "linear" else 1.0
        lr = base_lr * self._lr_scale
        stats = update(run, lr)
        check_finite(run, stats)
        if self.log:
            self.log.update(stats, lr, run.steps, time.time() - self.started)
        self._stats = stats
        return True

    def evaluate(self, deadline: float | None) -> list[EvalStats] | None:
        return evaluate_stacked(self.batch, self.seeds, deadline=deadline)

    def log_evals(self, stats: Sequence[EvalStats]) -> None:
        if self.log:
            self.log.evals(stats, self.batch.steps)

    def failed(self) -> dict[int, tuple[int, str]]:
        return self.batch.failed

    def state(self, loop_part: Mapping[str, Any]) -> dict:
        return torch_state.run_state(self.batch, next_eval=loop_part["next_eval"], eval_s=loop_part["eval_s"],
                                     spent={k: loop_part[k] for k in ("train_s", "wall_s") if k in loop_part},
                                     evals=loop_part["evals"])

    def load(self, state: Mapping, total: int) -> dict:
        return torch_state.restore(self.batch, state, total=total)

    def set_values(self, values: Mapping[str, float], weights: Mapping[str, float] | None) -> None:
        """The same values and weights on every seed of the batch (a schedule, the tuner)."""
        for s in range(len(self.seeds)):
            self.batch.set_values(s, values, weights)

    def values(self) -> dict[str, float]:
        run = self.batch
        out = {k: float(getattr(self.args, k)) if run.hp is None else float(run.hp[k][0]) for k in MEMBER_PARAMS}
        out.update({f"reward.{k}": float(v) for k, v in run.envs[0].reward_weights.items()})
        out.update(run.optimizer_values())  # Adam's weight decay, betas, eps (the online tuner's)
        return out

    def last_kl(self) -> float | None:
        return None if self._stats is None else float(self._stats["kl"][0])

    def lr_scale(self) -> float:
        return self._lr_scale

    def can_branch(self, names: Sequence[str]) -> bool:
        """Whether candidates setting the actuators ``names`` can train side by side in one batch: per-member
        values only (PPO's coefficients, reward weights), not Adam's, which are one for the whole batch."""
        return all(k in MEMBER_PARAMS or k.startswith("reward.") for k in names)

    def train_branches(self, snap: Mapping, blocks: Sequence[tuple[Mapping[str, float], Mapping[str, float] | None]],
                       until: int, job: Any) -> tuple[list[list[list[EvalStats]]], list[dict], bool, list[list[list[float]]]]:
        """Train len(blocks) branches of this batch from ``snap`` (``job.snapshot()``) to ``until`` steps side by
        side, as one batch of seeds x branches (``automl.train.torch_branches``), on their own trainer (this one
        is left as it was): block b gets ``blocks[b]``'s
        (values, reward weights) on top of the snapshot's, evaluates at the loop's evaluation steps, and ends
        as a state ``job.load`` continues from. Returns each block's new evaluations (per seed), its end state,
        False when the deadline hit first (the states are then where they stopped), and per block and seed the
        largest ``base_kl`` of the updates before each new evaluation (what the tuner's safe points see)."""
        from automl.train.torch_branches import block_state, tile_state
        from automl.train.tuning import base_kl

        k1, n = len(blocks), len(self.seeds)
        total, deadline, every = job.plan.total, job.plan.deadline, job.plan.every
        rng = torch.random.get_rng_state()  # building the branches must not move the run's own randomness
        branch = TorchTrainer(self.args, self.env, self.seeds * k1, eval_episodes=self.eval_episodes,
                              device=self.device, reward_weights=None)
        try:
            branch.load(tile_state(snap, k1), total)
            for b, (values, weights) in enumerate(blocks):
                for s in range(n):
                    branch.batch.set_values(b * n + s, values, weights)
            new: list[list[EvalStats]] = [[] for _ in range(k1 * n)]
            kls: list[list[float]] = [[] for _ in range(k1 * n)]
            kl_max = [-math.inf] * (k1 * n)
            next_eval, eval_s, ok = job.next_eval, job.eval_s, True
            while ok and branch.steps < until:
                ok = branch.chunk(total, deadline)
                if ok and branch._stats is not None:
                    kl_max = [max(a, base_kl(b, branch.lr_scale())) for a, b in zip(kl_max, branch._stats["kl"].tolist())]
                if ok and every and branch.steps >= next_eval:
                    for m in range(k1 * n):
                        kls[m].append(kl_max[m])
                    kl_max = [-math.inf] * (k1 * n)
                    began = time.time()
                    stats = branch.evaluate(deadline)
                    eval_s += time.time() - began
                    ok = stats is not None
                    for m, e in enumerate(stats or []):
                        new[m].append(e)
                    next_eval = (branch.steps // every + 1) * every
            evals = [list(job.evals[m % n]) + new[m] for m in range(k1 * n)]
            state = torch_state.run_state(branch.batch, next_eval=next_eval, eval_s=eval_s, spent=job.spent(),
                                          evals=evals)
        finally:
            branch.close()
            torch.random.set_rng_state(rng)
        return ([[new[b * n + s] for s in range(n)] for b in range(k1)], [block_state(state, b, n) for b in range(k1)],
                ok, [[kls[b * n + s] for s in range(n)] for b in range(k1)])

    def n_params(self) -> int:
        return sum(p.numel() for p in self.batch.policy.params.values()) // len(self.seeds)  # stacked: per seed

    def finish(self, ended: loop.Ended) -> None:
        """TensorBoard closed, every live seed's model saved."""
        self.close()
        for s, path in enumerate(self.save_paths):
            if path and s not in self.batch.failed:
                save_sb3(self.batch, s, path, self.env)

    def close(self) -> None:
        if self.log:
            self.log.close()
            self.log = None


def train_seeds_torch(params: Mapping | PPOSetup, *, env: str, seeds: Sequence[int], total_steps: int | None = None,
                      reward_weights: Mapping | None = None, eval_every: int | None = None, eval_episodes: int = 32,
                      deadline: float | None = None, device: str = "auto", tb_dir: str | None = None,
                      save_paths: Sequence[str | None] | None = None, channel: Any = None,
                      checkpoint_path: str | None = None, checkpoint_every: int | None = None,
                      schedule: Sequence[Mapping] | None = None, tune: Mapping | None = None,
                      until_steps: int | None = None) -> list[SeedResult]:
    """Train one config on every seed in ``seeds`` as one batched computation; one SeedResult per seed.

    Each seed is what ``train_seed`` would make of it (own env stream, init, optimizer, normalisation);
    a seed that diverges fails alone. The channel gets, per evaluation, the mean over the live seeds;
    a stop request or the deadline stops every seed. ``wall_s`` etc. are the batch's (seeds run together).
    ``checkpoint_path``/``checkpoint_every``: as ``train_seed`` (one file for the whole batch).
    ``schedule``: [{from_step, values, weights}] in step order, a population member's history replayed
    (``automl.train.torch_pbt``): from ``from_step`` on, every seed trains with those MEMBER_PARAMS values
    and reward weights (applied at the first rollout boundary at or after it). ``tune``: online tuning, as
    ``train_seed`` (one seed only: a tuner per seed). ``until_steps``: pause there, as ``train_seed``.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as train_seed: parallelism comes from worker processes (and here, the seed axis)
    try:
        return _train(params, env=env, seeds=list(seeds), total_steps=total_steps, reward_weights=reward_weights,
                      eval_every=eval_every, eval_episodes=eval_episodes, deadline=deadline, device=device,
                      tb_dir=tb_dir, save_paths=save_paths, channel=channel, checkpoint_path=checkpoint_path,
                      checkpoint_every=checkpoint_every, schedule=list(schedule or []), tune=tune,
                      until_steps=until_steps)
    finally:
        torch.set_num_threads(threads)


def train_seed_torch(params: Mapping | PPOSetup, *, env: str, seed: int, total_steps: int | None = None,
                     reward_weights: Mapping | None = None, eval_every: int | None = None, eval_episodes: int = 32,
                     deadline: float | None = None, device: str = "auto", tb_dir: str | None = None,
                     save_path: str | None = None, channel: Any = None, checkpoint_path: str | None = None,
                     checkpoint_every: int | None = None, schedule: Sequence[Mapping] | None = None,
                     tune: Mapping | None = None, until_steps: int | None = None) -> SeedResult:
    """``automl.train.sb3_train.train_seed`` with the torch trainer (batched tasks only); never raises for a
    diverging config. ``save_path`` writes an SB3 ``PPO`` zip (``PPO.load(save_path + '.zip')``)."""
    return train_seeds_torch(params, env=env, seeds=[seed], total_steps=total_steps, reward_weights=reward_weights,
                             eval_every=eval_every, eval_episodes=eval_episodes, deadline=deadline, device=device,
                             tb_dir=tb_dir, save_paths=[save_path], channel=channel, checkpoint_path=checkpoint_path,
                             checkpoint_every=checkpoint_every, schedule=schedule, tune=tune,
                             until_steps=until_steps)[0]


def _train(params, *, env, seeds, total_steps, reward_weights, eval_every, eval_episodes, deadline, device, tb_dir,
           save_paths, channel, checkpoint_path, checkpoint_every, schedule, tune, until_steps=None) -> list[SeedResult]:
    setup = to_setup(params)
    args = Args.from_setup(setup)
    total = int(total_steps if total_steps is not None else (setup.n_timesteps or 0))
    if total <= 0:
        raise ValueError("train_seeds_torch: total_steps: not given and the config has no n_timesteps (allowed: > 0)")
    import envs

    if env not in envs.TASKS:
        raise ValueError(f"train_seeds_torch: env {env!r} (allowed: {', '.join(envs.TASKS)}; gymnasium ids use train_seed)")
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"train_seeds_torch: seeds {seeds!r} (allowed: distinct integers, at least one)")
    device = str(envs.resolve_device(device))
    rollout = args.n_steps * args.num_envs
    every = max(int(eval_every or total // 10), rollout)
    header = torch_state.header(setup, env=env, seeds=seeds, total=total, reward_weights=reward_weights,
                                eval_every=eval_every, eval_episodes=eval_episodes, device=device)
    ckpt = loop.checkpointing(checkpoint_path, header, schedule=schedule, every=every,
                              checkpoint_every=checkpoint_every, rollout=rollout)

    def build() -> TorchTrainer:
        return TorchTrainer(args, env, seeds, eval_episodes=eval_episodes, device=device, reward_weights=reward_weights,
                            tb_dir=tb_dir, hparams=hparams(params, reward_weights), save_paths=save_paths)

    trainer, ended = loop.train(build, loop.Plan(total, every, deadline, until=until_steps), channel=channel, ckpt=ckpt,
                                schedule=schedule, tune=tune)
    extra = {"params": trainer.n_params()} if trainer is not None else {}
    return loop.results(trainer, ended, seeds, **extra)


def run_job_torch(channel: Any = None, **kwargs: Any) -> dict:
    """Executor job: ``train_seed_torch(**kwargs, channel=channel).to_dict()`` (picklable, top level)."""
    return train_seed_torch(channel=channel, **kwargs).to_dict()


def run_seeds_job_torch(channel: Any = None, **kwargs: Any) -> list[dict]:
    """Executor job for a batch of seeds: ``[r.to_dict() for r in train_seeds_torch(**kwargs, channel=channel)]``."""
    return [r.to_dict() for r in train_seeds_torch(channel=channel, **kwargs)]
