"""Online tuning attached to an SB3 training run: the hook that carries out ``automl.search.online``'s actions.

``TuneCallback`` runs beside the trial's ``TrialCallback`` (after it, in one ``CallbackList``). At every new
evaluation (a safe point: a rollout boundary, right after an update) it asks the tuner and carries out what
it says: ``apply`` takes a **full in-memory snapshot** of the training state first (policy, optimizer
moments, VecNormalize statistics, step count and schedule position, the env's state on the batched
tasks, RNG states, the evaluations so far) and then sets the value; ``rollback`` puts that whole state
back (hotcb restores only the knob); ``accept`` drops the snapshot. With a paired control (the recipe's
``acceptance.control: paired``), ``control`` keeps the treatment's end state and puts the snapshot back
to train the same steps without the mutation; ``adopt`` then restores the treatment's end state and
``keep_control`` goes on from the control's. Actuators: ``learning_rate``,
``ent_coef``, ``clip_range`` and ``reward.<term>`` (``automl.train.sb3_pbt.set_values``). The tuner's log
goes to ``tune.mutations.jsonl`` / ``tune.segments.jsonl`` when ``log_dir`` is given.
"""
from __future__ import annotations

import copy
import json
import os
import time
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

from automl.train import sb3_state
from automl.train.evaluation import success_se
from automl.train.sb3_pbt import set_values


def current_values(model: Any, raw_env: Any) -> dict[str, float]:
    """The actuators' values now."""
    out = {"learning_rate": float(model.policy.optimizer.param_groups[0]["lr"]), "ent_coef": float(model.ent_coef),
           "clip_range": float(model.clip_range(model._current_progress_remaining))}
    batched = sb3_state.batched_env(raw_env)
    weights = batched.reward_weights if batched is not None else \
        next((e.reward_weights for e in getattr(raw_env, "envs", []) if hasattr(e, "reward_weights")), {})
    out.update({f"reward.{k}": float(v) for k, v in weights.items()})
    return out


_VALUES = ("gamma", "gae_lambda", "ent_coef", "vf_coef", "max_grad_norm")


def snapshot(model: Any, raw_env: Any, train_env: Any, trial_cb: Any) -> dict:
    """Everything the next steps depend on, copied (not references to live tensors), with the values
    the actuators change (a checkpoint leaves them to the config; a rollback must put them back)."""
    state = copy.deepcopy(sb3_state.checkpoint_state(model, raw_env, train_env, trial_cb, {}))
    now = current_values(model, raw_env)
    state["values"] = {"learning_rate": now["learning_rate"], "clip_range": now["clip_range"],
                       **{k: float(getattr(model, k)) for k in _VALUES}}
    state["weights"] = {k.split(".", 1)[1]: v for k, v in now.items() if k.startswith("reward.")}
    return state


def restore(model: Any, raw_env: Any, train_env: Any, trial_cb: Any, snap: dict, *, seed: int, total: int) -> None:
    """Put the snapshot back mid-learn (gymnasium envs restart their episodes; batched envs continue)."""
    sb3_state.restore(model, raw_env, train_env, trial_cb, copy.deepcopy(snap), seed=seed, total=total)
    set_values(model, raw_env, train_env, snap["values"], snap["weights"] or None)
    if model._last_obs is None:  # gymnasium ids: restore reseeded the env; learn() is already running
        model._last_obs = train_env.reset()
        model._last_episode_starts = [True] * train_env.num_envs


def _apply(model: Any, raw_env: Any, train_env: Any, name: str, value: float) -> None:
    if name.startswith("reward."):
        set_values(model, raw_env, train_env, {}, {name.split(".", 1)[1]: value})
    else:
        set_values(model, raw_env, train_env, {name: value}, None)


class TuneCallback(BaseCallback):
    """Runs ``tuner`` (an ``automl.search.online.OnlineTuner``) at each new evaluation of ``trial_cb``."""

    def __init__(self, tuner: Any, trial_cb: Any, raw_env: Any, train_env: Any, *, seed: int, total: int,
                 log_dir: str | None = None, control: str | None = None, plan: list | None = None,
                 actuators: dict | None = None):
        super().__init__(verbose=0)
        # user actuators (seed 004's protocol): snapshot(env) -> {"value": v, ...}, validate(patch, env) -> bool,
        # apply(patch, env), restore(snapshot, env); env = {"model", "env", "step"}; patch = {"value": v}
        self.custom = dict(actuators or {})
        self.custom_snaps: dict = {}
        self.busy_s = 0.0  # time inside the hook (observe's cost; with active: snapshots and restores too)
        self.tuner, self.trial_cb, self.raw_env, self.train_env = tuner, trial_cb, raw_env, train_env
        self.seed, self.total, self.log_dir, self.control = seed, total, log_dir, control
        self.plan = list(plan or [])  # replay: [(step, actions)] in order (automl.search.online_log.replay_plan)
        self.snap: dict | None = None
        self.treated: tuple | None = None  # paired control: the treatment branch's end state while the control trains
        self.seen = 0
        self.logged = 0
        self.control_seen: float | None = None
        self.actions: list[dict] = []
        self.kl_max: float | None = None  # the largest approx_kl of the updates since the last safe point

    def _read_control(self) -> None:
        """A mode switch or setting written by ``automl tune`` from another process (taken at this safe point)."""
        try:
            mtime = os.stat(self.control).st_mtime_ns
        except (OSError, TypeError):
            return
        if mtime == self.control_seen:
            return
        self.control_seen = mtime
        try:
            with open(self.control) as f:
                ctl = json.load(f)
        except (OSError, ValueError):
            return  # a half-written file is read at the next safe point
        self.tuner.control(ctl.get("mode"), ctl.get("set") or {})

    def _on_rollout_start(self) -> None:
        t0 = time.perf_counter()
        kl = (getattr(self.model, "last_update", None) or {}).get("approx_kl")
        if kl is not None:
            self.kl_max = kl if self.kl_max is None or not kl <= self.kl_max else self.kl_max
        try:
            self._safe_point()
        finally:
            self.busy_s += time.perf_counter() - t0

    def _safe_point(self) -> None:
        evals = self.trial_cb.evals
        if len(evals) == self.seen or self.trial_cb.state is not None:
            return
        self.seen = len(evals)
        self._read_control()
        e = evals[-1]
        step = int(self.model.num_timesteps)
        env = {"model": self.model, "env": self.raw_env, "step": step}
        if self.tuner.mode == "replay":
            acts = [{**a, "step": step} for a in self.plan.pop(0)[1]] if self.plan and self.plan[0][0] == step else []
        else:
            current = {**current_values(self.model, self.raw_env),
                       **{name: float(a.snapshot(env)["value"]) for name, a in self.custom.items()}}
            backup = {"reference_return": (e.reference_return, e.reference_return_se),
                      "success_rate": (e.success_rate, success_se(e.success_rate, e.episodes)
                                       if e.success_rate is not None and e.episodes else None)}
            acts = self.tuner.on_eval(step, min(1.0, step / self.total), float(e.true_metric), current,
                                      se=e.true_metric_se, approx_kl=self.kl_max,
                                      backup={k: v for k, v in backup.items() if v[0] is not None})
            self.kl_max = None
        for a in acts:
            if a["action"] == "apply":
                self.snap = snapshot(self.model, self.raw_env, self.train_env, self.trial_cb)
                self.custom_snaps = {n: act.snapshot(env) for n, act in self.custom.items()}
                if a["name"] in self.custom:
                    act = self.custom[a["name"]]
                    if act.validate({"value": a["value"]}, env):
                        act.apply({"value": a["value"]}, env)
                else:
                    _apply(self.model, self.raw_env, self.train_env, a["name"], a["value"])
            elif a["action"] == "rollback" and self.snap is not None:
                self._restore(self.snap, self.custom_snaps, env)
                self.snap = None
            elif a["action"] == "control" and self.snap is not None:
                # paired control: keep the treatment's end state, train the same steps again without it
                self.treated = (snapshot(self.model, self.raw_env, self.train_env, self.trial_cb),
                                {n: act.snapshot(env) for n, act in self.custom.items()})
                self._restore(self.snap, self.custom_snaps, env)
                self.snap = None
            elif a["action"] == "adopt" and self.treated is not None:
                self._restore(*self.treated, env)
                self.treated = None
            elif a["action"] in ("accept", "keep", "keep_control"):
                self.snap, self.treated = None, None
            self.actions.append(a)
        if self.tuner.mode == "replay" and acts and self.log_dir:
            os.makedirs(self.log_dir, exist_ok=True)
            with open(os.path.join(self.log_dir, "tune.mutations.jsonl"), "a") as f:
                for a in acts:
                    f.write(json.dumps({"event": "replayed", **a}) + "\n")
        self._write_log()

    def _restore(self, snap: dict, custom_snaps: dict, env: dict) -> None:
        """Put a full snapshot back (and the user actuators' own); the next evaluation is a new safe point."""
        restore(self.model, self.raw_env, self.train_env, self.trial_cb, snap, seed=self.seed, total=self.total)
        for name, saved in custom_snaps.items():
            self.custom[name].restore(saved, env)
        self.seen = len(self.trial_cb.evals)

    def _on_step(self) -> bool:
        return True

    def _write_log(self) -> None:
        """Append the tuner's new records (mutations, judged segments) and rewrite the summary."""
        if not self.log_dir:
            return
        os.makedirs(self.log_dir, exist_ok=True)
        for record in self.tuner.log[self.logged:]:
            name = "tune.mutations.jsonl" if record["event"] == "mutation" else "tune.segments.jsonl"
            with open(os.path.join(self.log_dir, name), "a") as f:
                f.write(json.dumps(record) + "\n")
        self.logged = len(self.tuner.log)
        summary = {**self.tuner.summary(), "step": int(self.model.num_timesteps), "seed": self.seed,
                   "hook_s": round(self.busy_s, 4),
                   "replayed": sum(a["action"] == "apply" for a in self.actions) if self.tuner.mode == "replay" else None}
        tmp = os.path.join(self.log_dir, "tune.summary.json.tmp")
        with open(tmp, "w") as f:
            json.dump(summary, f, indent=1)
        os.replace(tmp, os.path.join(self.log_dir, "tune.summary.json"))
