"""Online tuning's decisions inside one training run (issue 16, seed 004's hottune), pure and seeded.

``OnlineTuner.on_eval`` is called at every safe point (after an evaluation) with the primary metric and
its standard error; it returns what the trainer must do: ``apply`` a mutation (after taking a full
snapshot of the training state), ``accept`` it (drop the snapshot) or ``rollback`` (restore the
snapshot: policy, optimizer, normaliser, step count, not only the knob). A mutation is judged after
``horizon`` evaluations:

    delta = gain - instability,  gain = mean(post) - mean(pre) (sign flipped for ``min``),
    instability = max(0, std(post) - std(pre))  (a mutation that makes the metric erratic pays for it)

and kept only when delta > epsilon **and** delta > z x the noise of the difference of the two means,
from the evaluations before the mutation (their spread, or their per-episode standard errors when
larger) -- hotcb compares one value with epsilon, so noise alone accepts mutations. When the primary
metric did not move at all (a success rate stuck at 0 early in training), the segment is judged on the
recipe's first backup metric that did (the reference return: dense, and no reward-weight mutation can
game it). Cooldowns (per actuator, after a rejection), the global reject streak and non-finite metrics
block proposals; an anomaly (an update's approx_kl far above the run's own median) rejects the mutation
in flight and skips that safe point.
"""
from __future__ import annotations

import math
import statistics
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from automl.core.tune_recipe import Mutation, Recipe, with_settings
from automl.search.online_branches import UNTOUCHED, UNVERIFIED, VERIFIED, BranchRounds
from automl.search.online_judge import Judgement, _mean, judge_segment

if TYPE_CHECKING:
    import optuna

MODES = ("off", "observe", "suggest", "active", "replay")
DISABLED = "disabled"


class Proposer:
    """Mutation values per actuator: Optuna TPE (``startup_trials`` random first, the prior centre
    enqueued first) or seeded random search."""

    def __init__(self, recipe: Recipe, seed: int = 0, study_path: str | None = None):
        self.recipe, self.rng = recipe, random.Random(seed)
        self.studies: dict[str, optuna.Study] = {}
        self.seed, self.study_path = seed, study_path  # study_path: tune.study.sqlite (None: in memory)

    def _study(self, m: Mutation):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # one study per actuator, inside a training job
        if m.name not in self.studies:
            sampler = optuna.samplers.TPESampler(seed=self.seed, n_startup_trials=self.recipe.startup_trials)
            storage = f"sqlite:///{self.study_path}" if self.study_path else None
            study = optuna.create_study(direction="maximize", sampler=sampler, storage=storage, study_name=m.name,
                                        load_if_exists=storage is not None)
            # the prior centre is the first proposal, unless it changes nothing (a factor of 1)
            if m.prior_center is not None and not study.trials and not (m.mode == "mult" and m.prior_center == 1.0):
                study.enqueue_trial({"x": m.prior_center})
            self.studies[m.name] = study
        return self.studies[m.name]

    def ask(self, m: Mutation) -> tuple[object, float]:
        low, high = m.bounds
        if self.recipe.algorithm == "random":
            x = math.exp(self.rng.uniform(math.log(low), math.log(high))) if m.log else self.rng.uniform(low, high)
            return None, x
        trial = self._study(m).ask()
        return trial, trial.suggest_float("x", low, high, log=m.log)

    def tell(self, m: Mutation, ticket, delta: float) -> None:
        if ticket is not None:
            self._study(m).tell(ticket, delta if math.isfinite(delta) else -1e9)


@dataclass
class Segment:
    """An applied (or, in suggest mode, proposed) mutation waiting for its judgement."""

    name: str
    step: int
    old: float
    new: float
    pre: list[float]
    se: list
    ticket: object = None
    post: list[float] = field(default_factory=list)
    pre_b: list[dict] = field(default_factory=list)   # backup metrics per evaluation: {name: (value, se)}
    post_b: list[dict] = field(default_factory=list)
    post_se: list = field(default_factory=list)
    stage: str = "treatment"   # paired control: "control" once the same steps are trained without it
    treated: tuple = ()        # paired control: the treatment branch's (post, post_b, post_se)


class OnlineTuner(BranchRounds):
    """The kernel's state machine; ``on_eval`` returns actions as dicts ``{"action": apply|accept|rollback|
    suggest, "name", "value", ...}`` and keeps ``log`` (mutation and segment records)."""

    def __init__(self, recipe: Recipe, mode: str = "active", seed: int = 0, study_path: str | None = None):
        if mode not in MODES:
            raise ValueError(f"tune mode: {mode!r} (allowed: {', '.join(MODES)})")
        self.recipe, self.mode, self.rng = recipe, mode, random.Random(seed)
        self.proposer = Proposer(recipe, seed, study_path)
        self.state = {m.name: UNTOUCHED if m.enabled else DISABLED for m in recipe.mutations}
        self.cooldown = {m.name: 0 for m in recipe.mutations}
        self.values: list[float] = []     # the metric along the kept trajectory
        self.se: list = []
        self.backup_values: list[dict] = []  # the backup metrics along it
        self.kl_hist: list[float] = []    # approx_kl at safe points without a mutation in flight (anomaly baseline)
        self.base_kl_hist: list[float] = []  # ... as at the learning rate set (``slow``; NaN: unknown)
        self.segment: Segment | None = None
        self.reject_streak = 0
        self.blocked: str | None = None
        self.log: list[dict] = []
        self.branching: dict | None = None  # control "branches": the candidates the caller is training
        self.horizon_now = recipe.horizon   # ... their horizon (doubles while the run is stuck)
        self.branch_frac = 0.0              # ... the share of the run's steps branch rounds covered so far
        self.fracs: list[float] = []        # the run's fraction at each safe point (the evaluation spacing)

    def eligible(self, frac: float) -> list[Mutation]:
        """Actuators that may be mutated now: enabled, out of cooldown, allowed in this phase."""
        phase = self.recipe.phase_at(frac)
        return [m for m in self.recipe.mutations if self.state[m.name] != DISABLED and self.cooldown[m.name] == 0
                and (not m.phases or phase in m.phases)]

    def anomaly(self, approx_kl: float | None) -> str | None:
        """An update far off the run's own history: approx_kl above ``anomaly_factor`` x its median over
        the safe points without a mutation in flight (at least 3 of them) and above ``anomaly_min_kl``."""
        if approx_kl is None or len(self.kl_hist) < 3:
            return None
        med, r = statistics.median(self.kl_hist), self.recipe
        if not math.isfinite(approx_kl) or approx_kl > max(r.anomaly_factor * med, r.anomaly_min_kl):
            return (f"approx_kl {approx_kl:.3g} > {r.anomaly_factor:g} x the run's median {med:.3g} "
                    f"and > {r.anomaly_min_kl:g}")
        return None

    def on_eval(self, step: int, frac: float, value: float, current: dict, *, se: float | None = None,
                backup: dict | None = None, approx_kl: float | None = None, base_kl: float | None = None,
                nonfinite: bool = False, anomaly: bool = False) -> list[dict]:
        """One safe point: judge the open segment, then maybe propose. ``current``: the actuators' values now;
        ``backup``: the backup metrics now, ``{name: (value, se)}``; ``approx_kl``: the largest of the
        updates since the last safe point; ``base_kl``: the same as at the learning rate set, not the one a
        schedule decayed it to (``automl.train.tuning.base_kl``; None: approx_kl, no schedule); ``anomaly``: a
        flag raised by the caller.

        A non-finite metric or loss blocks every later mutation (``block_on_nan``). An anomaly rejects the
        mutation in flight and skips proposing at this safe point (``block_on_anomaly``)."""
        self.fracs.append(frac)
        if self.mode in ("off", "replay") and self.segment is None:
            return []  # (an open segment is still judged after a switch to off)
        out: list[dict] = []
        for name in self.cooldown:  # one safe point of every cooldown has passed
            self.cooldown[name] = max(0, self.cooldown[name] - 1)
        bad = nonfinite or not math.isfinite(value)
        if bad and self.recipe.block_on_nan:
            self.blocked = "non-finite metric or loss"
        flag = ("anomaly flagged by the caller" if anomaly else None) or self.anomaly(approx_kl)
        flag = flag if self.recipe.block_on_anomaly else None
        if flag:
            self.log.append({"event": "anomaly", "seq": len(self.log), "step": step, "reason": flag,
                             "during": self.segment.name if self.segment else None})
        if self.segment is not None:
            seg = self.segment
            seg.post.append(value)
            seg.post_b.append(dict(backup or {}))
            seg.post_se.append(se)
            if bad or flag or len(seg.post) >= self.recipe.horizon:
                if self._paired(seg) and not (bad or flag):  # now the same steps from the snapshot without it
                    seg.treated, seg.post, seg.post_b, seg.post_se = (seg.post, seg.post_b, seg.post_se), [], [], []
                    seg.stage = "control"
                    self.log.append({"event": "control", "seq": len(self.log), "name": seg.name, "step": step,
                                     "from_step": seg.step, "mode": self.mode})
                    return [{"action": "control", "name": seg.name, "value": seg.old, "step": step}]
                out += self._decide(step, seg, flag)
                if any(a["action"] == "rollback" for a in out):
                    return out  # training goes back to the mutation's step: the next safe point proposes
        elif not bad:
            self.values.append(value)
            self.se.append(se)
            self.backup_values.append(dict(backup or {}))
            if approx_kl is not None and math.isfinite(approx_kl) and not flag:
                self.kl_hist.append(float(approx_kl))
                self.base_kl_hist.append(float(approx_kl if base_kl is None else base_kl))
        if self.mode in ("suggest", "active") and self.segment is None and self.blocked is None and not flag:
            if self.reject_streak >= self.recipe.max_global_reject_streak:
                self.blocked = f"{self.reject_streak} rejections in a row"
            elif len(self.values) >= 2 and self.branching is None:
                if self.recipe.control == "branches" and self.mode == "active":
                    due = self.branch_due()
                    out += self._propose_branches(step, frac, current, due) if due else []
                else:
                    out += self._propose(step, frac, current)
        return out

    def control(self, mode: str | None, settings: dict, *, enable: bool = False) -> None:
        """A switch from ``automl tune`` (another process): the mode and recipe settings, from now on;
        ``enable`` (`automl tune enable`): the reject streak starts again, so a run the streak paused
        tunes again (other blocks, a non-finite metric, stay)."""
        if mode is not None and mode in MODES:
            self.mode = mode
        if settings:
            self.recipe = with_settings(self.recipe, settings)
        if enable:
            self.reject_streak = 0
            if self.blocked is not None and self.blocked.endswith("rejections in a row"):
                self.blocked = None

    def summary(self) -> dict:
        """Counts, accept rate and per-actuator win rates (tune.summary.json; ``evolve_recipe`` reads them)."""
        judged = [e for e in self.log if e["event"] == "segment"]
        fam: dict[str, dict] = {}
        for e in judged:
            f = fam.setdefault(e["name"], {"judged": 0, "accepted": 0, "accepted_factors": [], "deltas": []})
            f["judged"] += 1
            f["deltas"].append(e["delta"])
            if e["decision"] == "accept":
                f["accepted"] += 1
                f["accepted_factors"].append(e["new"] / e["old"] if e["old"] else None)
        for f in fam.values():
            f["win_rate"] = f["accepted"] / f["judged"]
            finite = [d for d in f.pop("deltas") if math.isfinite(d)]
            f["mean_delta"] = _mean(finite) if finite else None
        accepted = sum(f["accepted"] for f in fam.values())
        return {"mode": self.mode, "proposed": sum(e["event"] == "mutation" for e in self.log),
                "applied": sum(e["event"] == "mutation" and e["applied"] for e in self.log), "judged": len(judged),
                "accepted": accepted, "accept_rate": accepted / len(judged) if judged else None, "families": fam,
                "states": dict(self.state), "blocked": self.blocked, "reject_streak": self.reject_streak,
                "epsilon": self.recipe.epsilon, "anomalies": sum(e["event"] == "anomaly" for e in self.log),
                "judged_on": {m: sum(e.get("metric") == m for e in judged) for m in {e.get("metric") for e in judged}}}

    def _paired(self, seg: Segment) -> bool:
        return self.recipe.control == "paired" and self.mode == "active" and seg.stage == "treatment"

    def _decide(self, step: int, seg: Segment, anomaly: str | None = None) -> list[dict]:
        if seg.stage == "control":
            return self._decide_paired(step, seg, anomaly)
        j = judge_segment(seg.pre, seg.post, self.recipe, seg.se, seg.pre_b, seg.post_b, actuator=seg.name)
        if anomaly:
            j = Judgement(False, j.delta, j.gain, j.instability, j.band, f"anomaly: {anomaly}", j.noise, j.metric)
        m = next(m for m in self.recipe.mutations if m.name == seg.name)
        self.proposer.tell(m, seg.ticket, j.z)
        self.segment = None
        record = {"event": "segment", "seq": len(self.log), "name": seg.name, "from_step": seg.step, "step": step, "old": seg.old,
                  "new": seg.new, "pre": seg.pre, "post": seg.post, "delta": j.delta, "gain": j.gain,
                  "instability": j.instability, "band": j.band, "metric": j.metric,
                  "decision": "accept" if j.accept else "reject",
                  "reason": j.reason, "mode": self.mode}
        self.log.append(record)
        if self.mode == "suggest":
            return []
        if j.accept:
            self.state[seg.name], self.reject_streak = VERIFIED, 0
            self.values += seg.post
            self.se += seg.post_se
            self.backup_values += seg.post_b
            return [{"action": "accept", "name": seg.name, "value": seg.new, "step": step}]
        self.reject_streak += 1
        self.cooldown[seg.name] = m.cooldown + 1  # blocked at the next ``cooldown`` safe points
        if self.state[seg.name] == UNVERIFIED:
            self.state[seg.name] = UNTOUCHED
        if not self.recipe.rollback_on_reject:
            self.values += seg.post
            self.se += seg.post_se
            self.backup_values += seg.post_b
            return [{"action": "keep", "name": seg.name, "value": seg.new, "step": step}]
        return [{"action": "rollback", "name": seg.name, "value": seg.old, "step": step}]

    def _decide_paired(self, step: int, seg: Segment, anomaly: str | None) -> list[dict]:
        """The treatment branch (``seg.treated``) against the control branch (``seg.post``), both trained
        from the same snapshot for the same steps: ``adopt`` puts the treatment's end state back,
        ``keep_control`` goes on from the control's."""
        post, post_b, post_se = seg.treated
        if any(not math.isfinite(v) for v in seg.post) and all(math.isfinite(v) for v in post):
            j = Judgement(True, math.inf, math.inf, 0.0, 0.0, "the control branch diverged", metric=self.recipe.metric)
        else:
            j = judge_segment(seg.post, post, self.recipe, seg.post_se + post_se, seg.post_b, post_b, spread=False,
                              actuator=seg.name)
        if anomaly:  # in the control branch: the config itself is unstable, not the mutation
            j = Judgement(j.accept, j.delta, j.gain, j.instability, j.band, f"{j.reason} (anomaly in the control "
                          f"branch: {anomaly})", j.noise, j.metric)
        m = next(m for m in self.recipe.mutations if m.name == seg.name)
        self.proposer.tell(m, seg.ticket, j.z)
        self.segment = None
        self.log.append({"event": "segment", "seq": len(self.log), "name": seg.name, "from_step": seg.step,
                         "step": step, "old": seg.old, "new": seg.new, "pre": seg.post, "post": post,
                         "before": seg.pre, "control": "paired", "delta": j.delta, "gain": j.gain,
                         "instability": j.instability, "band": j.band, "metric": j.metric,
                         "decision": "accept" if j.accept else "reject", "reason": j.reason, "mode": self.mode})
        if j.accept:
            self.state[seg.name], self.reject_streak = VERIFIED, 0
            self.values, self.se, self.backup_values = self.values + post, self.se + post_se, self.backup_values + post_b
            return [{"action": "adopt", "name": seg.name, "value": seg.new, "step": step}]
        self.reject_streak += 1
        self.cooldown[seg.name] = m.cooldown + 1
        if self.state[seg.name] == UNVERIFIED:
            self.state[seg.name] = UNTOUCHED
        self.values += seg.post
        self.se += seg.post_se
        self.backup_values += seg.post_b
        return [{"action": "keep_control", "name": seg.name, "value": seg.old, "step": step}]

    def _propose(self, step: int, frac: float, current: dict) -> list[dict]:
        choices, weights = self._pool(frac, current)
        if not choices:
            return []
        m = self.rng.choices(choices, weights=weights)[0]
        ticket, x = self.proposer.ask(m)
        old = float(current[m.name])
        new = old * x if m.mode == "mult" else x
        k = max(self.recipe.horizon, 2)
        self.segment = Segment(m.name, step, old, new, self.values[-k:], self.se[-k:], ticket,
                               pre_b=self.backup_values[-k:])
        applied = self.mode == "active"
        if applied and self.state[m.name] == UNTOUCHED:
            self.state[m.name] = UNVERIFIED
        self.log.append({"event": "mutation", "seq": len(self.log), "name": m.name, "step": step, "old": old, "new": new, "factor": x,
                         "applied": applied, "mode": self.mode})
        return [{"action": "apply" if applied else "suggest", "name": m.name, "value": new, "old": old, "step": step}]
