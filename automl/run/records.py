"""Every config of a run as the state file shows it, kept in step with the record study.

Creates configs (the record trial with the full vector: HPs and reward.<term> weights), records
seeds and how each config ended, and answers the run's questions about them: the incumbent by the
run's objective (``ranked``, the one ranking rule), counts per phase, the worst value. Rebuilding
them on resume is automl.run.resume; the state file is automl.run.state.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState

from automl.run import pareto
from automl.search import space as space_mod, studies
from automl.run.configrun import ConfigRun
from automl.core.record import ConfigRecord, Kind, State
from automl.core.names import DEFAULT_RISK
from automl.core.scoring import objective_value
from automl.search.reward import weight_distributions
from automl.core.values import is_finite_number

if TYPE_CHECKING:
    from automl.run.inputs import Inputs
    from automl.run.runconfig import RunConfig
    from automl.run.state import StateStore

TUNING_KINDS = Kind.TUNING


class Records:
    """Config records in trial order, the incumbent, alarms, and the record-study bookkeeping."""

    def __init__(self, cfg: RunConfig, inputs: Inputs, store: StateStore) -> None:
        self.cfg, self.inputs, self.store = cfg, inputs, store  # run settings, resolved inputs, state store
        self.study: optuna.Study | None = None  # the record study, opened when the run starts
        self.value_floor: float | None = None  # calibration's lowest true metric (the plan's), before any result
        self._beat = 0.0         # when the running trials' heartbeat was last recorded
        self.entries: dict[int, ConfigRecord] = {}  # record trial number -> its record
        self.alarms: list[dict] = []

    def opened(self) -> optuna.Study:
        """The record study, once the run has opened it (``automl.run.opening.start``)."""
        if self.study is None:
            raise RuntimeError("the record study is not open (automl.run.opening.start opens it)")
        return self.study

    # ---- creating --------------------------------------------------------------------------
    def _record(self, kind, cycle, params, weights, attrs):
        dists = {**space_mod.distributions(self.inputs.spec),
                 **weight_distributions(self.inputs.terms)}
        values = {**space_mod.encode_params(self.inputs.spec, params),
                  **{f"reward.{k}": v for k, v in weights.items() if f"reward.{k}" in dists}}
        dists = {k: d for k, d in dists.items() if k in values}
        trial = studies.record_trial(self.opened(), values, dists, {
            "kind": kind, "cycle": cycle, "all_weights": weights, **attrs})
        config_id = attrs.get("config_id") or f"config_{trial.number:03d}"
        trial.set_user_attr("config_id", config_id)
        return trial, config_id

    def new_config(self, kind, cycle, params, weights, sampler, seeds, steps,
                   config_id=None, extra=None) -> ConfigRun:
        """Record a new config in the record study and return it ready to train."""
        attrs = {"steps": steps, **(extra or {})}
        if sampler is not None:
            attrs["sampler"] = {"study": sampler[0].study_name, "trial_id": sampler[1]}
        if config_id:
            attrs["config_id"] = config_id
        trial, cid = self._record(kind, cycle, params, weights, attrs)
        self.entries[trial.number] = ConfigRecord(cid, kind, cycle, State.RUNNING, params, weights,
                                                  heldout_of=(extra or {}).get("heldout_of"))
        return ConfigRun(trial=trial, config_id=cid, kind=kind, cycle=cycle, params=params, weights=weights,
                         seeds=list(seeds), train_params=space_mod.merged(self.inputs.spec, params),
                         steps=steps, sampler=sampler)

    def rejected(self, kind, cycle, params, weights, reason) -> None:
        """Record a constraint-rejected config: told FAIL, never trained, not counted."""
        trial, cid = self._record(kind, cycle, params, weights, {"rejected": True, "state": State.REJECTED,
                                                                  "reason": reason})
        self.opened().tell(trial, state=TrialState.FAIL)
        self.entries[trial.number] = ConfigRecord(cid, kind, cycle, State.REJECTED, params, weights, reason=reason)

    # ---- updating --------------------------------------------------------------------------
    def seed_done(self, c: ConfigRun, seed: int, record: dict) -> None:
        """Store one finished seed in the study (user attrs) and the entry."""
        seeds = [c.results[s] for s in c.seeds if s in c.results]
        c.trial.set_user_attr("seeds", seeds)
        self.entries[c.trial.number].seeds = seeds

    def config_done(self, c: ConfigRun, state: str, score: dict | None) -> ConfigRecord:
        """Record how the config ended (its record, the record study); returns its record."""
        entry = self.entries[c.trial.number]
        entry.state = state
        c.trial.set_user_attr("state", state)
        if score:
            entry.score = score
            c.trial.set_user_attr("score", score)
        record_state = {State.COMPLETE: TrialState.COMPLETE, State.PRUNED: TrialState.PRUNED}.get(
            State(state), TrialState.FAIL)
        if record_state == TrialState.COMPLETE:
            self.opened().tell(c.trial, objective_value(score, self.cfg.objective_name, risk=self.cfg.risk))
        else:
            self.opened().tell(c.trial, state=record_state)
        return entry

    def heartbeat(self, trials: list) -> None:
        """Optuna's heartbeat for the running record trials (server storages), at most every half period."""
        if self.study is not None and time.time() - self._beat >= studies.HEARTBEAT_S / 2:
            self._beat = time.time()
            studies.record_heartbeats(self.study, [t._trial_id for t in trials])

    def add_alarm(self, alarm: dict) -> None:
        """Keep an alarm for the state file and write its event."""
        self.alarms.append(alarm)
        self.store.event("alarm", **alarm)

    def tuned(self) -> list[ConfigRecord]:
        """The complete tuning configs."""
        return [e for e in self.entries.values() if e.tuning and e.state == State.COMPLETE]

    # ---- queries ---------------------------------------------------------------------------
    def count(self, kind: str, cycle: int) -> int:
        """Finished (not rejected, not running) configs of one phase."""
        return sum(1 for e in self.entries.values() if e.kind == kind and e.cycle == cycle
                   and e.state not in (State.REJECTED, State.RUNNING))

    def grid_cursor(self) -> int:
        """How many HP grid points were proposed already (rejected ones never reach the grid)."""
        return sum(1 for e in self.entries.values() if e.kind == Kind.HP)

    def best_entry(self) -> ConfigRecord | None:
        """The incumbent: the complete tuning config ranked first by the run's objective."""
        best = ranked(self.entries.values(), self.cfg.objective_name, TUNING_KINDS, self.cfg.risk,
                      self.cfg.selection)
        return best[0] if best else None

    def best_params(self) -> dict:
        """The incumbent's HPs (the priors before anything finished)."""
        best = self.best_entry()
        return dict(best.params) if best else space_mod.prior_params(self.inputs.spec)

    def best_weights(self) -> dict:
        """The incumbent's reward weights (the defaults before anything finished)."""
        best = self.best_entry()
        return dict(best.reward_weights) if best and best.reward_weights else \
            dict(self.inputs.default_weights)

    def worst_value(self) -> float | None:
        """What a failed seed counts as: 0 for success rates, else the lowest result recorded; before
        any result, the lowest value calibration's short runs of the prior reached; None if unknown."""
        if self.inputs.true_metric == "success_rate":
            return 0.0
        vals = [r["episode_reward_mean"] for e in self.entries.values() for r in e.seeds
                if is_finite_number(r.get("episode_reward_mean"))]
        return min(vals) if vals else self.value_floor


def score_of(entry: ConfigRecord) -> dict:
    """A scored entry's score (``ranked`` returns only those); an unscored one is a bug, not a user error."""
    if entry.score is None:
        raise ValueError(f"config {entry.config_id}: no score to report")
    return entry.score


def ranked(entries, objective: str, kinds, risk: float = DEFAULT_RISK, selection=None) -> list[ConfigRecord]:
    """Complete configs of ``kinds`` with a finite score, best first by ``objective`` (the one ranking rule;
    ``risk``: K of mean-std); ties keep trial order. With a ``selection`` (--metrics, --constraint):
    feasible configs only, and with several objectives the Pareto front first, ordered by --pick."""
    done = [e for e in entries if e.kind in kinds and e.state == State.COMPLETE and e.score
            and is_finite_number(objective_value(e.score, objective, risk=risk))]
    # a fidelity ladder's configs: the higher rung first (values only compare at one length), then the value
    done = sorted(done, key=lambda e: (e.rung or 0, objective_value(e.score, objective, risk=risk)), reverse=True)
    return pareto.order(done, selection) if selection is not None else done
