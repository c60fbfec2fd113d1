"""Online tuning's branch rounds (the recipe's ``acceptance.control: branches``, issue 28): at a safe point K
candidate mutations train beside the unmutated control for one horizon; each is judged against the control
(``automl.search.online_judge.judge_branches``), the best that beats it is adopted. A run that is stuck (no
metric moved beyond its noise) doubles its next horizon, up to ``max_horizon``; the rounds cover at most
``branch_share`` of the run's steps. With ``branch_when: stuck`` a round starts only while the run is stuck
or slow (``slow_kl``: its updates barely move the policy, the mark of a learning rate far too low). ``BranchRounds`` is part of ``automl.search.online.OnlineTuner``.
"""
from __future__ import annotations

import dataclasses
import math
import statistics
from typing import TYPE_CHECKING, Any, Callable

from automl.search.online_judge import Judgement, judge_branches, moved

if TYPE_CHECKING:
    from automl.core.tune_recipe import Recipe

UNTOUCHED, UNVERIFIED, VERIFIED = "untouched", "unverified", "verified"


class BranchRounds:
    """The branch rounds of an ``OnlineTuner`` (its state: recipe, values, log, cooldowns, proposer)."""

    recipe: Recipe
    rng: Any
    proposer: Any
    state: dict
    cooldown: dict
    values: list[float]
    se: list
    backup_values: list[dict]
    log: list[dict]
    reject_streak: int
    mode: str
    branching: dict | None
    horizon_now: int
    branch_frac: float
    fracs: list[float]
    kl_hist: list[float]
    base_kl_hist: list[float]

    eligible: Callable[[float], list]  # OnlineTuner's: the actuators that may be mutated now

    def _pool(self, frac: float, current: dict) -> tuple[list, list[float]]:
        """The actuators a proposal may mutate now, with their weights: those that won before are tried more
        often, (accepted + 1) / (judged + 2). (A gym env's terms appear with its first info; a factor cannot
        move a value of 0.)"""
        choices = [m for m in self.eligible(frac) if m.name in current and (m.mode == "abs" or current[m.name] != 0)]
        record = [e for e in self.log if e["event"] == "segment"]
        weights = [(sum(e["name"] == m.name and e["decision"] == "accept" for e in record) + 1)
                   / (sum(e["name"] == m.name for e in record) + 2) for m in choices]
        return choices, weights

    def _branch_affordable(self) -> bool:
        """Whether a round of ``horizon_now`` evaluations fits in what is left of ``branch_share`` (at the run's
        evaluation spacing so far)."""
        if len(self.fracs) < 2:
            return False
        spacing = max(0.0, self.fracs[-1] - self.fracs[-2])
        return self.branch_frac + self.horizon_now * spacing <= self.recipe.branch_share + 1e-9

    def branch_due(self) -> str | None:
        """Why a round may start now (None: it may not): the run is ``slow`` (whatever ``branch_when`` says: its
        round is the learning-rate line search), else ``always``, or with ``branch_when: stuck`` the run is
        ``stuck``."""
        if not self._branch_affordable():
            return None
        if self.slow():
            return "slow"
        if self.recipe.branch_when == "always":
            return "always"
        return "stuck" if self.stuck() else None

    def slow(self) -> bool:
        """The policy barely moves: the median approx_kl of the updates' last ``stuck_points`` safe points is
        below ``slow_kl`` (measured on navigation: ~1e-5 at a learning rate 10x too low, 1e-3 to 9e-3 at the
        prior's). The KL as at the learning rate set: a linear schedule's decay does not make a run slow, and
        in its last tenth nothing does (``automl.train.tuning.base_kl``)."""
        n, limit = self.recipe.stuck_points, self.recipe.slow_kl
        last = self.base_kl_hist[-n:]
        return limit > 0 and len(last) == n and all(math.isfinite(k) for k in last) and statistics.median(last) < limit

    def _propose_branches(self, step: int, frac: float, current: dict, due: str = "always") -> list[dict]:
        """K candidate mutations to train beside the unmutated control from this safe point (``branch``);
        the caller trains them ``horizon`` evaluations and hands the result to ``on_branches``."""
        choices, weights = self._pool(frac, current)
        lr = next((m for m in choices if m.name == "learning_rate"), None)
        line_search = due == "slow" and lr is not None
        if line_search:
            # the updates barely move the policy: only a larger step can help (nothing is clipped, so a clip range
            # does nothing; entropy and reward weights do not change how far an update goes)
            choices, weights = [lr], [1.0]
        if not choices:
            return []
        steps = self._slow_steps(lr, float(current["learning_rate"])) if line_search else []
        cands = []
        for i in range(self.recipe.branches):
            m = self.rng.choices(choices, weights=weights)[0]
            ticket, x = (None, steps[i]) if steps else self.proposer.ask(m)
            old = float(current[m.name])
            new = old * x if m.mode == "mult" else x
            cands.append({"name": m.name, "old": old, "value": new, "factor": x, "ticket": ticket})
            self.log.append({"event": "mutation", "seq": len(self.log), "name": m.name, "step": step, "old": old,
                             "new": new, "factor": x, "applied": True, "mode": self.mode, "branch": i + 1,
                             "horizon": self.horizon_now, "due": due})
        self.branching = {"step": step, "candidates": cands, "horizon": self.horizon_now, "frac": frac, "due": due}
        return [{"action": "branch", "step": step, "horizon": self.horizon_now,
                 "candidates": [{k: c[k] for k in ("name", "old", "value")} for c in cands]}]

    def _slow_steps(self, m: Any, old: float) -> list[float]:
        """A slow round's K learning-rate steps: log-spaced from the current value up to the actuator's upper
        bound, the largest at the bound (a line search upward: K = 4 within x0.3..x10 gives x1.78, x3.16,
        x5.62, x10). Values as the proposer's (a factor for ``mult``, the value for ``abs``)."""
        k, high = self.recipe.branches, m.bounds[1]
        if m.mode == "mult":
            return [high ** ((i + 1) / k) for i in range(k)] if high > 1 else []
        return [old * (high / old) ** ((i + 1) / k) for i in range(k)] if 0 < old < high else []

    def on_branches(self, step: int, results: list[dict], frac: float | None = None) -> list[dict]:
        """The branches' evaluations after their horizon (``results[0]`` the control, ``results[i]`` candidate
        i; each ``{"post": values, "se": ses, "post_b": backups}``): every candidate is judged against the
        control; the best accepted one is adopted (``adopt_branch``, its index), else ``keep_control``. A run
        that adopted nothing while stuck doubles its next horizon (up to ``max_horizon``)."""
        br, self.branching = self.branching, None
        if br is None or len(results) != len(br["candidates"]) + 1:
            raise ValueError(f"on_branches: {len(results)} results for "
                             f"{len(br['candidates']) if br else 0} candidates and the control")
        if frac is not None:  # ``frac``: the run's fraction where the branches ended
            self.branch_frac += max(0.0, frac - br["frac"])
        cands = br["candidates"]
        js = judge_branches(results[0], [(c["name"], results[i + 1]) for i, c in enumerate(cands)], self.recipe)
        accepted = [i for i, j in enumerate(js) if j.accept]
        if not accepted and br.get("due") == "slow":
            js = [self._moves(j, results[0].get("kl"), results[i + 1].get("kl")) for i, j in enumerate(js)]
            accepted = [i for i, j in enumerate(js) if j.accept]
        best = max(accepted, key=lambda i: js[i].delta) if accepted else None
        for i, (c, j) in enumerate(zip(cands, js)):
            m = next(m for m in self.recipe.mutations if m.name == c["name"])
            self.proposer.tell(m, c["ticket"], j.z)
            won = i == best
            reason = j.reason if won or not j.accept or best is None else f"{j.reason}, but branch {best + 1} gained more"
            self.log.append({"event": "segment", "seq": len(self.log), "name": c["name"], "from_step": br["step"],
                             "step": step, "old": c["old"], "new": c["value"], "pre": results[0]["post"],
                             "post": results[i + 1]["post"], "control": "branches", "branch": i + 1,
                             "horizon": br["horizon"], "delta": j.delta, "gain": j.gain, "instability": j.instability,
                             "band": j.band, "metric": j.metric, "kl": results[i + 1].get("kl"),
                             "control_kl": results[0].get("kl"), "decision": "accept" if won else "reject",
                             "reason": reason, "mode": self.mode})
            if not won:
                self.cooldown[c["name"]] = m.cooldown + 1
                if self.state[c["name"]] == UNVERIFIED:
                    self.state[c["name"]] = UNTOUCHED
        chosen = results[0 if best is None else best + 1]
        self.values, self.se = self.values + list(chosen["post"]), self.se + list(chosen["se"])
        self.backup_values += list(chosen["post_b"])
        if best is not None:
            c = cands[best]
            self.state[c["name"]], self.reject_streak, self.horizon_now = VERIFIED, 0, self.recipe.horizon
            return [{"action": "adopt_branch", "index": best + 1, "name": c["name"], "value": c["value"], "step": step}]
        self.reject_streak += 1
        if self.stuck():
            self.horizon_now = min(2 * self.horizon_now, self.recipe.max_horizon)
            self.log.append({"event": "horizon", "seq": len(self.log), "step": step, "horizon": self.horizon_now,
                             "reason": f"stuck: no metric moved over {self.recipe.stuck_points} safe points"})
        else:
            self.horizon_now = self.recipe.horizon
        return [{"action": "keep_control", "index": 0, "step": step}]

    def _moves(self, j: Judgement, control_kl: float | None, kl: float | None) -> Judgement:
        """A slow round's second look at a candidate no metric showed winning: over one horizon a larger step
        of a learning rate far too low changes the metric by less than its noise (measured on navigation), but
        its updates visibly move the policy. Adopted when the control stayed slow (median approx_kl below
        ``slow_kl``), the candidate did not (at or above it), and its metric is not measurably worse than the
        control's (delta above minus its band) and finite."""
        limit = self.recipe.slow_kl
        if control_kl is None or kl is None or not (control_kl < limit <= kl) or not math.isfinite(j.delta) \
                or j.delta <= -j.band:
            return j
        return dataclasses.replace(j, accept=True, reason=f"{j.reason}; slow: approx_kl {kl:.3g} >= slow_kl "
                                   f"{limit:g} (control {control_kl:.3g}) and delta {j.delta:.4g} > -band")

    def stuck(self) -> bool:
        """Neither the primary metric nor any backup moved beyond its own noise over the last
        ``stuck_points`` safe points of the kept trajectory."""
        n, z = self.recipe.stuck_points, self.recipe.noise_z
        if len(self.values) < n or moved(self.values[-n:], self.se[-n:], z):
            return False
        for name, _ in self.recipe.backups():
            pts = [b[name] for b in self.backup_values[-n:] if name in b]
            if len(pts) == n and moved([v for v, _ in pts], [e for _, e in pts], z):
                return False
        return True
