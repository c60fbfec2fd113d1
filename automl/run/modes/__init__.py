"""The run modes, one module each, found by name: ``MODES[name]`` is the ``--mode name`` object.

Adding a mode is its module (a ``Mode`` subclass and ``MODE = ...``, see ``base``) and its name in
``_NAMES`` below; nothing else branches on the mode's name.
"""
from __future__ import annotations

from importlib import import_module

from automl.core.errors import AutoMLError
from automl.run.modes.base import Flag, Mode, Stage

_NAMES = (
    "stage",
    "joint",
    "hp",
    "reward",
    "pbt",
)  # the order --help and the errors list them in

MODES: dict[str, Mode] = {name: import_module(f"{__name__}.{name}").MODE for name in _NAMES}


def mode_named(name: str) -> Mode:
    """The mode object of ``--mode name``; an unknown name is one line with the allowed values."""
    try:
        return MODES[name]
    except (KeyError, TypeError):
        raise AutoMLError(f"--mode: unknown value {name!r} (allowed: {', '.join(MODES)})") from None


def mode_flags() -> list[tuple[Mode, Flag]]:
    """Every mode's own flags (``automl run`` adds them; their values go to ``RunConfig.mode_options``)."""
    return [(m, f) for m in MODES.values() for f in m.flags]


def help_text() -> str:
    """``--mode``'s help: every mode with its summary."""
    return " | ".join(f"{m.name} ({m.summary})" if m.summary else m.name for m in MODES.values())


__all__ = ["MODES", "Flag", "Mode", "Stage", "help_text", "mode_flags", "mode_named"]
