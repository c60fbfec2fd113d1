"""Resume: a run's records rebuilt from its record study, and the configs that were in flight.

The record study is the source of truth. A re-run of the same command reads every record trial
back as its state-file entry; trials left RUNNING by a killed or interrupted run become ConfigRuns
again, with their recorded seeds kept and only the missing ones to train (their sampler trial
reattached, so the result is told where it was asked). A trial killed while it was being recorded
(no config id yet) was never trained: it is failed, not resumed.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from optuna.trial import TrialState

from automl.search import space as space_mod, studies
from automl.core.record import ConfigRecord, Kind, State
from automl.run.configrun import ConfigRun
from automl.search.states import state_name

if TYPE_CHECKING:
    from automl.run.context import RunContext


def reattach(ctx: RunContext) -> list[ConfigRun]:
    """Fill ``ctx.records`` from the record study and the earlier state; the in-flight configs."""
    resume = []
    for t in ctx.record_study.get_trials(deepcopy=False):
        a = t.user_attrs
        if t.state == TrialState.RUNNING and "config_id" not in a:
            ctx.record_study.tell(t.number, state=TrialState.FAIL)  # killed while being recorded (config_id is set last)
            continue
        entry = entry_from_trial(t, ctx.inputs.spec)
        ctx.records.entries[t.number] = entry
        if t.state == TrialState.RUNNING and not a.get("rejected") and not a.get("paused"):
            resume.append(config_from_trial(ctx, t, entry))  # (a ladder's config between climbs waits)
    ctx.records.alarms = list((ctx.old or {}).get("alarms") or [])
    # a sampler trial asked by a run killed before it recorded the config was never trained: failed
    attached = {(c.sampler[0].study_name, c.sampler[1]) for c in resume if c.sampler}
    attached |= {(a["sampler"]["study"], a["sampler"]["trial_id"]) for a in
                 (t.user_attrs for t in ctx.record_study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING)
                 if a.get("paused") and a.get("sampler")}  # ladder configs between climbs: told when they settle
    for search in ctx.searches.values():
        for t in search.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if (search.study.study_name, t._trial_id) not in attached:
                search.study.tell(t.number, state=TrialState.FAIL)
    return resume


def entry_from_trial(t, spec) -> ConfigRecord:
    """A record trial as its ConfigRecord."""
    a = t.user_attrs
    params = {k: v for k, v in t.params.items() if not k.startswith("reward.")}
    weights = {k.split(".", 1)[1]: v for k, v in t.params.items() if k.startswith("reward.")}
    state = a.get("state") or state_name(t.state)
    return ConfigRecord(config_id=a.get("config_id", f"config_{t.number:03d}"), kind=a.get("kind", Kind.HP),
                        cycle=a.get("cycle", 0), state=state, params=space_mod.decode_params(spec, params),
                        reward_weights={**a.get("all_weights", {}), **weights}, seeds=list(a.get("seeds", [])),
                        score=a.get("score") or None, reason=a.get("reason") or None,
                        heldout_of=a.get("heldout_of"), rung=a.get("rung"), steps=a.get("rung_steps"))


def config_from_trial(ctx: RunContext, t, entry) -> ConfigRun:
    """An in-flight record trial as a ConfigRun again: its recorded seeds kept, the missing ones to run."""
    a = t.user_attrs
    sampler = None
    if a.get("sampler"):
        study = {s.study.study_name: s.study for s in ctx.searches.values()}.get(a["sampler"]["study"])
        sampler = (study, a["sampler"]["trial_id"]) if study is not None else None
    kind = entry.kind
    seeds = a.get("planned_seeds") or (ctx.inputs.heldout_seeds if kind == Kind.HELDOUT else ctx.inputs.tuning_seeds)
    target = a.get("rung_target")
    # a ladder's climb: only the seeds that reached this climb's steps are done (the others hold the rung below)
    done = {r["seed"]: r for r in entry.seeds if r.get("state") in State.SCORED
            and (target is None or r.get("state") == State.FAILED or int(r.get("steps", 0)) >= int(a["steps"]))}
    entry.seeds = list(done.values())
    c = ConfigRun(trial=studies.attach(ctx.record_study, t._trial_id), config_id=entry.config_id,
                  kind=kind, cycle=entry.cycle, params=entry.params,
                  weights=entry.reward_weights, seeds=list(seeds),
                  train_params=space_mod.merged(ctx.inputs.spec, entry.params),
                  steps=int(a.get("steps", ctx.plan.trial_steps)), sampler=sampler, results=done)
    c.reported = set(t.intermediate_values)
    if target is not None and ctx.ladder is not None:
        ctx.ladder.resumed_climb(c, int(target))
    return c
