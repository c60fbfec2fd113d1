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
larger) -- hotcb compares one value with epsilon, so noise alone accepts mutations. Cooldowns (per
actuator, after a rejection), the global reject streak and non-finite metrics block proposals.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from automl.core.tune_recipe import Mutation, Recipe, with_settings

MODES = ("off", "observe", "suggest", "active", "replay")
UNTOUCHED, UNVERIFIED, VERIFIED, DISABLED = "untouched", "unverified", "verified", "disabled"


@dataclass(frozen=True)
class Judgement:
    accept: bool
    delta: float
    gain: float
    instability: float
    band: float
    reason: str


def _mean(v: list[float]) -> float:
    return sum(v) / len(v)


def _std(v: list[float]) -> float:
    if len(v) < 2:
        return 0.0
    m = _mean(v)
    return math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))


def noise_sd(pre: list[float], se: list[float | None]) -> float:
    """One evaluation's noise: the spread of the evaluations before the mutation, or the root mean
    square of the evaluations' own standard errors when that is larger."""
    known = [s for s in se if s is not None and math.isfinite(s)]
    rms = math.sqrt(_mean([s * s for s in known])) if known else 0.0
    return max(_std(pre), rms)


def judge(pre: list[float], post: list[float], recipe: Recipe, se: list[float | None] = ()) -> Judgement:
    """Keep or roll back a mutation, from the primary metric before (``pre``) and after (``post``) it."""
    if not post or any(not math.isfinite(v) for v in post):
        return Judgement(False, -math.inf, -math.inf, 0.0, 0.0, "non-finite metric after the mutation")
    sign = 1.0 if recipe.mode == "max" else -1.0
    gain = sign * (_mean(post) - _mean(pre))
    instability = max(0.0, _std(post) - _std(pre)) if len(post) > 1 and len(pre) > 1 else 0.0
    delta = gain - instability
    band = recipe.noise_z * noise_sd(pre, list(se)) * math.sqrt(1.0 / len(pre) + 1.0 / len(post))
    if delta <= recipe.epsilon:
        return Judgement(False, delta, gain, instability, band, f"delta {delta:.4g} <= epsilon {recipe.epsilon:g}")
    if delta <= band:
        return Judgement(False, delta, gain, instability, band, f"delta {delta:.4g} within the noise band {band:.4g}")
    return Judgement(True, delta, gain, instability, band, "accepted")


class Proposer:
    """Mutation values per actuator: Optuna TPE (``startup_trials`` random first, the prior centre
    enqueued first) or seeded random search."""

    def __init__(self, recipe: Recipe, seed: int = 0, study_path: str | None = None):
        self.recipe, self.rng, self.studies = recipe, random.Random(seed), {}
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


class OnlineTuner:
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
        self.segment: Segment | None = None
        self.reject_streak = 0
        self.blocked: str | None = None
        self.log: list[dict] = []

    def eligible(self, frac: float) -> list[Mutation]:
        """Actuators that may be mutated now: enabled, out of cooldown, allowed in this phase."""
        phase = self.recipe.phase_at(frac)
        return [m for m in self.recipe.mutations if self.state[m.name] != DISABLED and self.cooldown[m.name] == 0
                and (not m.phases or phase in m.phases)]

    def on_eval(self, step: int, frac: float, value: float, current: dict, *, se: float | None = None,
                nonfinite: bool = False, anomaly: bool = False) -> list[dict]:
        """One safe point: judge the open segment, then maybe propose. ``current``: the actuators' values now."""
        if self.mode in ("off", "replay") and self.segment is None:
            return []  # (an open segment is still judged after a switch to off)
        out: list[dict] = []
        for name in self.cooldown:  # one safe point of every cooldown has passed
            self.cooldown[name] = max(0, self.cooldown[name] - 1)
        bad = nonfinite or not math.isfinite(value)
        if (bad and self.recipe.block_on_nan) or (anomaly and self.recipe.block_on_anomaly):
            self.blocked = "non-finite metric or loss" if bad else "anomaly"
        if self.segment is not None:
            seg = self.segment
            seg.post.append(value)
            if bad or len(seg.post) >= self.recipe.horizon:
                out += self._decide(step, seg)
                if any(a["action"] == "rollback" for a in out):
                    return out  # training goes back to the mutation's step: the next safe point proposes
        elif not bad:
            self.values.append(value)
            self.se.append(se)
        if self.mode in ("suggest", "active") and self.segment is None and self.blocked is None:
            if self.reject_streak >= self.recipe.max_global_reject_streak:
                self.blocked = f"{self.reject_streak} rejections in a row"
            elif len(self.values) >= 2:
                out += self._propose(step, frac, current)
        return out

    def control(self, mode: str | None, settings: dict) -> None:
        """A switch from ``automl tune`` (another process): the mode and recipe settings, from now on."""
        if mode is not None and mode in MODES:
            self.mode = mode
        if settings:
            self.recipe = with_settings(self.recipe, settings)

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
                "epsilon": self.recipe.epsilon}

    def _decide(self, step: int, seg: Segment) -> list[dict]:
        j = judge(seg.pre, seg.post, self.recipe, seg.se)
        m = next(m for m in self.recipe.mutations if m.name == seg.name)
        self.proposer.tell(m, seg.ticket, j.delta)
        self.segment = None
        record = {"event": "segment", "seq": len(self.log), "name": seg.name, "from_step": seg.step, "step": step, "old": seg.old,
                  "new": seg.new, "pre": seg.pre, "post": seg.post, "delta": j.delta, "gain": j.gain,
                  "instability": j.instability, "band": j.band, "decision": "accept" if j.accept else "reject",
                  "reason": j.reason, "mode": self.mode}
        self.log.append(record)
        if self.mode == "suggest":
            return []
        if j.accept:
            self.state[seg.name], self.reject_streak = VERIFIED, 0
            self.values += seg.post
            return [{"action": "accept", "name": seg.name, "value": seg.new, "step": step}]
        self.reject_streak += 1
        self.cooldown[seg.name] = m.cooldown + 1  # blocked at the next ``cooldown`` safe points
        if self.state[seg.name] == UNVERIFIED:
            self.state[seg.name] = UNTOUCHED
        if not self.recipe.rollback_on_reject:
            self.values += seg.post
            return [{"action": "keep", "name": seg.name, "value": seg.new, "step": step}]
        return [{"action": "rollback", "name": seg.name, "value": seg.old, "step": step}]

    def _propose(self, step: int, frac: float, current: dict) -> list[dict]:
        # (a gym env's terms appear with its first info; a factor cannot move a value of 0)
        choices = [m for m in self.eligible(frac) if m.name in current and (m.mode == "abs" or current[m.name] != 0)]
        if not choices:
            return []
        m = self.rng.choice(choices)
        ticket, x = self.proposer.ask(m)
        old = float(current[m.name])
        new = old * x if m.mode == "mult" else x
        h = self.recipe.horizon
        self.segment = Segment(m.name, step, old, new, self.values[-max(h, 2):], self.se[-max(h, 2):], ticket)
        applied = self.mode == "active"
        if applied and self.state[m.name] == UNTOUCHED:
            self.state[m.name] = UNVERIFIED
        self.log.append({"event": "mutation", "seq": len(self.log), "name": m.name, "step": step, "old": old, "new": new, "factor": x,
                         "applied": applied, "mode": self.mode})
        return [{"action": "apply" if applied else "suggest", "name": m.name, "value": new, "old": old, "step": step}]


def replay_plan(log: list[dict]) -> list[tuple[int, list[dict]]]:
    """(step, actions) in the order they happened, reproducing a mutations log: every applied mutation at
    its step, its rollback or acceptance at the step it was judged. A step can come twice (training
    re-runs it after a rollback), so the hook consumes the list in order."""
    plan: list[tuple[int, list[dict]]] = []
    for e in sorted(log, key=lambda e: e.get("seq", 0)):
        if e["event"] == "mutation" and e.get("applied"):
            action = {"action": "apply", "name": e["name"], "value": e["new"], "old": e["old"]}
        elif e["event"] == "segment" and e.get("mode") == "active":
            accept = e["decision"] == "accept"
            action = {"action": "accept" if accept else "rollback", "name": e["name"],
                      "value": e["new"] if accept else e["old"]}
        else:
            continue
        if plan and plan[-1][0] == int(e["step"]) and plan[-1][1][-1]["action"] != "rollback":
            plan[-1][1].append(action)
        else:
            plan.append((int(e["step"]), [action]))
    return plan


def evolve_recipe(base: Recipe, summaries: list[dict], alpha: float = 0.3) -> Recipe:
    """Carry learned priors across runs: each actuator's prior centre moves ``alpha`` of the way toward the
    mean factor its accepted mutations used (within its bounds); actuators never accepted keep theirs."""
    import dataclasses

    out = []
    for m in base.mutations:
        factors = [f for s in summaries for f in ((s.get("families") or {}).get(m.name) or {}).get("accepted_factors", [])
                   if isinstance(f, (int, float)) and math.isfinite(f)]
        if not factors or m.mode != "mult":
            out.append(m)
            continue
        centre = m.prior_center if m.prior_center is not None else math.sqrt(m.bounds[0] * m.bounds[1])
        target = math.exp(_mean([math.log(f) for f in factors]))
        new = math.exp((1 - alpha) * math.log(centre) + alpha * math.log(target))
        out.append(dataclasses.replace(m, prior_center=min(max(new, m.bounds[0]), m.bounds[1])))
    return dataclasses.replace(base, mutations=tuple(out))
