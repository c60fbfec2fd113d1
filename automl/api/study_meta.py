"""What ``SearchEngine.resume(study_path)`` needs, kept in the study itself (seed 000: resume from the study
alone): the objective as ``module:qualname``, the space (``SearchSpace.to_dict``) and the SearchConfig, in
the study's user attr ``api``. A lambda, a nested function or a space with a callable condition cannot be
stored: the attr then says why, and resume asks for what is missing in one line.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from automl.api import study_io
from automl.core.errors import AutoMLError

ATTR = "api"


def objective_ref(fn: Callable) -> tuple[str | None, str]:
    """(``module:qualname``, '') for an importable function, else (None, why not)."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not module or not qualname:
        return None, f"the objective {fn!r} has no module:qualname"
    if "<lambda>" in qualname or "<locals>" in qualname:
        return None, f"the objective {module}:{qualname} is a lambda or a nested function, which cannot be imported"
    return f"{module}:{qualname}", ""


def record(study: optuna.Study, objective_fn: Callable, space, cfg) -> None:
    """Store the objective's reference, the space and the config in the study (the search's first act)."""
    ref, why = objective_ref(objective_fn)
    try:
        space_dict, space_why = space.to_dict(), ""
    except AutoMLError as exc:
        space_dict, space_why = None, str(exc)
    config = {f.name: study_io.plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    study.set_user_attr(ATTR, {"objective": ref, "objective_note": why, "space": space_dict,
                               "space_note": space_why, "config": config})


def stored(db: Path, name: str) -> dict:
    """The ``api`` attr of study ``name`` in ``db`` ({} when the study was not made by SearchEngine.search)."""
    try:
        study = optuna.load_study(study_name=name, storage=study_io.storage(db))
    except Exception as exc:  # storage errors come in many library types
        raise AutoMLError(f"{db}: cannot open study {name!r} ({study_io.one_line(exc)})") from None
    return dict(study.user_attrs.get(ATTR) or {})


def objective(meta: dict, where: str) -> Callable:
    """Import the stored objective; one line saying what is needed when it cannot be."""
    from automl.exec.workers import resolve

    ref = meta.get("objective")
    if not ref:
        why = meta.get("objective_note") or "the study records no objective (it was not made by SearchEngine.search)"
        raise AutoMLError(f"{where}: resume: {why} (allowed: resume(study_path, objective_fn), or an objective "
                          f"defined at the top level of a module)")
    try:
        return resolve(ref)
    except Exception as exc:  # ImportError, AttributeError: the module moved or is not on sys.path
        raise AutoMLError(f"{where}: resume: the study's objective {ref} cannot be imported ({study_io.one_line(exc)}) "
                          f"(allowed: make {ref.split(':')[0]} importable, or resume(study_path, objective_fn))") from None


def space(meta: dict, where: str):
    """The stored SearchSpace; one line saying what is needed when there is none."""
    from automl.api.search_space import SearchSpace

    if not meta.get("space"):
        why = meta.get("space_note") or "the study records no space"
        raise AutoMLError(f"{where}: resume: {why} (allowed: resume(study_path, objective_fn, space))")
    return SearchSpace.from_dict(meta["space"])


def config(meta: dict, given, defaults) -> Any:
    """The stored SearchConfig, with every field the caller's config sets away from the defaults winning."""
    stored_fields = meta.get("config") or {}
    changes = {}
    for f in dataclasses.fields(given):
        mine = getattr(given, f.name)
        if f.name in stored_fields and mine == getattr(defaults, f.name):
            value = stored_fields[f.name]
            changes[f.name] = tuple(value) if isinstance(value, list) else value
    return dataclasses.replace(given, **changes)
