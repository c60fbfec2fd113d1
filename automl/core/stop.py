"""Why a seed job stopped: ``StopReason`` (an enum) and ``Stop``, the request that carries it on a job's channel.

The driver asks a running job to stop with a ``Stop``: its reason is one of the enum's values, its text is
what the seed's record says (``"pruned at evaluation 3"``, ``"interrupted"``). The worker reads the reason,
never the text: ``seed_state`` is the one mapping from a reason to the seed's state. A plain string sent
by an older caller is read by ``Stop.of``: the exact spelling of a reason is that reason, any other text is
a prune (the one stop a driver makes because of the config itself). The YAML spelling of a seed's
``state`` and ``stop_reason`` is unchanged.
"""
from __future__ import annotations

from enum import Enum
from typing import overload


class StopReason(str, Enum):
    """How a seed job ended; the value is the spelling in results and on the wire."""

    STEP_BUDGET = "step_budget"    # trained every step it was given
    PRUNED = "pruned"              # the pruner (or a caller's own rule) stopped the config
    DEADLINE = "deadline"          # the run's (or the job's) time ran out
    INTERRUPTED = "interrupted"    # the user stopped the run (Ctrl-C, SIGTERM)
    SHUTDOWN = "shutdown"          # the executor is closing
    DRIVER_GONE = "driver gone"    # the driver's end of the channel closed
    NON_FINITE = "non_finite"      # training diverged (nan/inf)
    FAILED = "error"               # the job raised
    LOST = "lost"                  # the job's worker or node was lost

    def __str__(self) -> str:
        return self.value


# the seed state each reason ends in (results.yaml's spelling; core.record.State names the same values)
_STATES = {StopReason.STEP_BUDGET: "complete", StopReason.PRUNED: "pruned", StopReason.NON_FINITE: "failed",
           StopReason.FAILED: "failed", StopReason.LOST: "failed"}


def seed_state(reason: StopReason) -> str:
    """A seed's state for a job that stopped for ``reason``: a stop the config did not cause (deadline,
    interrupt, shutdown) is ``stopped_at_deadline``, never ``pruned``."""
    return _STATES.get(reason, "stopped_at_deadline")


class Stop(str):
    """A stop request: the text a seed's record keeps (a ``str``, so it compares and prints as that text) and
    its ``reason``. Pickles as (reason, text), so it crosses process and Ray boundaries intact."""

    reason: StopReason

    def __new__(cls, reason: StopReason | str, text: str | None = None) -> "Stop":
        why = StopReason(reason)
        obj = super().__new__(cls, text or why.value)
        obj.reason = why
        return obj

    def __reduce__(self):
        return (Stop, (self.reason, str(self)))

    @overload
    @classmethod
    def of(cls, value: Stop | StopReason | str) -> Stop: ...
    @overload
    @classmethod
    def of(cls, value: None) -> None: ...
    @overload
    @classmethod
    def of(cls, value: Stop | StopReason | str | None) -> Stop | None: ...

    @classmethod
    def of(cls, value: "Stop | StopReason | str | None") -> "Stop | None":
        """A Stop from what a channel or a caller holds (None stays None; see the module docstring for text)."""
        if value is None or isinstance(value, Stop):
            return value
        if isinstance(value, StopReason):
            return cls(value)
        text = str(value)
        try:
            return cls(StopReason(text), text)
        except ValueError:
            return cls(StopReason.PRUNED, text)
