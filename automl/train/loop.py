"""The one seed-job loop: every trainer's steps, evaluations, deadline, channel, checkpoints and result.

A trainer (``automl.train.sb3_train.SB3Trainer``, ``automl.train.torch_train.TorchTrainer``) is a small
adapter with the ``Trainer`` methods below: it trains one chunk (one rollout and one update), evaluates,
and snapshots or restores its full state; it knows nothing about schedules, stop requests or files.
``train`` owns the rest, in this order at every rollout boundary (right after an update, so the evaluated
policy is the freshly trained one):

    the schedule's values in force -> evaluate (when due; report to the channel) -> obey a stop request
    -> save a checkpoint (when due, unless stopping) -> the online tuner's safe point -> one chunk

A stop request is read as a ``automl.core.stop.Stop`` (its reason decides the seed's state, never its
text); the deadline is checked here and, inside a chunk or an evaluation, by the trainer at every env
step. Continuing a config from a saved state (a checkpoint, a PBT member's ready point, a promotion to a
longer run) is one path: ``start_state`` (or the checkpoint found at ``Checkpointing.path``) is loaded into
a fresh trainer, then the loop goes on to ``Plan.until``.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol, Sequence, TypeVar, cast

from automl.core import memory
from automl.core.stop import Stop, StopReason, seed_state
from automl.train import checkpoint
from automl.train.evaluation import EvalStats
from automl.train.result import SeedResult, seed_result


class Trainer(Protocol):
    """What the loop needs from a trainer (one seed, or a batch of seeds on one axis)."""

    seeds: list[int]
    rollout: int                       # env steps (per seed) of one chunk
    model: Any                         # the algorithm object user actuators see as env["model"]
    state_has_values: bool             # state() holds the values set_values set (else a snapshot adds them)

    @property
    def steps(self) -> int: ...        # env steps (per seed) trained so far

    def begin(self, total: int, resumed: bool) -> None: ...          # before the first chunk
    def chunk(self, total: int, deadline: float | None) -> bool: ...  # one rollout + update; False: deadline
    def evaluate(self, deadline: float | None) -> list[EvalStats] | None: ...  # per seed; None: deadline
    def log_evals(self, stats: Sequence[EvalStats]) -> None: ...
    def failed(self) -> dict[int, tuple[int, str]]: ...              # seed index -> (steps, why)
    def state(self, loop: Mapping[str, Any]) -> dict: ...             # full state + the loop's part, plain values
    def load(self, state: Mapping, total: int) -> dict: ...           # the inverse; returns the loop's part
    def set_values(self, values: Mapping[str, float], weights: Mapping[str, float] | None) -> None: ...
    def values(self) -> dict[str, float]: ...                          # the actuators' values now (seed 0)
    def last_kl(self) -> float | None: ...                             # the last update's approx_kl (seed 0)
    def lr_scale(self) -> float: ...       # the last update's learning rate / the set one (a linear schedule's decay)
    def finish(self, ended: "Ended") -> None: ...                      # flush logs, save the models
    def close(self) -> None: ...


TrainerT = TypeVar("TrainerT", bound=Trainer)  # the concrete trainer a ``train`` call builds


@dataclass(frozen=True)
class Plan:
    """How long to train and when to evaluate: to ``until`` (default ``total``) of a ``total``-step run."""

    total: int
    every: int | None                  # env steps between evaluations (whole rollouts); None: only at the end
    deadline: float | None = None
    until: int | None = None
    always_evaluate_at_end: bool = False  # PBT: a ready point is always evaluated, even if nothing trained


@dataclass(frozen=True)
class Checkpointing:
    """Resume from ``path`` when it holds this job's checkpoint (``header`` matches), save there every ``every``."""

    path: str
    every: int
    header: dict


def checkpointing(path: str | None, header: dict, *, schedule: Sequence[Mapping], every: int,
                  checkpoint_every: int | None, rollout: int) -> "Checkpointing | None":
    """A job's checkpointing (None without a path): its header (with a replayed schedule) and interval in
    whole rollouts (default: every evaluation)."""
    if not path:
        return None
    if schedule:
        header = {**header, "schedule": list(schedule)}
    return Checkpointing(path, max(int(checkpoint_every or every), rollout), header)


@dataclass
class Ended:
    """How the loop ended: the stop (None: trained to the end), every seed's evaluations and the times."""

    stop: Stop | None
    evals: list[list[EvalStats]]
    last: list[EvalStats] | None = None  # the final evaluation of every seed (None: there was none)
    eval_s: float = 0.0
    times: dict = field(default_factory=dict)  # train_s, wall_s (this job's, checkpointed sessions included)
    resumed_from: int | None = None
    note: str | None = None


class SeedJob:
    """The loop's state between rollout boundaries (evaluations, schedules, checkpoints, the stop)."""

    def __init__(self, trainer: Trainer, plan: Plan, channel: Any, ckpt: Checkpointing | None, started: float):
        self.trainer, self.plan, self.channel, self.ckpt, self.started = trainer, plan, channel, ckpt, started
        self.evals: list[list[EvalStats]] = [[] for _ in trainer.seeds]
        self.next_eval, self.eval_s = plan.every or 0, 0.0
        self.stop: Stop | None = None
        self.prior = {"train_s": 0.0, "wall_s": 0.0, "eval_s": 0.0}  # time spent before the state resumed from
        self.next_ckpt: int | None = ckpt.every if ckpt else None  # an int whenever ckpt is set
        self.last: list[EvalStats] | None = None
        self.note: str | None = None

    # -- state ------------------------------------------------------------------------------------
    def loop_state(self) -> dict:
        """The loop's part of a saved state."""
        return {"evals": [list(e) for e in self.evals], "next_eval": int(self.next_eval), "eval_s": float(self.eval_s),
                **self.spent()}

    def load(self, state: Mapping, total: int, *, timing: bool = True) -> None:
        """Put the trainer and the loop where ``state`` left them (raises when it does not fit); ``timing``: the
        state's times are this job's earlier sessions (a checkpoint), not a point of this session (a snapshot)."""
        part = self.trainer.load(state, total)
        self.evals = [list(e) for e in part["evals"]]
        self.next_eval, self.eval_s = int(part["next_eval"]), float(part["eval_s"])
        if timing:
            self.prior = {"train_s": float(part.get("train_s", 0.0)), "wall_s": float(part.get("wall_s", 0.0)),
                          "eval_s": self.eval_s}
        if self.ckpt:
            self.next_ckpt = (self.trainer.steps // self.ckpt.every + 1) * self.ckpt.every

    def snapshot(self) -> dict:
        """The trainer's and the loop's whole state, copied (no references to live tensors), with the values a
        schedule, PBT or the tuner set (a checkpoint leaves them to the config; a rollback must put them back)."""
        part = {k: v for k, v in self.loop_state().items() if k not in ("train_s", "wall_s")}
        state = copy.deepcopy(self.trainer.state(part))
        now = self.trainer.values()
        state["values"] = {k: v for k, v in now.items() if not k.startswith("reward.")}
        state["weights"] = {k.split(".", 1)[1]: v for k, v in now.items() if k.startswith("reward.")}
        return state

    def restore(self, snap: Mapping) -> None:
        """Put a ``snapshot()`` back mid-run (gymnasium envs restart their episodes; batched envs continue)."""
        self.load(copy.deepcopy(snap), self.plan.total, timing=False)
        if not self.trainer.state_has_values:
            self.trainer.set_values(snap["values"], snap["weights"] or None)

    def spent(self) -> dict[str, float]:
        """Training and wall seconds of this job so far, earlier sessions included."""
        now = time.time() - self.started
        return {"train_s": self.prior["train_s"] + now - (self.eval_s - self.prior["eval_s"]),
                "wall_s": self.prior["wall_s"] + now}

    # -- one rollout boundary ---------------------------------------------------------------------
    def evaluate(self) -> bool:
        """Evaluate every seed, log, report the live seeds' mean to the channel; False if the deadline hit."""
        steps = self.trainer.steps
        if self.plan.every:  # the next one is due a whole interval later (after the final one too: a continued run)
            self.next_eval = (steps // self.plan.every + 1) * self.plan.every
        began = time.time()
        stats = self.trainer.evaluate(self.plan.deadline)
        self.eval_s += time.time() - began
        if stats is None:
            self.stop_for(Stop(StopReason.DEADLINE))
            return False
        self.last = stats
        live = self.live()
        for s in live:
            self.evals[s].append(stats[s])
        self.trainer.log_evals(stats)
        if self.channel is not None and live:
            value = sum(stats[s].true_metric for s in live) / len(live)
            self.channel.report({"eval_index": len(self.evals[live[0]]) - 1, "steps": self.trainer.steps,
                                 "value": value})
        return True

    def poll(self) -> None:
        """Obey the driver: its stop request's reason (pruned, deadline, interrupted, ...) ends the job."""
        if self.channel is not None and self.channel.stop_requested():
            self.stop_for(Stop.of(self.channel.stop_reason()) or Stop(StopReason.PRUNED, "stop requested"))

    def stop_for(self, stop: Stop) -> None:
        """Stop at this boundary (the first reason wins)."""
        if self.stop is None:
            self.stop = stop

    def boundary(self) -> None:
        """Evaluate when due, obey the channel, checkpoint when due (after the evaluation, unless stopping)."""
        steps = self.trainer.steps
        if self.plan.every and steps >= self.next_eval and steps > 0 and not self.evaluate():
            return
        self.poll()
        ckpt, next_ckpt = self.ckpt, self.next_ckpt
        if ckpt and self.stop is None and next_ckpt is not None and steps >= next_ckpt:
            self.next_ckpt = (steps // ckpt.every + 1) * ckpt.every
            self.save_checkpoint()

    def save_checkpoint(self) -> None:
        """Replace the job's checkpoint; a failure (full disk) is noted once and training goes on."""
        ckpt = self.ckpt
        assert ckpt is not None  # both callers check self.ckpt first
        try:
            checkpoint.save(ckpt.path, {**ckpt.header, "steps": int(self.trainer.steps)},
                            self.trainer.state(self.loop_state()))
        except Exception as exc:  # noqa: BLE001 - a full disk must not end the run; it only loses resumability
            if "save failed" not in (self.note or ""):  # the first failure says it; later ones would repeat it
                failed = f"checkpoint save failed at {self.trainer.steps} steps ({type(exc).__name__}: {str(exc)[:200]})"
                self.note = f"{self.note}; {failed}" if self.note else failed

    def live(self) -> list[int]:
        """Indices of the seeds that have not failed."""
        failed = self.trainer.failed()
        return [s for s in range(len(self.trainer.seeds)) if s not in failed]

    def evaluated_at(self) -> int:
        """The step of the first live seed's latest evaluation (-1: none yet)."""
        live = self.live()
        return self.evals[live[0]][-1].steps if live and self.evals[live[0]] else -1

    def run_until(self, until: int, values: "Schedule | None" = None, hook: Any = None) -> None:
        """Train to ``until`` steps (or a stop, or every seed failed): at each rollout boundary the schedule's
        values, the evaluation, the stop check and the checkpoint, the tuner's safe point, then one chunk."""
        trainer = self.trainer
        while trainer.steps < until and self.live() and self.stop is None:
            if values is not None:
                values.apply(trainer)
            self.boundary()
            if hook is not None and self.stop is None:
                hook.safe_point()
                if trainer.steps >= until:
                    break  # the hook trained ahead (branches side by side) and left the run at or past ``until``
            if self.stop is None and not trainer.chunk(self.plan.total, self.plan.deadline):
                self.stop_for(Stop(StopReason.DEADLINE))


class Schedule:
    """Values by step [{from_step, values, weights}] (a PBT member's history): at each boundary the latest
    point at or before the step count is in force (set once, when it changes)."""

    def __init__(self, points: Sequence[Mapping]):
        self.points = sorted(points, key=lambda p: int(p["from_step"]))
        self.applied: int | None = None

    def apply(self, trainer: Trainer) -> None:
        """Set the point due at the trainer's step count, if it is not the one already in force."""
        due = [i for i, p in enumerate(self.points) if int(p["from_step"]) <= trainer.steps]
        if due and due[-1] != self.applied:
            self.applied = due[-1]
            p = self.points[due[-1]]
            trainer.set_values(p.get("values") or {}, p.get("weights") or None)


def _resume(job: SeedJob, build: Callable[[], Trainer], start_state: Mapping | None) -> tuple[SeedJob, int | None]:
    """Load ``start_state`` or the job's checkpoint into the trainer; a checkpoint that cannot be restored is
    noted and the trainer rebuilt (a bad ``start_state`` raises: the caller handed it over)."""
    if start_state is not None:
        job.load(start_state, job.plan.total)
        return job, job.trainer.steps
    if job.ckpt is None:
        return job, None
    saved, job.note = checkpoint.load_matching(job.ckpt.path, job.ckpt.header)
    if saved is None:
        return job, None
    try:
        job.load(saved["state"], job.plan.total)
        return job, job.trainer.steps
    except Exception as exc:  # noqa: BLE001 - whatever is wrong with the file, start over rather than fail
        job.trainer.close()
        fresh = SeedJob(build(), job.plan, job.channel, job.ckpt, job.started)
        fresh.note = f"checkpoint could not be restored ({type(exc).__name__}: {str(exc)[:200]}); started from scratch"
        return fresh, None


def train(build: Callable[[], TrainerT], plan: Plan, *, channel: Any = None, ckpt: Checkpointing | None = None,
          schedule: Sequence[Mapping] = (), tune: Mapping | None = None, start_state: Mapping | None = None,
          before: Callable[[TrainerT], None] | None = None,
          after: Callable[[TrainerT, SeedJob], None] | None = None) -> tuple[TrainerT | None, Ended]:
    """Train ``build()``'s trainer by ``plan`` (see the module docstring); returns it (closed; None when the
    deadline had passed before it was built) and how it ended. ``before(trainer)`` runs once after any
    restore, before training (PBT: copies and explored values); ``after(trainer, job)`` once at the end,
    before the trainer is closed (PBT: the ready point's state)."""
    started = time.time()
    if plan.deadline is not None and started >= plan.deadline:
        return None, Ended(Stop(StopReason.DEADLINE), [], times={"wall_s": 0.0})
    job, resumed_from = _resume(SeedJob(build(), plan, channel, ckpt, started), build, start_state)
    # build()'s trainer: the job's, or the one _resume rebuilt with build()
    trainer, until = cast(TrainerT, job.trainer), plan.until or plan.total
    try:
        if before is not None:
            before(trainer)
        hook = _tuner(tune, job) if tune else None
        trainer.begin(plan.total, resumed_from is not None)
        job.run_until(until, Schedule(schedule), hook)
        if job.stop is None and job.live() and (plan.always_evaluate_at_end or job.evaluated_at() < trainer.steps):
            job.evaluate()  # the final policy is always evaluated, unless the deadline hits
        if job.ckpt and job.stop is None and job.live() and trainer.steps < plan.total:
            job.save_checkpoint()  # paused at ``until`` (a ladder's rung): a promotion continues from here
        ended = Ended(job.stop, job.evals, job.last, job.eval_s, job.spent(), resumed_from, job.note)
        trainer.finish(ended)
        if after is not None:
            after(trainer, job)
        return trainer, ended
    finally:
        trainer.close()


def _tuner(tune: Mapping, job: SeedJob) -> Any:
    from automl.train.tuning import TuneHook  # only tuned runs load it

    return TuneHook(tune, job)


def results(trainer: Trainer | None, ended: Ended, seeds: Sequence[int], **extra: Any) -> list[SeedResult]:
    """One SeedResult per seed from how the loop ended (a failed seed fails alone)."""
    peak = memory.peak_memory_mb()  # the job's (a batch's seeds share it, as they share wall_s)
    if trainer is None:  # the deadline had passed before anything was built
        return [seed_result(s, "stopped_at_deadline", StopReason.DEADLINE, [], **ended.times, peak_memory_mb=peak)
                for s in seeds]
    timing = {**ended.times, "eval_s": ended.eval_s, "resumed_from": ended.resumed_from,
              "checkpoint_note": ended.note, "peak_memory_mb": peak, **extra}
    failed = trainer.failed()
    out = []
    for s, seed in enumerate(seeds):
        if s in failed:
            steps, detail = failed[s]
            out.append(seed_result(seed, "failed", StopReason.NON_FINITE, ended.evals[s], steps=steps, reason=detail,
                                   **timing))
        else:
            stop = ended.stop or Stop(StopReason.STEP_BUDGET)
            out.append(seed_result(seed, seed_state(stop.reason), stop, ended.evals[s], steps=trainer.steps, **timing))
    return out
