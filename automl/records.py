"""Every config of a run as the state file shows it, kept in step with the record study.

The record study is the source of truth: on resume the records are rebuilt from its trials,
and trials left RUNNING by a killed run become ConfigRuns again (only their missing seeds re-run).
"""
from __future__ import annotations

import math
import time
from datetime import datetime, timezone

from optuna.trial import TrialState

from automl import space as space_mod, studies
from automl.scheduler import ConfigRun
from automl.scoring import objective_value
from automl.search.reward import weight_distributions
from automl.setup import stage_list

TUNING_KINDS = ("hp", "reward")


class Records:
    """Config records in trial order, the incumbent, alarms, and the record-study bookkeeping."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.entries: dict[int, dict] = {}      # record trial number -> state-file entry
        self.alarms: list[dict] = []

    # ---- reading back ----------------------------------------------------------------------
    def load_from_study(self) -> list[ConfigRun]:
        """Rebuild entries from the record study; return in-flight configs to resume."""
        ctx = self.ctx
        resume = []
        for t in ctx.record.get_trials(deepcopy=False):
            a = t.user_attrs
            if t.state == TrialState.RUNNING and "config_id" not in a:
                # killed while being recorded (config_id is set last): never trained, not a config
                ctx.record.tell(t.number, state=TrialState.FAIL)
                continue
            entry = self._entry_from_trial(t)
            self.entries[t.number] = entry
            if t.state == TrialState.RUNNING and not a.get("rejected"):
                resume.append(self._config_from_trial(t, entry))
        self.alarms = list((ctx.old or {}).get("alarms") or [])
        return resume

    def _entry_from_trial(self, t) -> dict:
        a = t.user_attrs
        params = {k: v for k, v in t.params.items() if not k.startswith("reward.")}
        weights = {k.split(".", 1)[1]: v for k, v in t.params.items() if k.startswith("reward.")}
        state = a.get("state") or ("running" if t.state == TrialState.RUNNING else t.state.name.lower())
        entry = {"config_id": a.get("config_id", f"config_{t.number:03d}"), "kind": a.get("kind", "hp"),
                 "cycle": a.get("cycle", 0), "state": state,
                 "params": space_mod.decode_params(self.ctx.inputs.spec, params),
                 "reward_weights": {**a.get("all_weights", {}), **weights},
                 "seeds": list(a.get("seeds", []))}
        if a.get("score"):
            entry["score"] = a["score"]
        if a.get("reason"):
            entry["reason"] = a["reason"]
        return entry

    def _config_from_trial(self, t, entry) -> ConfigRun:
        ctx = self.ctx
        a = t.user_attrs
        sampler = None
        if a.get("sampler"):
            study = {studies.HP_SAMPLER: ctx.hp_study, studies.REWARD_SAMPLER: ctx.reward_study}.get(
                a["sampler"]["study"])
            sampler = (study, a["sampler"]["trial_id"]) if study is not None else None
        kind = entry["kind"]
        seeds = a.get("planned_seeds") or (ctx.inputs.heldout_seeds if kind == "heldout" else ctx.inputs.tuning_seeds)
        done = {r["seed"]: r for r in entry["seeds"] if r.get("state") in ("complete", "failed")}
        entry["seeds"] = list(done.values())
        c = ConfigRun(trial=studies.attach(ctx.record, t._trial_id), config_id=entry["config_id"],
                      kind=kind, cycle=entry["cycle"], params=entry["params"],
                      weights=entry["reward_weights"], seeds=list(seeds),
                      train_params=space_mod.merged(ctx.inputs.spec, entry["params"]),
                      steps=int(a.get("steps", ctx.plan.trial_steps)), sampler=sampler, results=done)
        c.reported = set(t.intermediate_values)
        return c

    # ---- creating --------------------------------------------------------------------------
    def _record(self, kind, cycle, params, weights, attrs):
        ctx = self.ctx
        dists = {**space_mod.distributions(ctx.inputs.spec),
                 **weight_distributions(ctx.inputs.terms)}
        values = {**space_mod.encode_params(ctx.inputs.spec, params),
                  **{f"reward.{k}": v for k, v in weights.items() if f"reward.{k}" in dists}}
        dists = {k: d for k, d in dists.items() if k in values}
        trial = studies.record_trial(ctx.record, values, dists, {
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
        self.entries[trial.number] = {"config_id": cid, "kind": kind, "cycle": cycle, "state": "running",
                                      "params": params, "reward_weights": weights, "seeds": [],
                                      **({"heldout_of": extra["heldout_of"]} if extra and "heldout_of" in extra else {})}
        return ConfigRun(trial=trial, config_id=cid, kind=kind, cycle=cycle, params=params, weights=weights,
                         seeds=list(seeds), train_params=space_mod.merged(self.ctx.inputs.spec, params),
                         steps=steps, sampler=sampler)

    def rejected(self, kind, cycle, params, weights, reason) -> None:
        """Record a constraint-rejected config: told FAIL, never trained, not counted."""
        trial, cid = self._record(kind, cycle, params, weights, {"rejected": True, "state": "rejected",
                                                                  "reason": reason})
        self.ctx.record.tell(trial, state=TrialState.FAIL)
        self.entries[trial.number] = {"config_id": cid, "kind": kind, "cycle": cycle, "state": "rejected",
                                      "params": params, "reward_weights": weights, "seeds": [],
                                      "reason": reason}

    # ---- updating --------------------------------------------------------------------------
    def seed_done(self, c: ConfigRun, seed: int, record: dict) -> None:
        """Store one finished seed in the study (user attrs) and the entry."""
        seeds = [c.results[s] for s in c.seeds if s in c.results]
        c.trial.set_user_attr("seeds", seeds)
        self.entries[c.trial.number]["seeds"] = seeds

    def config_done(self, c: ConfigRun, state: str, score: dict | None) -> dict:
        """Record how the config ended (entry, record study); returns its entry."""
        entry = self.entries[c.trial.number]
        entry["state"] = state
        c.trial.set_user_attr("state", state)
        if score:
            entry["score"] = score
            c.trial.set_user_attr("score", score)
        record_state = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED}.get(state, TrialState.FAIL)
        if record_state == TrialState.COMPLETE:
            self.ctx.record.tell(c.trial, objective_value(score, self.ctx.cfg.objective))
        else:
            self.ctx.record.tell(c.trial, state=record_state)
        return entry

    def add_alarm(self, alarm: dict) -> None:
        """Keep an alarm for the state file and say it (events, live view)."""
        self.alarms.append(alarm)
        self.ctx.store.event("alarm", **alarm)
        if self.ctx.view is not None:
            self.ctx.view.alarm(alarm)

    def tuned(self) -> list[dict]:
        """The complete tuning configs."""
        return [e for e in self.entries.values() if e["kind"] in TUNING_KINDS and e["state"] == "complete"]

    # ---- queries ---------------------------------------------------------------------------
    def count(self, kind: str, cycle: int) -> int:
        """Finished (not rejected, not running) configs of one phase."""
        return sum(1 for e in self.entries.values() if e["kind"] == kind and e["cycle"] == cycle
                   and e["state"] not in ("rejected", "running"))

    def grid_cursor(self) -> int:
        """How many HP grid points were proposed already (rejected ones never reach the grid)."""
        return sum(1 for e in self.entries.values() if e["kind"] == "hp")

    def best_entry(self) -> dict | None:
        """The incumbent: the complete tuning config ranked first by the run's objective."""
        best = ranked(self.entries.values(), self.ctx.cfg.objective, TUNING_KINDS)
        return best[0] if best else None

    def best_params(self) -> dict:
        """The incumbent's HPs (the priors before anything finished)."""
        best = self.best_entry()
        return dict(best["params"]) if best else space_mod.prior_params(self.ctx.inputs.spec)

    def best_weights(self) -> dict:
        """The incumbent's reward weights (the defaults before anything finished)."""
        best = self.best_entry()
        return dict(best["reward_weights"]) if best and best["reward_weights"] else \
            dict(self.ctx.inputs.default_weights)

    def worst_value(self) -> float | None:
        """What a failed seed counts as: 0 for success rates, else the lowest result recorded; before
        any result, the lowest value calibration's short runs of the prior reached; None if unknown."""
        if self.ctx.inputs.true_metric == "success_rate":
            return 0.0
        vals = [r["episode_reward_mean"] for e in self.entries.values() for r in e["seeds"]
                if _finite(r.get("episode_reward_mean"))]
        return min(vals) if vals else self.ctx.plan.value_floor


def ranked(entries, objective: str, kinds) -> list[dict]:
    """Complete configs of ``kinds`` with a finite score, best first by ``objective`` (the one ranking rule);
    ties keep trial order."""
    done = [e for e in entries if e["kind"] in kinds and e["state"] == "complete" and e.get("score")
            and _finite(objective_value(e["score"], objective))]
    return sorted(done, key=lambda e: objective_value(e["score"], objective), reverse=True)


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def state_dict(ctx, status: str) -> dict:
    """The whole automl_state.yaml (field names are the contract in DESIGN.md)."""
    b = ctx.budget
    best = ctx.records.best_entry()
    return {
        "version": 1, "command": ctx.cfg.command, "status": status, "env": ctx.cfg.env,
        "trainer": ctx.cfg.trainer,
        "updated": _iso(time.time()),
        "budget": {"hours": ctx.cfg.budget_hours, "elapsed_s": round(b.elapsed_s(), 1),
                   "remaining_s": round(b.remaining_s(), 1), "deadline": _iso(b.deadline),
                   "deadline_t": round(b.deadline, 3),
                   "reserve_s": round(b.reserve_s, 1)},
        "stage": ctx.stage,
        "seeds": {"tuning": ctx.inputs.tuning_seeds, "heldout": ctx.inputs.heldout_seeds},
        "plan": ctx.plan.to_dict(),
        "fingerprint": ctx.fp,
        "best": None if best is None else {k: best.get(k) for k in
                                           ("config_id", "params", "reward_weights", "score")},
        "heldout": getattr(ctx, "heldout_summary", None),
        "trials": list(ctx.records.entries.values()),
        "alarms": ctx.records.alarms,
        "stop_reason": ctx.stop_reason,
        "overhead": _overhead(ctx),
    }


def _overhead(ctx) -> dict:
    """Share of worker time spent inside jobs this session (the rest is driver overhead + idling)."""
    sched = ctx.scheduler
    wall = ctx.budget.clock() - ctx.budget.started
    busy = sched.busy_s if sched else 0.0
    return {"session_wall_s": round(wall, 1), "worker_busy_s": round(busy, 1),
            "worker_utilization": round(busy / max(1e-9, wall * ctx.cfg.n_jobs), 4),
            "driver_s": round(ctx.driver_s, 2),
            "driver_share": round(ctx.driver_s / max(1e-9, wall), 4)}


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def plan_text(ctx) -> str:
    """The --dry-run summary: stages, configs, steps per trial, estimated time."""
    p, cfg = ctx.plan, ctx.cfg
    stages = [f"{k}#{c} ({q} configs)" for k, c, q in
              stage_list(p, cfg.mode, cfg.max_trials, bool(ctx.inputs.terms))]
    est_s = p.seed_jobs * (p.startup_s + p.trial_steps / p.steps_per_s) / cfg.n_jobs + p.reserve_s
    return "\n".join([
        f"env: {cfg.env}   space: {ctx.inputs.space_path} ({ctx.inputs.spec.search_space_id})",
        f"mode: {cfg.mode}   search: {cfg.search_method}   pruner: {cfg.pruner_name}   n_jobs: {cfg.n_jobs}",
        f"stages: {' -> '.join(stages) or 'none'} -> heldout (top {cfg.top_k} + baseline)",
        f"seeds: tuning {ctx.inputs.tuning_seeds}, held-out {ctx.inputs.heldout_seeds}",
        f"steps per seed job: {p.trial_steps} (default {ctx.inputs.default_steps}), eval every {p.eval_every} "
        f"({p.evals_per_job} evaluations x {p.eval_episodes} episodes, ~{p.eval_share:.0%} of a job)",
        f"seed jobs: {p.seed_jobs} tuning + {(cfg.top_k + 1) * cfg.seeds} held-out",
        f"estimated time: {est_s / 60:.1f} min at ~{p.steps_per_s:,.0f} steps/s per worker (nominal) "
        f"of a {cfg.budget_hours * 60:.1f} min budget",
        f"run dir: {ctx.store.run_dir}",
    ])
