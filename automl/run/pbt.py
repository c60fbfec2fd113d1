"""--mode pbt: population-based training under the run's budget, then the winner's schedule replayed.

``PBTPhase`` trains ``--population`` members (HPs and reward weights; the first is the prior config, the
others sampled from the space) as one batched computation per worker (``automl.train.torch_pbt``). At
every ready point (``--ready-steps`` env steps per member) it ranks the members on the true metric of
that evaluation and applies ``automl.search.pbt``'s rules: a bottom-quantile member copies a top one's
full state only when the gap beats the evaluation noise, then explores the copied values. Only the
values a member can change mid-training are searched (learning rate, discount, GAE lambda, clip range,
entropy and value coefficients, gradient clip; ``automl.train.torch_ppo.MEMBER_PARAMS``) and the reward
weights; rollout and batch sizes, epochs and networks stay at the space's priors.

The state file's ``pbt`` section holds the lineage: every member's current values and history (its
schedule: from which step it trained with which values, and whom it copied), and per ready point the
scores, copies and the time spent deciding. A ``kill -9`` resumes from the last ready point (the
groups' states are kept per ready point; older ones are deleted only once a newer one is recorded).

``ReplayPhase`` is the run's test phase for PBT: the winner's schedule replayed from scratch on the test
seeds beside the baseline (the prior config, default weights), so the reported score is not a survivor
of selection on tuning seeds.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import copy
import math
import random
import shutil
import statistics
import time
from dataclasses import dataclass

from automl.core.config import to_ppo_setup
from automl.core.names import ALIASES
from automl.exec.jobs import Job
from automl.run import heldout, testseeds
from automl.search import pbt as rules_mod
from automl.search import space as space_mod
from automl.train import torch_pbt
from automl.train.torch_ppo import MEMBER_PARAMS

if TYPE_CHECKING:
    from automl.run.context import RunContext
    from automl.run.state import TestPhaseResult

STAGE = "pbt"
BASELINE_ID = "baseline"
_CANONICAL = {ALIASES.get(k, k) for k in MEMBER_PARAMS}  # MEMBER_PARAMS as the space names them


def searched_specs(spec) -> list:
    """The space's parameters a member may change while it trains."""
    return [p for p in spec.params if p.name in _CANONICAL]


def searched_terms(terms) -> dict:
    return {k: t for k, t in terms.items() if float(t["low"]) < float(t["high"])}


def rules(cfg) -> rules_mod.PBTRules:
    return rules_mod.PBTRules(quantile=cfg.quantile, perturb=tuple(cfg.perturb), resample_p=cfg.resample_p)


def _rng(base_seed: int, ready: int) -> random.Random:
    """The decisions' stream at one ready point: the same on a resumed run."""
    return random.Random(base_seed * 1_000_003 + ready)


def new_population(ctx: RunContext) -> dict:
    """Members 0..N-1: member 0 the prior config with default weights, the others sampled from the space."""
    cfg, inputs = ctx.cfg, ctx.inputs
    rng = _rng(inputs.base_seed, -1)
    prior, specs = space_mod.prior_params(inputs.spec), searched_specs(inputs.spec)
    members = []
    n_groups = groups(cfg)
    for i in range(cfg.population):
        params, weights = dict(prior), dict(inputs.default_weights)
        if i > 0:
            for _ in range(100):
                params = {**prior, **{p.name: rules_mod.resample(p, rng) for p in specs}}
                if not space_mod.violated_constraints(inputs.spec, params):
                    break
            weights.update({k: rng.uniform(float(t["low"]), float(t["high"]))
                            for k, t in searched_terms(inputs.terms).items()})
        members.append({"id": i, "seed": inputs.base_seed + i, "group": i * n_groups // cfg.population,
                        "params": params, "reward_weights": weights,
                        "history": [{"from_step": 0, "params": params, "reward_weights": weights}]})
    total, ready_steps = plan_steps(ctx)
    return {"settings": {**cfg.pbt_settings(), "ready_steps": ready_steps, "total_steps": total,
                         "groups": n_groups, "k_std": rules(cfg).k_std, "z_se": rules(cfg).z_se},
            "members": members, "ready": [], "pending_copies": {}, "done": False, "winner": None,
            "bookkeeping_s": 0.0, "wall_s": 0.0}


def groups(cfg) -> int:
    """Jobs per ready point: torch trains a worker's share of the population as one batch; SB3 trains
    one model per process, so each member is its own group."""
    return cfg.population if cfg.trainer == "sb3" else min(cfg.n_jobs, cfg.population)


def job_fn(cfg):
    """The job that trains a group between ready points."""
    if cfg.trainer == "sb3":
        from automl.train import sb3_pbt

        return sb3_pbt.run_member_job
    return torch_pbt.run_segment_job


def plan_steps(ctx: RunContext) -> tuple[int, int]:
    """(env steps per member, steps between ready points): --trial-steps when given, else what the
    tuning time fits once the replay (winner and baseline on the test seeds) is set aside."""
    cfg, r = ctx.cfg, max(1, ctx.inputs.rollout)
    if cfg.trial_steps:
        total = cfg.trial_steps
    else:
        per_group = -(-cfg.population // min(cfg.n_jobs, cfg.population))  # members one worker trains
        replay_jobs = replay_waves(ctx)
        # seconds per member-step (one worker, batched members): the calibrated single-seed rate
        rate = max(ctx.plan.train_steps_per_s or ctx.plan.steps_per_s, 1.0)
        usable = max(0.0, ctx.budget.remaining_s() * 0.8 - 60.0)
        total = int(usable * rate / (per_group + replay_jobs))
    ready = cfg.ready_steps or total // 10
    ready = max(r, -(-ready // r) * r)
    total = max(ready, (total // ready) * ready)
    return total, ready


def replan_total(ctx: RunContext, pop: dict) -> None:
    """Without --trial-steps and with a constant learning rate, fit the members' training length to
    the time left at the measured speed: the rest of the population's training plus the replay of
    the whole length must end before the deadline (longer when calibration was pessimistic, shorter
    when optimistic, never below what is trained)."""
    s, ready = pop["settings"], pop["ready"]
    per_step = population_s_per_step(pop)                                    # population seconds per env step
    if ctx.cfg.trial_steps or per_step is None or _linear_lr(ctx):
        return
    done = ready[-1]["steps"]
    replay_per_step = (replay_reserve_s(ctx, pop) - 15.0) / s["total_steps"]  # replay seconds per env step
    left = ctx.budget.deadline - ctx.budget.clock() - 30.0
    fit = int((left + per_step * done) / (per_step + replay_per_step))
    r = s["ready_steps"]
    new = max(done, (fit // r) * r)  # done: the population ends here
    if new != s["total_steps"]:
        ctx.store.event("pbt_replanned", total_steps=new, was=s["total_steps"])
        s["total_steps"] = new


def _linear_lr(ctx: RunContext) -> bool:
    prior = space_mod.merged(ctx.inputs.spec, space_mod.prior_params(ctx.inputs.spec))
    return to_ppo_setup(prior).learning_rate_schedule == "linear"


def population_s_per_step(pop: dict) -> float | None:
    """Wall seconds per env step of the population between ready points: the median over its segments, so
    one slow ready point does not move the plan (a 20-minute run's last one, 10% slower than the rest, made
    the replay drop a test seed and leave 18% of the budget unused). None before the first ready point."""
    rates, before = [], 0
    for r in pop["ready"]:
        seg = int(r["steps"]) - before
        before = int(r["steps"])
        if seg > 0 and r.get("wall_s"):
            rates.append(float(r["wall_s"]) / seg)
    return statistics.median(rates) if rates else None


def replay_reserve_s(ctx: RunContext, pop: dict) -> float:
    """Time the replay needs: the winner's and the baseline's test seeds, at the population's measured
    seconds per member-step (the calibrated rate before the first ready point), with a margin."""
    s = pop["settings"]
    per_step = population_s_per_step(pop)
    if per_step is not None:
        # a ready point's wall time is its slowest job's: a worker's share of the members
        per_worker = max(1, -(-s["population"] // min(ctx.cfg.n_jobs, s["population"])))
        per_member_step = per_step / per_worker
    else:
        per_member_step = 1.0 / max(ctx.plan.train_steps_per_s or ctx.plan.steps_per_s, 1.0)
    return 1.2 * replay_waves(ctx) * s["total_steps"] * per_member_step + 15.0


def replay_waves(ctx: RunContext) -> int:
    """Seed jobs one after another on a worker in the replay: the winner's and the baseline's test seeds."""
    return -(-2 * len(ctx.inputs.test_seeds) // ctx.cfg.n_jobs)


@dataclass
class PBTPhase:
    """The population from its last ready point to the end of training or of the tuning time."""

    tuning = True

    def run(self, ctx: RunContext) -> None:
        ctx.enter_stage(STAGE, 0)
        pop = ctx.results.pbt = ctx.results.pbt or new_population(ctx)
        s = pop["settings"]
        while not pop["done"]:
            reserve = replay_reserve_s(ctx, pop)
            ctx.budget.set_reserve(reserve, essential_s=reserve)
            done_steps = pop["ready"][-1]["steps"] if pop["ready"] else 0
            if done_steps >= s["total_steps"]:
                break
            to_step = min(s["total_steps"], done_steps + s["ready_steps"])
            last = pop["ready"][-1]["wall_s"] if pop["ready"] else None
            if last is not None and ctx.budget.clock() + last > ctx.budget.tuning_deadline:
                ctx.mark_tuning_over("the next ready point would not be reached before the deadline")
                break
            results = _segment(ctx, pop, len(pop["ready"]), to_step)
            if results is None:
                break
            _ready_point(ctx, pop, to_step, results)
            replan_total(ctx, pop)
        pop["done"] = True
        pop["winner"] = winner(pop)
        ctx.write_state("running")


def _segment(ctx: RunContext, pop: dict, ready: int, to_step: int) -> list[dict] | None:
    """Train every group to ``to_step`` (one job per group, a crashed job retried once); None when the
    deadline stopped a group or a group failed twice (the population ends at its last ready point)."""
    s, inputs, spec = pop["settings"], ctx.inputs, ctx.inputs.spec
    members = pop["members"]
    group_of = {m["id"]: m["group"] for m in members}
    state_dir = str(ctx.store.run_dir / "checkpoints" / "pbt")

    def job(g: int, attempt: int) -> Job:
        mine = [m for m in members if m["group"] == g]
        copies = {int(d): (int(src), group_of[int(src)]) for d, src in pop["pending_copies"].items()
                  if group_of[int(d)] == g}
        kwargs = dict(member_params=[space_mod.merged(spec, m["params"]) for m in mine], env=inputs.env,
                      seeds=[m["seed"] for m in mine], ids=[m["id"] for m in mine],
                      weights=[m["reward_weights"] for m in mine], copies=copies, state_dir=state_dir, group=g,
                      ready=ready, to_step=to_step, total_steps=s["total_steps"],
                      eval_episodes=ctx.plan.eval_episodes, deadline=ctx.budget.tuning_deadline,
                      device=ctx.cfg.device)
        last = pop["ready"][-1]["wall_s"] if pop["ready"] else ctx.budget.remaining_s()
        return Job(job_id=f"pbt:r{ready}:g{g}:{attempt}", fn=job_fn(ctx.cfg), kwargs=kwargs,
                   timeout_s=4 * last + 120.0, tag=("pbt", g))

    out: dict[int, dict] = {}
    began = time.time()
    tries = {g: 0 for g in range(s["groups"])}
    ended: list = []  # the segment's job results, as the scheduler hands them over
    for g in tries:
        ctx.sched.submit_job(job(g, 0), ended.append)
    while len(out) < s["groups"]:
        ctx.sched.step(0.5)
        while ended:
            r = ended.pop(0)
            g = r.tag[1]
            if r.ok and isinstance(r.value, dict) and not r.value.get("stopped"):
                out[g] = r.value
                continue
            if r.ok and r.value.get("stopped") or tries[g] >= 1:
                why = "the deadline stopped a segment" if r.ok else f"a population job failed twice ({r.reason})"
                ctx.store.event("pbt_stopped", ready=ready, group=g, reason=why)
                _drain(ctx)
                ctx.mark_tuning_over(why)
                return None
            tries[g] += 1
            ctx.store.event("pbt_retry", ready=ready, group=g, reason=r.reason)
            ctx.sched.submit_job(job(g, tries[g]), ended.append)
        ctx.refresh_view()
    for g in out:
        out[g]["segment_s"] = time.time() - began  # the ready point's wall time (all groups, all waves)
    return [out[g] for g in sorted(out)]


def _drain(ctx: RunContext) -> None:
    """Stop the other groups' jobs of a segment that will not be recorded, running or queued."""
    ctx.sched.cancel_jobs("pbt:", "population stopped")
    ctx.sched.step(0.5)


def _ready_point(ctx: RunContext, pop: dict, steps: int, results: list[dict]) -> None:
    """Record the scores, decide the copies and explore them, write the state, drop old group states."""
    t0 = time.perf_counter()
    members = {m["id"]: m for m in pop["members"]}
    scores: list[float | None] = [None] * len(members)
    noise: list[float | None] = [None] * len(members)
    failed = {}
    for r in results:
        for m in r["members"]:
            scores[m["id"]], noise[m["id"]] = m["value"], m.get("se")
            if m["failed"]:
                failed[m["id"]] = m["failed"]
    index = len(pop["ready"]) + 1
    rule = rules(ctx.cfg)
    rng = _rng(ctx.inputs.base_seed, index)
    finite = [v for v in scores if v is not None and math.isfinite(v)]
    margin = rules_mod.noise_margin(finite, rule)
    copies, explored = [], {}
    for dst, src in rules_mod.exploit(scores, rule, rng, noise):
        params, weights = _explore(ctx, members[src], rule, rng)
        d = members[dst]
        d["params"], d["reward_weights"] = params, weights
        d["history"] = copy.deepcopy(members[src]["history"]) + [
            {"from_step": steps, "params": params, "reward_weights": weights, "copied_from": src}]
        src_score = scores[src]
        assert src_score is not None  # exploit copies only from a member with a finite score
        dst_score = scores[dst]
        gap = src_score - (dst_score if dst_score is not None else -math.inf)
        copies.append({"dst": dst, "src": src, "gap": round(gap, 4),
                       "noise": round(rules_mod.pair_noise(noise, dst, src, rule), 4)})
        explored[dst] = src
    pop["pending_copies"] = {str(d): s for d, s in explored.items()}
    wall = results[0]["segment_s"]
    copy_s = max(r["copy_s"] for r in results)
    decide_s = time.perf_counter() - t0
    pop["ready"].append({"index": index, "steps": steps, "scores": [None if v is None else round(v, 4) for v in scores],
                         "se": [None if v is None else round(v, 4) for v in noise],
                         "margin": round(margin, 4), "copies": copies, "failed": failed, "wall_s": round(wall, 2),
                         **{k: round(max(r[k] for r in results), 3) for k in ("train_s", "eval_s", "copy_s")},
                         "bookkeeping_s": round(decide_s + copy_s, 4)})
    pop["wall_s"] = round(pop["wall_s"] + wall, 2)
    t1 = time.perf_counter()
    ctx.store.event("pbt_ready", index=index, steps=steps, scores=pop["ready"][-1]["scores"], copies=copies)
    st = ctx.write_state("running")
    if ctx.view is not None:
        ctx.view.pbt_ready(pop, state=st)  # one line per ready point, as the other modes print per config
    pop["bookkeeping_s"] = round(pop["bookkeeping_s"] + decide_s + copy_s + time.perf_counter() - t1, 4)
    if not ctx.cfg.keep_checkpoints:  # the states before this ready point (a killed run may have left several)
        for old in (ctx.store.run_dir / "checkpoints" / "pbt").glob("r*"):
            if old.name < f"r{index:04d}":
                shutil.rmtree(old, ignore_errors=True)


def _explore(ctx: RunContext, src: dict, rule, rng: random.Random) -> tuple[dict, dict]:
    """The source's values explored (a proposal the space's constraints reject is drawn again)."""
    specs, terms = searched_specs(ctx.inputs.spec), searched_terms(ctx.inputs.terms)
    for _ in range(100):
        params, weights = rules_mod.explore(src["params"], specs, src["reward_weights"], terms, rule, rng)
        if not space_mod.violated_constraints(ctx.inputs.spec, params):
            return params, weights
    return dict(src["params"]), dict(src["reward_weights"])


def winner(pop: dict) -> int | None:
    """The member with the best score at the last ready point (the lowest id on ties)."""
    if not pop["ready"]:
        return None
    scores = pop["ready"][-1]["scores"]
    ranked = [(v, -i) for i, v in enumerate(scores) if v is not None and math.isfinite(v)]
    return -max(ranked)[1] if ranked else None


def schedule(ctx: RunContext, member: dict) -> list[dict]:
    """A member's history as the trainer's schedule (MEMBER_PARAMS under SB3 names)."""
    return [{"from_step": int(h["from_step"]),
             "values": torch_pbt.member_values(space_mod.merged(ctx.inputs.spec, h["params"])),
             "weights": dict(h["reward_weights"])} for h in member["history"]]


@dataclass
class ReplayPhase:
    """The winner's schedule and the baseline re-trained from scratch on the test seeds."""

    tuning = False

    def run(self, ctx: RunContext) -> TestPhaseResult | None:
        pop = ctx.results.pbt
        if not pop or pop.get("winner") is None:
            return None
        m = pop["members"][pop["winner"]]
        steps = pop["ready"][-1]["steps"]
        first = m["history"][0]
        picks = [(f"pbt_m{m['id']}", first["params"], first["reward_weights"], False),
                 (BASELINE_ID, space_mod.prior_params(ctx.inputs.spec), dict(ctx.inputs.default_weights), True)]
        _write_best(ctx, pop, m, steps)
        job_s = replay_reserve_s(ctx, pop) / replay_waves(ctx)
        return testseeds.run(ctx, picks=picks, steps=steps, schedules={picks[0][0]: schedule(ctx, m)}, job_s=job_s)


def _write_best(ctx: RunContext, pop: dict, m: dict, steps: int) -> None:
    if ctx.store.read_yaml("best.yaml"):
        return
    full = heldout.best_params(ctx, m["params"], steps)
    ctx.store.write_yaml("best.yaml", {
        "config_id": f"pbt_m{m['id']}", "env": ctx.cfg.env, "objective": "true metric at the last ready point",
        "search_space_id": ctx.inputs.spec.search_space_id, "mode": "pbt",
        "params": full, "reward_weights": m["reward_weights"],
        # the final values (rl-zoo3 and `automl train` take constant values; the schedule is below)
        "sb3": heldout.sb3_block(ctx, full, steps),
        "schedule": [{"from_step": h["from_step"], "params": space_mod.merged(ctx.inputs.spec, h["params"]),
                      "reward_weights": h["reward_weights"], **({"copied_from": h["copied_from"]}
                                                                 if "copied_from" in h else {})}
                     for h in m["history"]],
        "n_timesteps": steps,
        "tuning_score": pop["ready"][-1]["scores"][m["id"]],
        "population": pop["settings"]["population"],
        "baseline": {"config_id": BASELINE_ID, "params": space_mod.merged(ctx.inputs.spec,
                                                                         space_mod.prior_params(ctx.inputs.spec)),
                     "reward_weights": dict(ctx.inputs.default_weights)},
    })
