"""Several processes creating the same new Optuna storage at the same instant all succeed (issue 11.1).

Both ways a storage is opened are raced: the CLI's (automl.search.studies.open_study on a URL) and the
Python API's (automl.api.study_io.open_study on a study directory).
"""
from __future__ import annotations

import multiprocessing
import sqlite3

import optuna
import pytest

from _storage_race_worker import KINDS, open_new_storages

PROCESSES, ROUNDS = 4, 20


def test_same_new_storage_opened_by_four_processes_at_once(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(PROCESSES), ctx.Queue()
    procs = [ctx.Process(target=open_new_storages, args=(str(tmp_path), ROUNDS, barrier, results))
             for _ in range(PROCESSES)]
    for p in procs:
        p.start()
    try:
        got = [results.get(timeout=300) for _ in range(PROCESSES * ROUNDS * len(KINDS))]
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    errors = [(r, kind, err) for r, kind, _, err in got if err]
    assert not errors, f"{len(errors)} of {len(got)} opens failed, e.g. {errors[0]}"
    for r in range(ROUNDS):
        for kind, (db_name, study_name) in KINDS.items():
            ids = {study_id for rr, k, study_id, _ in got if (rr, k) == (r, kind)}
            assert len(ids) == 1, f"round {r} {kind}: the processes got different studies {ids}"
            db = tmp_path / f"round_{r}" / db_name
            assert optuna.get_all_study_names(f"sqlite:///{db}") == [study_name]
            with sqlite3.connect(db) as con:  # the schema was stamped once
                assert con.execute("SELECT COUNT(*) FROM alembic_version").fetchone() == (1,)
                assert con.execute("SELECT COUNT(*) FROM version_info").fetchone() == (1,)
    assert [p.exitcode for p in procs] == [0] * PROCESSES


def test_a_bad_storage_url_is_still_one_line_and_not_retried():
    from automl.search import studies
    from automl.core.errors import AutoMLError

    for url, why in [("notaurl", "ArgumentError"), ("sqlite:////nonexistent/dir/study.db", "unable to open")]:
        with pytest.raises(AutoMLError) as err:
            studies.open_study(url, studies.RECORD)
        assert str(err.value).startswith(f"--storage: cannot open {url!r}: ") and why in str(err.value)
        assert "\n" not in str(err.value)
        assert not studies.is_creation_race(err.value.__context__)  # failed at once, no backoff
