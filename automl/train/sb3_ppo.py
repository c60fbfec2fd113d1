"""A thin SB3 PPO subclass for many parallel envs: batched time-limit bootstrap and a NaN guard.

Stock SB3 (``OnPolicyAlgorithm.collect_rollouts``) calls the value net once per env that hits
a time limit. With thousands of envs reset together they all truncate on the same step, so
one step costs thousands of tiny forward passes. ``BatchedPPO.collect_rollouts`` is SB3's
loop copied with only that part changed: all terminal observations of a step go through the
value net in ONE call. Everything else (buffer, callbacks, info buffer) is SB3's own, so the
rollout data is identical to stock PPO (tested in tests/test_training.py).
"""
from __future__ import annotations

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.utils import obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv


class NonFiniteError(FloatingPointError):
    """Raised when PPO's loss or parameters become NaN/inf: the run cannot recover."""


def _stack_obs(observations: list) -> np.ndarray | dict[str, np.ndarray]:
    """Stack per-env observations (arrays or dicts of arrays) into one batch."""
    if isinstance(observations[0], dict):
        return {key: np.stack([obs[key] for obs in observations]) for key in observations[0]}
    return np.stack(observations)


class BatchedPPO(PPO):
    """SB3 PPO with one value-net call per step for all truncated envs, and a non-finite guard."""

    def _bootstrap_truncated(self, rewards: np.ndarray, dones: np.ndarray, infos: list[dict]) -> None:
        """Add gamma * V(terminal_obs) to the reward of every env truncated by a time limit.

        Same rule as SB3 (GitHub issue #633), but batched: one forward pass per step.
        """
        idx = [
            i
            for i in np.flatnonzero(dones)
            if infos[i].get("terminal_observation") is not None and infos[i].get("TimeLimit.truncated", False)
        ]
        if not idx:
            return
        terminal_obs = self.policy.obs_to_tensor(_stack_obs([infos[i]["terminal_observation"] for i in idx]))[0]
        with th.no_grad():
            terminal_values = self.policy.predict_values(terminal_obs)
        rewards[idx] += self.gamma * terminal_values[:, 0].cpu().numpy().astype(rewards.dtype, copy=False)

    def _update_info_buffer(self, infos: list[dict], dones: np.ndarray | None = None) -> None:
        """SB3's episode-info bookkeeping, visiting only finished envs.

        The VecEnv contract puts ``episode``/``is_success`` only in the info of a finished
        episode, so skipping the other envs is equivalent and avoids a Python loop over all envs.
        """
        if dones is None:
            super()._update_info_buffer(infos, dones)
            return
        finished = np.flatnonzero(dones)
        super()._update_info_buffer([infos[i] for i in finished], np.ones(len(finished), dtype=bool))

    def collect_rollouts(
        self,
        env: VecEnv,
        callback: BaseCallback,
        rollout_buffer: RolloutBuffer,
        n_rollout_steps: int,
    ) -> bool:
        """SB3's rollout collection without torch.distributions argument validation.

        Validation is ~20% of collection time with a few hundred envs. Non-finite values are
        still caught: sampling a Categorical with NaN probabilities raises, and ``train()``
        (validated) rejects NaN Gaussian parameters at the next update.
        """
        validate = th.distributions.Distribution._validate_args
        th.distributions.Distribution.set_default_validate_args(False)
        try:
            return self._collect(env, callback, rollout_buffer, n_rollout_steps)
        finally:
            th.distributions.Distribution.set_default_validate_args(validate)

    def _collect(self, env: VecEnv, callback: BaseCallback, rollout_buffer: RolloutBuffer, n_rollout_steps: int) -> bool:
        """SB3's ``collect_rollouts`` (2.x), with the per-env bootstrap loop replaced by one batch."""
        assert self._last_obs is not None, "No previous observation was provided"
        self.policy.set_training_mode(False)

        n_steps = 0
        rollout_buffer.reset()
        if self.use_sde:
            self.policy.reset_noise(env.num_envs)

        callback.on_rollout_start()

        while n_steps < n_rollout_steps:
            if self.use_sde and self.sde_sample_freq > 0 and n_steps % self.sde_sample_freq == 0:
                self.policy.reset_noise(env.num_envs)

            with th.no_grad():
                # On CPU both conversions are zero-copy views: one copy each way happens in the env.
                obs_tensor = obs_as_tensor(self._last_obs, self.device)  # type: ignore[arg-type]
                actions, values, log_probs = self.policy(obs_tensor)
            actions = actions.cpu().numpy()

            clipped_actions = actions
            if isinstance(self.action_space, spaces.Box):
                if self.policy.squash_output:
                    clipped_actions = self.policy.unscale_action(clipped_actions)
                else:
                    clipped_actions = np.clip(actions, self.action_space.low, self.action_space.high)

            new_obs, rewards, dones, infos = env.step(clipped_actions)

            self.num_timesteps += env.num_envs

            callback.update_locals(locals())
            if not callback.on_step():
                return False

            self._update_info_buffer(infos, dones)
            n_steps += 1

            if isinstance(self.action_space, spaces.Discrete):
                actions = actions.reshape(-1, 1)

            self._bootstrap_truncated(rewards, dones, infos)

            rollout_buffer.add(
                self._last_obs,  # type: ignore[arg-type]
                actions,
                rewards,
                self._last_episode_starts,  # type: ignore[arg-type]
                values,
                log_probs,
            )
            self._last_obs = new_obs  # type: ignore[assignment]
            self._last_episode_starts = dones

        with th.no_grad():
            values = self.policy.predict_values(obs_as_tensor(new_obs, self.device))  # type: ignore[arg-type]

        rollout_buffer.compute_returns_and_advantage(last_values=values, dones=dones)

        callback.update_locals(locals())
        callback.on_rollout_end()

        return True

    def train(self) -> None:
        """PPO's update, then fail fast if it produced a non-finite loss or parameter.

        Without this a diverged run keeps going on NaN weights (or dies later inside a
        distribution constructor), wasting its whole budget. A discrete policy whose logits
        grew so large that the entropy of every sample is exactly 0.0 is the same failure in
        disguise (e.g. CartPole at learning_rate 10): softmax treats the logits as +-inf, the
        policy gradient is exactly zero and the policy can never change again.
        """
        super().train()
        values = self.logger.name_to_value
        # this update's statistics (the online tuner's anomaly check reads approx_kl at the next safe point)
        self.last_update = {k.split("/", 1)[1]: float(v) for k, v in values.items() if k.startswith("train/")}
        loss = values.get("train/loss")
        if loss is not None and not np.isfinite(loss):
            raise NonFiniteError(f"non-finite PPO loss (nan/inf): {loss}")
        if isinstance(self.action_space, spaces.Discrete | spaces.MultiDiscrete) and values.get("train/entropy_loss") == 0.0:
            raise NonFiniteError("policy logits overflowed (inf-like saturation): entropy exactly 0, gradients vanish")
        for name, param in self.policy.named_parameters():
            if not th.isfinite(param).all():
                raise NonFiniteError(f"non-finite policy parameter (nan/inf): {name}")
