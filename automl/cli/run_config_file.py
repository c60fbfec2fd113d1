"""``automl run --config FILE``: seed 003's ``hyperparameter_optimization:`` file as `automl run` flags.

The file's values fill in what the command line left unsaid (a flag given on the command line wins);
its search space becomes the run's preset (mode ``only``: the file's parameters are searched, the rest
of the env's space stays at its priors), so the run records and resumes it like any preset file.
The mapping of each key is ``automl.core.seed003.run_flags`` (README: "Seed 003's config file").
"""
from __future__ import annotations

import argparse
from collections.abc import Iterable

from automl.core import seed003
from automl.core.errors import AutoMLError


def given_flags(parser, argv: Iterable[str]) -> set[str]:
    """The dests of the `run` options written on the command line (``--flag`` or ``--flag=value``)."""
    tokens = [t.split("=", 1)[0] for t in argv if t.startswith("--")]
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    run = subs[0].choices["run"] if subs else parser
    return {a.dest for a in run._actions for o in a.option_strings if o in tokens}


def config_flags(path: str, given: set[str]) -> dict:
    """RunConfig fields from the file, except those the command line gave; one line for a bad file."""
    if "preset" in given:
        raise AutoMLError(f"--config: {path} sets the search space, so does --preset (allowed: one of them)")
    flags = seed003.run_flags(seed003.load(path))
    return {k: v for k, v in flags.items() if k not in given}
