"""automl.core.values: the one finite test, plain converter, value text and CSV cell (issue 13, small duplicates),
pinned to what each former copy did, and the one state-name map and list encoding."""
from __future__ import annotations

import dataclasses
import enum
import math

import numpy as np
import pytest
import yaml

from automl.core.values import KEEP, csv_cell, fmt_interval, fmt_value, is_finite_number, plain


def test_is_finite_number():
    for value in (0, 1, -2.5, 1e300, np.float64(0.5)):
        assert is_finite_number(value)
    for value in (None, True, False, "1", float("nan"), float("inf"), -math.inf, [1], np.float64("nan")):
        assert not is_finite_number(value)


@dataclasses.dataclass
class _Point:
    x: float
    tags: tuple


class _Level(enum.IntEnum):
    LOW = 1


def test_plain_state_file_style():
    # what automl.run.state.to_plain does: dataclasses as dicts, str keys, tuples as lists, numpy scalars as
    # Python numbers, NaN kept, int/float subclasses as int/float (yaml.safe_dump takes them), others as str
    doc = {1: (np.int64(3), np.float32(0.5), np.bool_(True)), "p": _Point(np.float64(2.0), (1, 2)),
           "nan": float("nan"), "lvl": _Level.LOW, "path": object, "none": None}
    out = plain(doc)
    assert out["1"] == [3, 0.5, True] and type(out["1"][0]) is int and type(out["1"][2]) is bool
    assert out["p"] == {"x": 2.0, "tags": [1, 2]} and type(out["p"]["x"]) is float
    assert math.isnan(out["nan"]) and out["lvl"] == 1 and type(out["lvl"]) is int
    assert out["path"] == str(object) and out["none"] is None
    yaml.safe_dump(out)  # every value is a builtin
    assert plain(np.array(2.5)) == 2.5
    assert plain(np.array([1, 2])) == str(np.array([1, 2]))  # not a scalar: the fallback text


def test_plain_json_style_of_the_api():
    from automl.api import study_io

    out = study_io.plain({"a": (1, 2.5), "nan": float("nan"), "inf": -math.inf, "np": np.float32(1.5),
                          "obj": object, "s": "x", "b": False})
    assert out == {"a": [1, 2.5], "nan": None, "inf": None, "np": 1.5, "obj": repr(object), "s": "x", "b": False}
    assert plain(float("nan"), non_finite=None) is None and math.isnan(plain(float("nan"), non_finite=KEEP))


def test_plain_with_a_leaf_decoder_as_the_analysis_report():
    from automl.analysis import report

    assert report._plain("64-64") == [64, 64]
    assert report._plain((np.float64(0.1), np.float64(0.2))) == [0.1, 0.2]
    assert report._plain(np.int64(7)) == 7 and report._plain("tpe") == "tpe"


def test_fmt_value_and_interval():
    assert fmt_value(None) == "-" and fmt_value(0.123456) == "0.123" and fmt_value(3) == "3"
    assert fmt_value(0.123456, ".4g") == "0.1235" and fmt_value("a") == "a"
    assert fmt_value(3e-4, "g", none="None", quote=True) == "0.0003"
    assert fmt_value("linear", "g", quote=True) == "'linear'" and fmt_value(None, none="None") == "None"
    assert fmt_interval([0.5, None]) == "[0.5, -]" and fmt_interval((0.12345, 1.0), ".3f") == "[0.123, 1.000]"


def test_csv_cell():
    assert csv_cell(None) == "" and csv_cell([64, 64]) == "[64, 64]" and csv_cell((1, 2)) == "[1, 2]"
    assert csv_cell({"a": 1}) == '{"a": 1}' and csv_cell(0.5) == 0.5 and csv_cell("x") == "x"


def test_one_state_name_map():
    from optuna.trial import TrialState

    from automl.search.states import STATE_NAMES, state_name

    assert [state_name(s) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL,
                                    TrialState.RUNNING, TrialState.WAITING)] == \
        ["complete", "pruned", "failed", "running", "waiting"]
    assert set(STATE_NAMES) == set(TrialState)


@pytest.mark.parametrize("value, encoded", [([256, 128], "256-128"), ((64,), "64"), ([], "[]"), (0.5, 0.5), ("x", "x")])
def test_state_file_params_encode_as_the_study_does(value, encoded):
    from automl.analysis import run_data
    from automl.search import space

    assert space.encode_choice(value) == encoded
    assert run_data._state_record({"params": {"policy_hidden_layer_sizes": value}}, 0).vector == \
        {"policy_hidden_layer_sizes": encoded}
