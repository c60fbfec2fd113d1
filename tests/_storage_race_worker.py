"""Child process of test_storage_race: opens a new storage at the same instant as its siblings.

Kept apart from the test module so a spawned child imports only Optuna and the storage helpers.
"""
from pathlib import Path

KINDS = {"cli": ("study.db", "automl"), "api": ("race.db", "race")}  # open_study path -> (file, study name)


def open_new_storages(root: str, rounds: int, barrier, results) -> None:
    """Each round, for both open_study paths: wait for every sibling, then open the same new storage.

    Reports (round, kind, study id, error) for each open.
    """
    from automl.search import studies
    from automl.api import study_io

    for r in range(rounds):
        run_dir = Path(root) / f"round_{r}"
        run_dir.mkdir(parents=True, exist_ok=True)
        for kind in KINDS:
            barrier.wait(timeout=120)
            try:
                if kind == "cli":
                    study = studies.open_study(studies.storage_url(run_dir, None), studies.RECORD)
                else:
                    study = study_io.open_study(run_dir, "race", direction="maximize")
                results.put((r, kind, study._study_id, None))
            except Exception as exc:  # reported to the parent, which fails the test with it
                results.put((r, kind, None, f"{type(exc).__name__}: {exc}"))
