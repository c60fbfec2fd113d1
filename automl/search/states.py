"""Optuna's trial states by the names automl writes (state file, analysis, the API's trial records)."""
from __future__ import annotations

from optuna.trial import TrialState

STATE_NAMES = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed",
               TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}


def state_name(state: TrialState) -> str:
    """'complete', 'pruned', 'failed', 'running' or 'waiting'; any other state by its Optuna name in lower case."""
    return STATE_NAMES.get(state, state.name.lower())
