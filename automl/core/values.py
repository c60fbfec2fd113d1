"""Plain values: the finite-number test, the YAML/JSON-safe conversion, short text of a value and CSV cells.

One of each for the whole project (the state file, analysis, the API, the command line and the live
view use these). Standard library only.
"""
from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from typing import Any, TypeGuard

KEEP = object()  # plain(non_finite=KEEP): NaN and ±inf stay floats (YAML writes .nan / .inf)


def is_finite_number(value: Any) -> TypeGuard[int | float]:
    """An int or float (not a bool) that is neither NaN nor ±inf."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def plain(value: Any, *, non_finite: Any = KEEP, other: Callable[[Any], Any] = str,
          leaf: Callable[[Any], Any] | None = None) -> Any:
    """A YAML/JSON-safe copy in builtins: dataclasses and dicts as dicts with str keys, tuples as lists,
    numpy/torch scalars as Python numbers, int/float subclasses as int/float.

    ``non_finite``: what NaN and ±inf become (``KEEP`` them, or e.g. None for JSON); ``other``: the text
    of any other object (``str``, or ``repr``); ``leaf``: applied to every scalar left (e.g. decoding
    '256-128' back to a list)."""
    def again(v: Any) -> Any:
        return plain(v, non_finite=non_finite, other=other, leaf=leaf)

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {str(k): again(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [again(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes, int, float)):
        try:
            value = value.item()  # numpy / torch scalar
        except (TypeError, ValueError):  # e.g. an array of several values
            return other(value)
    if isinstance(value, bool) or value is None or isinstance(value, str):
        pass
    elif isinstance(value, int):
        value = int(value)
    elif isinstance(value, float):
        value = float(value)
        if non_finite is not KEEP and not math.isfinite(value):
            return non_finite
    else:
        return other(value)
    return leaf(value) if leaf is not None else value


def fmt_value(value: Any, spec: str = ".3g", *, none: str = "-", quote: bool = False) -> str:
    """Short text of a value for tables: floats by the format ``spec``, None as ``none``, strings as
    repr if ``quote``, anything else as str."""
    if value is None:
        return none
    if isinstance(value, float):
        return format(value, spec)
    return repr(value) if quote and isinstance(value, str) else str(value)


def fmt_interval(interval, spec: str = ".3g", *, none: str = "-") -> str:
    """'[lo, hi]' (the first two items of ``interval``) with both ends as ``fmt_value`` writes them."""
    return f"[{fmt_value(interval[0], spec, none=none)}, {fmt_value(interval[1], spec, none=none)}]"


def csv_cell(value: Any) -> Any:
    """A CSV cell: lists, tuples and dicts as JSON (so they parse back), None as empty, others as they are."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return value
