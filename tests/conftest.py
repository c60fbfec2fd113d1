"""Shared test setup."""
import os

import pytest
import torch

MISSING_TAG = "[missing:"  # tests/_servers.py: a skip for a component CI installs carries it


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """As train_seed and the executor's workers do: one torch thread per process.

    Small env and SB3 ops stall on OpenMP workers when the machine is busy.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI=true a skip for a missing component (its reason tagged "[missing:<component>]") fails the
    test: CI installs Ray, psycopg2 and PostgreSQL, so such a skip means a broken install, not a choice."""
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or hasattr(report, "wasxfail") or os.environ.get("CI") != "true":
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if MISSING_TAG in reason:
        report.outcome = "failed"
        report.longrepr = f"{reason} -- CI=true: CI installs this component, so this test must run, not skip"
