"""Module-level objectives for the Python API's resume tests: importable from the study's record alone."""
from __future__ import annotations


def quadratic(p):
    """Maximised at x = 0.3 (value 0)."""
    return -(p["x"] - 0.3) ** 2


def two_costs(p):
    """Seed 003's multi-objective form: a tuple of values to minimise."""
    return p["x"], 1.0 - p["x"] + p["y"]
