"""Online tuning inside the seed-job loop: the hook that carries out ``automl.search.online``'s actions.

``TuneHook.safe_point`` runs at every rollout boundary of ``automl.train.loop.train`` (after the
evaluation, the stop check and the checkpoint), on any trainer. At every new evaluation (a safe point:
right after an update) it asks the tuner and carries out what it says: ``apply`` takes a **full
in-memory snapshot** of the training state first (the trainer's whole state: policy, optimizer
moments, normalisation statistics, step count and schedule position, the env's state on the batched
tasks, RNG states; the loop's evaluations; the actuators' values) and then sets the value;
``rollback`` puts that whole state back (hotcb restores only the knob); ``accept`` drops the snapshot.
With a paired control (the recipe's ``acceptance.control: paired``), ``control`` keeps the treatment's
end state and puts the snapshot back to train the same steps without the mutation; ``adopt`` then
restores the treatment's end state and ``keep_control`` goes on from the control's. Actuators:
``learning_rate``, ``ent_coef``, ``clip_range``, ``vf_coef``, PPO's Adam (``weight_decay``, ``adam_beta1``,
``adam_beta2``, ``adam_eps``) and ``reward.<term>`` (the trainer's ``set_values``; a rollback restores them
with the rest of the state),
and user actuators (seed 004's protocol: ``snapshot(env)``, ``validate(patch, env)``, ``apply(patch,
env)``, ``restore(snapshot, env)`` with env = {"model", "env", "step"}; "model" is the trainer's
algorithm object). A user actuator whose ``apply`` or ``restore`` raises is logged (event
``actuator_failed``), disabled for the rest of the run, and training goes on. The tuner's log goes to
``tune.mutations.jsonl`` / ``tune.segments.jsonl`` when ``log_dir`` is given. Mutations are judged on the
recipe's primary metric (an evaluation's field); the backup ``grad/norm`` is the root mean square of the
updates' gradient norms (before clipping) since the previous evaluation. ``tune["production"]``: the control
file is never read (a frozen recipe replays, nothing switches it).
"""
from __future__ import annotations

import json
import math
import os
import statistics
import time
from typing import Any, Mapping, Sequence

from automl.core.tune_schema import BUILTIN, EVAL_METRICS
from automl.train.evaluation import success_se

TUNED = BUILTIN   # the built-in actuators (and reward.<term>)
MIN_LR_SCALE = 0.1  # below this (the last tenth of a linear schedule) an update's KL says nothing of the set rate


def base_kl(kl: float | None, scale: float) -> float:
    """An update's approx_kl as at the learning rate set (the actuator's value), not the one a linear schedule
    decayed it to: KL grows with the square of the step, so kl / scale**2 (NaN: unknown, or the schedule has
    decayed the rate below ``MIN_LR_SCALE`` of it). What the tuner's ``slow`` check reads."""
    if kl is None or not math.isfinite(kl) or scale < MIN_LR_SCALE:
        return math.nan
    return kl / (scale * scale)


def metric(e: Any, name: str) -> tuple[float | None, float | None]:
    """(value, standard error) of an evaluation metric (``automl.core.tune_schema.EVAL_METRICS``)."""
    if name == "success_rate":
        rate = e.success_rate
        return rate, (success_se(rate, e.episodes) if rate is not None and e.episodes else None)
    return getattr(e, name), getattr(e, f"{name}_se", None)


def values_and_weights(name: str, value: float) -> tuple[dict, dict | None]:
    """A built-in actuator's value as the trainer's ``set_values`` arguments: (values, reward weights)."""
    if name.startswith("reward."):
        return {}, {name.split(".", 1)[1]: value}
    return {name: value}, None


class GradNorm:
    """The gradient norm of every backward pass through ``params`` before clipping (tensor hooks fire when the
    gradient is computed, under SB3's ``backward`` and the torch trainer's ``autograd.grad`` alike);
    ``take()`` is their root mean square since the last take (None: no update)."""

    def __init__(self, params: Any):
        self.params = list(params)
        self.sq: Any = 0.0
        self.passes = 0
        for i, p in enumerate(self.params):
            p.register_hook(self._hook(i == 0))

    def _hook(self, first: bool):
        def hook(grad):
            self.sq = self.sq + grad.detach().float().square().sum()
            if first:
                self.passes += 1
        return hook

    def take(self) -> float | None:
        if not self.passes:
            return None
        out = (float(self.sq) / self.passes) ** 0.5
        self.sq, self.passes = 0.0, 0
        return out


class KLWindow:
    """A branch's movement as the tuner's safe points see the run's: before each new evaluation, the largest
    ``base_kl`` of the updates since the previous one (``per_eval``). Used as ``run_until``'s hook; its first
    call comes before any update of the branch and is skipped."""

    def __init__(self, job: Any):
        self.job, self.seen, self.calls = job, len(job.evals[0]), 0
        self.now: float | None = None
        self.per_eval: list[float] = []

    def safe_point(self) -> None:
        self.calls += 1
        trainer = self.job.trainer
        kl = base_kl(trainer.last_kl(), trainer.lr_scale()) if self.calls > 1 else math.nan
        if math.isfinite(kl):
            self.now = kl if self.now is None else max(self.now, kl)
        if len(self.job.evals[0]) != self.seen:
            self.seen = len(self.job.evals[0])
            self.per_eval.append(math.nan if self.now is None else self.now)
            self.now = None


class TuneHook:
    """Runs ``tune["tuner"]`` (an ``automl.search.online.OnlineTuner``) at each new evaluation of ``job``
    (an ``automl.train.loop.SeedJob`` of one seed)."""

    def __init__(self, tune: Mapping[str, Any], job: Any):
        if len(job.trainer.seeds) != 1:
            raise ValueError(f"online tuning: {len(job.trainer.seeds)} seeds in one job (allowed: 1, a tuner per seed)")
        self.job, self.tuner = job, tune["tuner"]
        self.log_dir, self.control = tune.get("log_dir"), tune.get("control")
        self.plan = list(tune.get("plan") or [])  # replay: [(step, actions)] (automl.search.online_log.replay_plan)
        self.custom = dict(tune.get("actuators") or {})
        self.custom_snaps: dict = {}
        self.busy_s = 0.0  # time inside the hook (observe's cost; with active: snapshots and restores too)
        self.snap: dict | None = None
        self.treated: tuple | None = None  # paired control: the treatment branch's end state while the control trains
        self.seen = len(job.evals[0])
        self.logged = 0
        self.control_seen: float | None = None
        self.actions: list[dict] = []
        self.failures: list[dict] = []
        self.kl_max: float | None = None  # the largest approx_kl of the updates since the last safe point
        self.base_max: float | None = None  # ... and of their ``base_kl``
        self.at: dict | None = None
        self.disabled: set[str] = set()  # user actuators that failed: never proposed again
        self.production = bool(tune.get("production"))  # no `automl tune` switch is ever read
        self.enabled_seen = 0  # the control file's `tune enable` count taken so far
        recipe = self.tuner.recipe
        self.grad = GradNorm(self.trainer.model.policy.parameters()) \
            if any(name == "grad/norm" for name, _ in recipe.backups()) else None

    def _disable(self) -> None:
        """Keep the failed actuators disabled in the tuner (its judgement of a segment in flight may reset them)."""
        states = getattr(self.tuner, "state", None)
        for name in self.disabled:
            if isinstance(states, dict) and name in states:
                states[name] = "disabled"  # automl.search.online.DISABLED

    @property
    def trainer(self) -> Any:
        return self.job.trainer

    def env(self) -> dict:
        """What a user actuator sees."""
        return {"model": self.trainer.model, "env": getattr(self.trainer, "raw_env", None), "step": self.trainer.steps}

    def safe_point(self) -> None:
        """Called at every rollout boundary: track the updates' KL, act at a new evaluation."""
        t0 = time.perf_counter()
        kl = self.trainer.last_kl()
        if kl is not None:
            self.kl_max = kl if self.kl_max is None or not kl <= self.kl_max else self.kl_max
            base = base_kl(kl, self.trainer.lr_scale())
            self.base_max = base if self.base_max is None or not base <= self.base_max else self.base_max
        try:
            if len(self.job.evals[0]) != self.seen:
                self.seen = len(self.job.evals[0])
                self._act()
        finally:
            self.busy_s += time.perf_counter() - t0

    # -- snapshots --------------------------------------------------------------------------------
    def restore(self, snap: dict, custom_snaps: dict) -> None:
        """Put a full snapshot back (and the user actuators' own); the next evaluation is a new safe point."""
        self.job.restore(snap)
        for name, saved in list(custom_snaps.items()):
            self._custom(name, "restore", saved)
        self.seen = len(self.job.evals[0])

    def _custom(self, name: str, method: str, *args: Any) -> tuple[bool, Any]:
        """(ok, answer) of a user actuator's ``snapshot``/``apply``/``restore``; one that raises is logged and
        disabled for the rest of the run (the tuner proposes it no more), and training goes on."""
        act = self.custom.get(name)
        if act is None:
            return False, None
        try:
            return True, getattr(act, method)(*args, self.at or self.env())
        except Exception as exc:  # noqa: BLE001 - a user's actuator must not end the training run
            record = {"event": "actuator_failed", "name": name, "call": method, "step": self.trainer.steps,
                      "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
            self.failures.append(record)
            del self.custom[name]
            self.custom_snaps.pop(name, None)
            if self.treated is not None:
                self.treated[1].pop(name, None)
            self.disabled.add(name)
            self._disable()
            self._log("tune.mutations.jsonl", [record])
            return False, None

    def _apply(self, name: str, value: float) -> None:
        if name in self.custom:
            ok, valid = self._custom(name, "validate", {"value": value})
            if ok and valid:
                self._custom(name, "apply", {"value": value})
        else:
            self.trainer.set_values(*values_and_weights(name, value))

    # -- one safe point ---------------------------------------------------------------------------
    def _read_control(self) -> None:
        """A mode switch or setting written by ``automl tune`` from another process (taken at this safe point);
        a new ``tune enable`` also starts the reject streak again."""
        control = self.control
        if self.production or control is None:
            return  # no control file: os.stat(None) would raise TypeError, caught below, the same return
        try:
            mtime = os.stat(control).st_mtime_ns
        except (OSError, TypeError):
            return
        if mtime == self.control_seen:
            return
        self.control_seen = mtime
        try:
            with open(control) as f:
                ctl = json.load(f)
        except (OSError, ValueError):
            return  # a half-written file is read at the next safe point
        enabled = int(ctl.get("enabled", 0) or 0)
        self.tuner.control(ctl.get("mode"), ctl.get("set") or {}, enable=enabled > self.enabled_seen)
        self.enabled_seen = max(self.enabled_seen, enabled)

    def _custom_snapshots(self) -> dict:
        """Every user actuator's own snapshot (one that fails is disabled)."""
        snaps = {}
        for name in list(self.custom):
            ok, snap = self._custom(name, "snapshot")
            if ok:
                snaps[name] = snap
        return snaps

    def _actions(self, step: int) -> list[dict]:
        """What the tuner says at this evaluation (replay: the plan's actions at this step)."""
        if self.tuner.mode == "replay":
            return [{**a, "step": step} for a in self.plan.pop(0)[1]] if self.plan and self.plan[0][0] == step else []
        self._disable()
        e = self.job.evals[0][-1]
        now = self.trainer.values()
        current = {**{k: v for k, v in now.items() if k in TUNED or k.startswith("reward.")},
                   **{name: float(snap["value"]) for name, snap in self._custom_snapshots().items()}}
        backup = {name: metric(e, name) for name in EVAL_METRICS}
        backup["grad/norm"] = (self.grad.take() if self.grad else None, None)
        value, se = metric(e, self.tuner.recipe.metric)
        acts = self.tuner.on_eval(step, min(1.0, step / self.job.plan.total), float("nan" if value is None else value),
                                  current, se=se, approx_kl=self.kl_max, base_kl=self.base_max,
                                  backup={k: v for k, v in backup.items() if v[0] is not None})
        self.kl_max = self.base_max = None
        return acts

    def _act(self) -> None:
        self.at = self.env()  # what user actuators see at this safe point (a rollback's restore: the step it left)
        self._read_control()
        step = self.trainer.steps
        acts = self._actions(step)
        for a in acts:
            if a["action"] == "apply":
                self.snap = self.job.snapshot()
                self.custom_snaps = self._custom_snapshots()
                self._apply(a["name"], a["value"])
            elif a["action"] == "rollback" and self.snap is not None:
                self.restore(self.snap, self.custom_snaps)
                self.snap = None
            elif a["action"] == "control" and self.snap is not None:
                # paired control: keep the treatment's end state, train the same steps again without it
                self.treated = (self.job.snapshot(), self._custom_snapshots())
                self.restore(self.snap, self.custom_snaps)
                self.snap = None
            elif a["action"] == "adopt" and self.treated is not None:
                self.restore(*self.treated)
                self.treated = None
            elif a["action"] in ("accept", "keep", "keep_control"):
                self.snap, self.treated = None, None
            elif a["action"] == "branch":
                self.actions.append(a)
                a = self._branch(a)
            self.actions.append(a)
        if self.tuner.mode == "replay" and acts:
            self._log("tune.mutations.jsonl", [{"event": "replayed", **a} for a in acts])
        self._write_log()

    # -- branches (the recipe's control "branches") -----------------------------------------------
    def _branch(self, a: dict) -> dict:
        """Train the candidates of ``a`` the same horizon from one snapshot (side by side in one batch when the
        trainer can, else one after another), then the control: the run itself going on unmutated (so a round
        that adopts nothing leaves the run as it would be without the tuner, bit for bit on the torch
        trainer). The tuner judges every candidate against the control; the run goes on from the one it
        adopts. Returns the tuner's decision."""
        from automl.core.stop import Stop, StopReason

        job, trainer = self.job, self.trainer
        until = min(job.plan.total, trainer.steps + a["horizon"] * max(1, job.plan.every or 0))
        snap, custom = job.snapshot(), self._custom_snapshots()
        names = [c["name"] for c in a["candidates"]]
        side_by_side = hasattr(trainer, "train_branches") and not any(n in self.custom for n in names) \
            and trainer.can_branch(names)
        if side_by_side:
            blocks = [values_and_weights(c["name"], c["value"]) for c in a["candidates"]]
            evals, states, ok, kls = trainer.train_branches(snap, blocks, until, job)
            news = [(e[0], k[0]) for e, k in zip(evals, kls)]
            ends: list[tuple[dict, dict]] = [(st, {}) for st in states]
        else:
            news, ends, ok = self._candidates_in_turn(snap, custom, a["candidates"], until)
            self.restore(snap, custom)  # the control goes on from the snapshot
        control: tuple[list, list] = ([], [])
        if ok:
            control = self._train_to(until)
            ok = job.stop is None
        results = [self._branch_result(*new) for new in [control, *news]]
        results += [{"post": [], "se": [], "post_b": []}] * (len(a["candidates"]) + 1 - len(results))
        decision = self.tuner.on_branches(trainer.steps, results, frac=min(1.0, until / job.plan.total))[0]
        i = decision["index"]
        if ok and 0 < i <= len(ends):
            self.restore(*ends[i - 1])  # the run goes on from the adopted branch's end state
        self.seen = len(job.evals[0])
        if not ok:
            job.stop_for(Stop(StopReason.DEADLINE))
        return decision

    def _candidates_in_turn(self, snap: dict, custom: dict, candidates: list[dict], until: int) -> tuple[list, list, bool]:
        """The candidates one after another on this trainer (SB3, user actuators, Adam's values): each from
        ``snap`` to ``until`` with its evaluation there; their (new evaluations, approx_kl per evaluation) and
        end states (False: a stop or the deadline ended one)."""
        job = self.job
        news: list[tuple[list, list]] = []
        ends: list[tuple[dict, dict]] = []
        for c in candidates:
            self.restore(snap, custom)
            self._apply(c["name"], c["value"])
            news.append(self._train_to(until))
            ends.append((job.snapshot(), self._custom_snapshots()))
            if job.stop is not None:
                return news, ends, False
        return news, ends, True

    def _train_to(self, until: int) -> tuple[list, list[float]]:
        """Train this run to ``until`` steps with its evaluation there (as every branch has); the evaluations
        it made, and before each the largest approx_kl of the updates (``KLWindow``)."""
        job = self.job
        seen = len(job.evals[0])
        window = KLWindow(job)
        job.run_until(until, hook=window)
        if job.stop is None:
            job.boundary()
            window.safe_point()
        return job.evals[0][seen:], window.per_eval

    def _branch_result(self, evals: list, kls: Sequence[float] = ()) -> dict:
        """A branch's evaluations as the tuner judges them: the primary metric's values and standard errors,
        the backups per evaluation, the episodes, and ``kl``: the median over its evaluations of the largest
        ``base_kl`` of the updates before each (how far its updates move the policy; None: not known)."""
        name = self.tuner.recipe.metric
        post, se = zip(*[metric(e, name) for e in evals]) if evals else ((), ())
        backups = [{k: m for k in EVAL_METRICS if (m := metric(e, k))[0] is not None} for e in evals]
        episodes = [{k: v for k in EVAL_METRICS if (v := e.episode_values(k)) is not None} for e in evals]
        moves = [k for k in kls if k is not None and math.isfinite(k)]
        return {"post": [float("nan") if v is None else float(v) for v in post], "se": list(se), "post_b": backups,
                "episodes": episodes, "kl": statistics.median(moves) if moves else None}

    # -- logs -------------------------------------------------------------------------------------
    def _log(self, name: str, records: list[dict]) -> None:
        if not self.log_dir or not records:
            return
        os.makedirs(self.log_dir, exist_ok=True)
        with open(os.path.join(self.log_dir, name), "a") as f:
            for record in records:
                f.write(json.dumps(record) + "\n")

    def _write_log(self) -> None:
        """Append the tuner's new records (mutations, judged segments) and rewrite the summary."""
        if not self.log_dir:
            return
        new = self.tuner.log[self.logged:]
        self._log("tune.mutations.jsonl", [r for r in new if r["event"] == "mutation"])
        self._log("tune.segments.jsonl", [r for r in new if r["event"] != "mutation"])
        self.logged = len(self.tuner.log)
        summary = {**self.tuner.summary(), "step": int(self.trainer.steps), "seed": self.trainer.seeds[0],
                   "hook_s": round(self.busy_s, 4), "actuator_failures": self.failures,
                   "replayed": sum(a["action"] == "apply" for a in self.actions) if self.tuner.mode == "replay" else None}
        tmp = os.path.join(self.log_dir, "tune.summary.json.tmp")
        with open(tmp, "w") as f:
            json.dump(summary, f, indent=1)
        os.replace(tmp, os.path.join(self.log_dir, "tune.summary.json"))
