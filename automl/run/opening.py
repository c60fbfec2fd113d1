"""Opening a run: resolve its inputs and plan (``prepare``), then open its studies, search owners (as the mode
declares: ``search_owners``), workers and scheduler,
restore or calibrate its plan and re-attach the work a killed session left in flight (``start``).

The context (``automl.run.context.RunContext``) is the run's live state; this module assembles it, so
the context itself needs none of the parts it is built from.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import functools
import time

import optuna

from automl.core.errors import AutoMLError
from automl.core.record import Kind
from automl.exec.executor import make_executor
from automl.run import pareto, resume, trainers
from automl.run.budget import Budget, Throughput
from automl.run.calibration import calibrate, check_minimum_budget
from automl.run.context import RunContext
from automl.run.jobs import JobSpecs
from automl.run.lease import Lease
from automl.run.ladder_plan import check_pinned_top, make_run_plan
from automl.run.scheduler import Scheduler
from automl.run.inputs import check_resume, fingerprint, resolve_defaults, resolve_inputs
from automl.run.plan import Plan, nominal_calibration
from automl.run.state import StateStore
from automl.search import studies
from automl.search.hp import HPSearch
from automl.search.joint import STUDY_NAME as JOINT_STUDY, JointSearch
from automl.search.reward import RewardSearch, make_reward_sampler
from automl.search.strategies import make_pruner, make_sampler

if TYPE_CHECKING:  # annotations only
    from automl.run.runconfig import RunConfig


def prepare(cfg: RunConfig, *, clock=time.time, executor_factory=None) -> RunContext:
    """Resolve inputs, check resume compatibility and make the (nominal) plan.

    ``clock`` and ``executor_factory(n_jobs)`` are for simulations (fake-clock planning tests).
    """
    store = StateStore(cfg.run_dir)
    Lease(cfg.run_dir, cfg.storage).check()  # before --fresh moves a live run's files aside
    cfg = resolve_defaults(cfg, store)
    inputs = resolve_inputs(cfg)
    fp = fingerprint(cfg, inputs)
    old = check_resume(store, cfg, fp)
    elapsed = float(((old or {}).get("budget") or {}).get("elapsed_s", 0.0))
    budget = Budget(cfg.budget_hours, elapsed_before_s=elapsed, clock=clock)
    plan = make_run_plan(cfg, inputs, budget, nominal_calibration(cfg, inputs))
    ctx = RunContext(cfg, inputs, store, old, fp, budget=budget, plan=plan)
    ctx.executor_factory = executor_factory
    return ctx


def start(ctx: RunContext) -> None:
    """Open the studies and the workers, restore or make the plan, re-attach in-flight work."""
    cfg, inputs = ctx.cfg, ctx.inputs
    ctx.store.run_dir.mkdir(parents=True, exist_ok=True)
    ctx.lease = lease = Lease(cfg.run_dir, cfg.storage)
    lease.acquire()
    ctx.storage_url = studies.storage_url(cfg.run_dir, cfg.storage)
    pruner = make_pruner(cfg.pruner_name, min_resource=1, reduction_factor=3)
    ctx.records.study = studies.open_study(
        _storage(ctx), study_name(ctx, studies.RECORD), pruner=pruner,
        sampler=optuna.samplers.RandomSampler(seed=inputs.base_seed))
    if ctx.old is None and ctx.record_study.get_trials(deepcopy=False) \
            and ctx.record_study.user_attrs.get("fingerprint") not in (None, ctx.fp):
        raise AutoMLError(f"--storage: study {ctx.record_study.study_name!r} already holds trials of another run "
                          f"(allowed: a run directory with a new name, whose studies are named after it)")
    ctx.searches = search_owners(ctx)
    ctx.executor = executor = (ctx.executor_factory or (lambda n: make_executor(
        cfg.executor, n_jobs=n, **cfg.executor_options())))(cfg.n_jobs)
    ctx.throughput = throughput = Throughput(steps_per_s=ctx.plan.steps_per_s)
    ctx.batched = cfg.batches_seeds(cuda=trainers.on_cuda(cfg.device))
    ctx.jobs = JobSpecs(cfg, inputs, ctx.store.run_dir, ctx.plan, fn=trainers.job_fn(cfg.trainer),
                        batch_fn=trainers.batch_fn(cfg.trainer) if ctx.batched else None)
    ctx.scheduler = Scheduler(executor, ctx.budget, throughput, n_jobs=cfg.n_jobs, timeout_s=cfg.timeout_per_trial,
                              objective=cfg.objective_name, risk=cfg.risk)
    _restore_or_calibrate(ctx)  # calibration's jobs go through the scheduler too
    if ctx.plan.ladder:
        from automl.run.ladder_run import LadderRun  # the ladder's modules load only for laddered runs

        ctx.ladder = LadderRun(ctx)
    ctx.sched.park(resume.reattach(ctx))
    if ctx.ladder is not None:
        ctx.ladder.rebuild(ctx.record_study.get_trials(deepcopy=False))
    if ctx.old is None:
        ctx.searches[ctx.mode.baseline_owner].warm_start()
    ctx.record_study.set_user_attr("fingerprint", ctx.fp)
    ctx.store.event("resume" if ctx.old else "start", command=cfg.command, plan=ctx.plan.to_dict())
    ctx.write_state("running")


def search_owners(ctx: RunContext) -> dict:
    """The run's search owners by the kind of config they propose (``automl.search.owner.SearchOwner``)."""
    owners = {Kind.HP: hp_owner(ctx)}
    if ctx.mode.joint_search:
        owners[Kind.JOINT] = JointSearch(sampler_study(ctx, JOINT_STUDY), ctx.inputs.spec, ctx.inputs.terms,
                                         ctx.inputs.default_weights)
    return {**owners, **reward_owner(ctx)}


def hp_owner(ctx: RunContext):
    """The HP search over the run's --search-method sampler study (the grid walks on from the HP configs
    already proposed)."""
    return HPSearch(sampler_study(ctx, studies.HP_SAMPLER), ctx.inputs.spec, space_path=ctx.inputs.space_path,
                    method=ctx.cfg.search_method, proposed=ctx.records.grid_cursor)


def reward_owner(ctx: RunContext) -> dict:
    """{Kind.REWARD: the reward search} when the env has reward terms, else {}."""
    if not ctx.inputs.terms:
        return {}
    # the study opens on first use: its CMA-ES population is the plan's, made once calibration has run
    return {Kind.REWARD: RewardSearch(functools.partial(reward_study, ctx), ctx.inputs.terms,
                                      ctx.inputs.default_weights)}


def study_name(ctx: RunContext, name: str) -> str:
    """A study's name: as is in the run directory's own SQLite file; prefixed with the run directory's
    name in a shared --storage, so that several runs can share one database."""
    return f"{ctx.store.run_dir.resolve().name}:{name}" if studies.is_shared(ctx.cfg.storage) else name


def sampler_study(ctx: RunContext, name: str) -> optuna.Study:
    """The sampler study ``name`` (e.g. studies.HP_SAMPLER) of the run's --search-method. A resumed
    session continues the sampler's random stream instead of repeating the first session's proposals
    (grid and QMC keep their place from the trials themselves)."""
    method, seed, spec = ctx.cfg.search_method, ctx.inputs.base_seed, ctx.inputs.spec
    mo = pareto.sampler_options(ctx.cfg)  # --metrics: directions; --constraint: constraints_func
    cfunc = mo.get("constraints_func")
    study = studies.open_study(_storage(ctx), study_name(ctx, name), directions=mo.get("directions"),
                               sampler=make_sampler(method, seed=seed, spec=spec, constraints_func=cfunc,
                                                    startup_trials=ctx.cfg.startup_trials))
    asked = len(study.get_trials(deepcopy=False))
    if asked and method not in ("grid", "qmc"):
        study.sampler = make_sampler(method, seed=seed + asked, spec=spec, constraints_func=cfunc,
                                     startup_trials=ctx.cfg.startup_trials)
    return study


def reward_study(ctx: RunContext) -> optuna.Study:
    """The reward search's study: CMA-ES over the weights with the plan's population (NSGA-II with
    --metrics or --constraint)."""
    inputs, mo = ctx.inputs, pareto.sampler_options(ctx.cfg)
    sampler = make_reward_sampler(inputs.terms, seed=inputs.base_seed, population=ctx.plan.population,
                                  multi="directions" in mo, constraints_func=mo.get("constraints_func"))
    return studies.open_study(_storage(ctx), study_name(ctx, studies.REWARD_SAMPLER), sampler=sampler,
                              directions=mo.get("directions"))


def _storage(ctx: RunContext) -> str:
    if ctx.storage_url is None:
        raise RuntimeError("the run's storage is not open (start opens it)")
    return ctx.storage_url


def _restore_or_calibrate(ctx: RunContext) -> None:
    """The run's plan, made once: the one recorded by an earlier session of this run, else one
    made from calibration (the nominal plan of ``prepare`` only serves --dry-run)."""
    recorded = (ctx.old or {}).get("plan")
    if recorded:
        _use_plan(ctx, Plan.from_dict(recorded))
        return
    if ctx.view is not None:
        ctx.view.message(f"calibrating: {ctx.cfg.n_jobs} short jobs of the prior config")
    cal = calibrate(ctx.cfg, ctx.inputs, ctx.sched, ctx.budget, ctx.store)
    if ctx.mode.checks_minimum_budget:
        check_minimum_budget(ctx.cfg, ctx.inputs, ctx.budget, cal)
    plan = make_run_plan(ctx.cfg, ctx.inputs, ctx.budget, cal)
    check_pinned_top(ctx.cfg, plan)
    _use_plan(ctx, plan)
    ctx.store.event("planned", plan=ctx.plan.to_dict())


def _use_plan(ctx: RunContext, plan: Plan) -> None:
    """Adopt ``plan``: throughput estimates and the held-out reserve start from it (the reserve
    then follows measured throughput through ``update_reserve``)."""
    ctx.plan = ctx.job_specs.plan = plan
    ctx.records.value_floor = plan.value_floor
    ctx.speed.steps_per_s = plan.steps_per_s
    ctx.speed.startup_s = plan.startup_s
    ctx.budget.set_reserve(plan.reserve_s)
    ctx.planned = True
