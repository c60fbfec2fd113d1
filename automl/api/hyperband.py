"""Keras Tuner's Hyperband schedule (seed 002: ``Hyperband(build, objective, max_epochs=..., factor=...)``).

``schedule(max_epochs, factor)`` is Keras Tuner's ``HyperbandOracle`` arithmetic: brackets from the most
aggressive down; bracket ``b`` has ``b + 1`` rounds; round ``r`` trains ``size(b, r)`` configs for
``epochs(b, r)`` epochs, and the best ``size(b, r + 1)`` of them go on to the next round::

    brackets  = how often max_epochs divides by factor down to 1 (one more than floor(log_factor max_epochs))
    size(b,r) = ceil(ceil(1 + log_factor(max_epochs)) / factor**b * factor**(b - r))
    epochs(b,r) = ceil(max_epochs / factor**(b - r))

``run_schedule`` runs it on a tuner's study: round 0 of a bracket asks the sampler for new configs, a later
round enqueues the best configs of the round before (``study.enqueue_trial``) at their new epochs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, cast

import optuna

from automl.core.errors import AutoMLError


@dataclass(frozen=True)
class Round:
    """One round of one bracket: ``size`` configs for ``epochs`` epochs each."""

    bracket: int
    round: int
    size: int
    epochs: int


def schedule(max_epochs: int, factor: int = 3, min_epochs: int = 1) -> list[Round]:
    """Every round of one Hyperband iteration, in the order they run (Keras Tuner's numbers)."""
    for name, value, low in (("max_epochs", max_epochs, 1), ("factor", factor, 2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise AutoMLError(f"Hyperband: {name}: {value!r} (allowed: an integer >= {low})")
    brackets, epochs = 0, float(max_epochs)
    while epochs >= min_epochs:
        epochs /= factor
        brackets += 1
    end0 = math.ceil(1 + math.log(max_epochs, factor))
    out = []
    for b in reversed(range(brackets)):
        for r in range(b + 1):
            size = math.ceil(end0 / factor ** b * factor ** (b - r))
            out.append(Round(b, r, size, math.ceil(max_epochs / factor ** (b - r))))
    return out


def _ranked(study: optuna.Study, numbers: range, maximize: bool) -> list[optuna.trial.FrozenTrial]:
    done = [t for t in study.get_trials(deepcopy=False) if t.number in numbers
            and t.state == optuna.trial.TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)]
    def value(t: optuna.trial.FrozenTrial) -> float:
        return cast(float, t.value)  # done keeps finite values only

    return sorted(done, key=lambda t: -value(t) if maximize else value(t))


def run_schedule(tuner: Any, search: Callable[..., Any], kwargs: dict) -> Any:
    """Run ``tuner.rounds`` through ``search(**kwargs, epochs=...)`` (the tuner's own search loop), each round
    a batch of trials; returns the last SearchResult (the whole study)."""
    from dataclasses import replace

    from automl.api import study_io

    result, last = None, None  # last: the trial numbers the round before ran
    for rnd in tuner.rounds:
        study = tuner.engine.study
        start = len(study.trials) if study is not None else _stored(tuner)
        finished = study_io.finished(study) if study is not None else start
        size = rnd.size
        if rnd.round > 0:
            maximize = tuner.config.direction in ("max", "maximize")
            best: list[optuna.trial.FrozenTrial] = _ranked(study, last, maximize)[:rnd.size] if study is not None and last else []
            for t in best:
                study.enqueue_trial(dict(t.params), skip_if_exists=False)
            size = len(best)
        if size == 0:
            last = range(start, start)
            continue
        tuner.engine.config = tuner.config = replace(tuner.config, n_trials=finished + size)
        tuner._round = rnd
        result = search(**kwargs, epochs=rnd.epochs)
        last = range(start, len(tuner.engine.study.trials))
    tuner._round = None
    return result if result is not None else tuner.results()


def _stored(tuner: Any) -> int:
    """Trials stored before this search (0 when it starts over)."""
    if tuner._overwrite:
        return 0
    try:
        return len(tuner.results().trials)
    except AutoMLError:
        return 0
