"""The one seed-job loop (automl/train/loop.py) on both trainers: stop reasons on the channel (automl/core/stop.py),
the boundary where a stop or the deadline takes effect (pinned, on a fake clock), and one code path for
continuing a saved state.

Issue 26 defect 4: a stop request's reason travels as an enum; ``interrupted`` comes back as ``interrupted``
(the seed is ``stopped_at_deadline``, not ``pruned``), through the real executor too.
"""
from __future__ import annotations

import pickle
import time

import pytest

from automl.core.stop import Stop, StopReason, seed_state
from automl.exec.executor import Done, Job, LocalProcessExecutor, Report
from automl.exec.workers import LocalChannel
from automl.train import loop
from automl.train.sb3_train import build_run, run_job, train_seed
from automl.train.torch_train import run_job_torch, train_seed_torch

# 8 envs x 32 steps = 256 steps per rollout (both trainers: n_steps * num_envs)
CART = dict(num_envs=8, rollouts=32, mini_batches=2, learning_epochs=2, learning_rate=1e-3)
RUN = dict(env="cartpole", total_steps=8 * 256, eval_every=512, eval_episodes=4, device="cpu")
TRAINERS = {"sb3": train_seed, "torch": train_seed_torch}
JOBS = {"sb3": run_job, "torch": run_job_torch}


def test_a_stop_carries_its_reason_and_its_text():
    assert Stop.of("interrupted").reason is StopReason.INTERRUPTED and Stop.of("deadline").reason is StopReason.DEADLINE
    assert Stop.of("pruned at evaluation 3").reason is StopReason.PRUNED   # a driver's own text: a prune
    assert Stop.of(StopReason.SHUTDOWN) == "shutdown" and Stop.of(None) is None
    stop = Stop(StopReason.PRUNED, "pruned at evaluation 2")
    assert stop == "pruned at evaluation 2" and type(str(stop)) is str       # the record keeps the text
    back = pickle.loads(pickle.dumps(stop))
    assert (back, back.reason) == ("pruned at evaluation 2", StopReason.PRUNED)
    assert [seed_state(r) for r in (StopReason.PRUNED, StopReason.DEADLINE, StopReason.INTERRUPTED,
                                    StopReason.STEP_BUDGET, StopReason.NON_FINITE)] == \
        ["pruned", "stopped_at_deadline", "stopped_at_deadline", "complete", "failed"]


class _StopAfter(LocalChannel):
    def __init__(self, n: int, reason):
        super().__init__()
        self.n, self.reason = n, reason

    def report(self, payload) -> None:
        super().report(payload)
        if len(self.reports) >= self.n:
            self.stop(self.reason)


@pytest.mark.parametrize("trainer", ["sb3", "torch"])
@pytest.mark.parametrize("reason, state", [("interrupted", "stopped_at_deadline"), ("deadline", "stopped_at_deadline"),
                                           (Stop(StopReason.PRUNED, "pruned at evaluation 1"), "pruned"),
                                           ("pruned by median", "pruned")])
def test_a_stop_takes_effect_at_the_boundary_of_its_evaluation_with_its_reasons_state(trainer, reason, state):
    result = TRAINERS[trainer](CART, seed=0, **RUN, channel=_StopAfter(2, reason))
    assert (result.state, result.stop_reason) == (state, str(reason))
    assert result.steps == 1024 and [s for s, _ in result.evals] == [512, 1024]   # no step past that boundary


def _first_report_then_stop(fn, reason) -> Done:
    """One real seed job on a worker process; ``reason`` is sent when its first evaluation is reported."""
    with LocalProcessExecutor(1) as ex:
        ex.submit(Job("seed", fn, dict(params=CART, seed=0, **{**RUN, "total_steps": 10**6})))
        deadline = time.time() + 300  # a generous ceiling: the event, not the speed, is what is waited for
        while time.time() < deadline:
            for event in ex.poll(1.0):
                if isinstance(event, Report):
                    ex.request_stop("seed", reason)
                elif isinstance(event, Done):
                    return event.result
    raise AssertionError("the job never finished")


@pytest.mark.parametrize("trainer", ["sb3", "torch"])
def test_an_interrupt_sent_through_the_executor_comes_back_as_interrupted(trainer):
    # what Scheduler.stop_all("interrupted") sends each running job (the driver on Ctrl-C)
    done = _first_report_then_stop(JOBS[trainer], "interrupted")
    assert done.ok and done.stop_reason == "interrupted" and done.stop_reason.reason is StopReason.INTERRUPTED
    value = done.value
    assert (value["state"], value["stop_reason"]) == ("stopped_at_deadline", "interrupted")   # never "pruned"
    # stopped at a rollout boundary (256 steps) after the reported evaluation: how many later is the pipe's timing
    assert value["steps"] >= 512 and value["steps"] % 256 == 0 and value["steps"] < 10**6


def test_continuing_a_saved_state_to_a_longer_run_equals_training_it_in_one_go():
    """The one path a checkpoint resume, a PBT ready point and a promotion take: a state saved at 512 steps of a
    1024-step run, loaded into a fresh trainer and continued to 1024 steps of the same run, is the run in one go."""
    def build():
        return build_run(CART, "cartpole", seed=0, eval_episodes=4, device="cpu")

    plan = loop.Plan(1024, 512)
    saved = {}
    loop.train(build, loop.Plan(1024, 512, until=512), after=lambda t, job: saved.update(job.snapshot()))
    whole_trainer, whole = loop.train(build, plan)
    later_trainer, later = loop.train(build, plan, start_state=saved)
    assert later.resumed_from == 512 and whole.stop is later.stop is None
    assert [e.true_metric for e in later.evals[0]] == [e.true_metric for e in whole.evals[0]]
    assert [s.steps for s in later.evals[0]] == [512, 1024]


@pytest.mark.parametrize("flag, env, trainer", [([], "cartpole", "torch"), (["--trainer", "sb3"], "cartpole", "sb3"),
                                                ([], "CartPole-v1", "sb3")])
def test_automl_train_picks_the_trainer_as_a_run_does(tmp_path, flag, env, trainer):
    from _cli import TINY, automl
    import yaml

    r = automl("train", "--config", TINY, "--env", env, "--seed-list", "0", "--trial-steps", "512", *flag,
               "--run-dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    res = yaml.safe_load((tmp_path / "results.yaml").read_text())
    assert res["trainer"] == trainer and res["seeds"][0]["state"] == "complete"


def test_the_torch_trainer_on_a_gymnasium_id_is_one_line():
    from _cli import TINY, automl

    r = automl("train", "--config", TINY, "--env", "CartPole-v1", "--trainer", "torch", "--trial-steps", "512")
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1
    assert "--trainer torch: env 'CartPole-v1' is not a batched task (allowed: cartpole, navigation, acrobot, pendulum" in r.stderr


@pytest.mark.parametrize("trainer", ["sb3", "torch"])
def test_a_promoted_config_equals_an_uninterrupted_run_of_the_same_length(trainer, tmp_path):
    """A fidelity ladder's promotion: paused at a rung (until_steps, checkpoint at the pause), then continued to
    the top rung from that checkpoint, it trains only the extra steps and ends where one run of that length does."""
    train, ckpt = TRAINERS[trainer], str(tmp_path / "config.pt")
    whole = train(CART, seed=3, **RUN)
    rung = train(CART, seed=3, **RUN, checkpoint_path=ckpt, until_steps=3 * 512)
    assert (rung.state, rung.steps, rung.resumed_from) == ("complete", 1536, None)
    assert [s for s, _ in rung.evals] == [512, 1024, 1536]
    top = train(CART, seed=3, **RUN, checkpoint_path=ckpt)
    assert (top.state, top.steps, top.resumed_from) == ("complete", 2048, 1536)   # only the extra 512 steps trained
    assert top.evals == whole.evals and top.episode_reward_mean == whole.episode_reward_mean
    assert [s for s, _ in top.evals] == [512, 1024, 1536, 2048]
