"""The execution layer: runs jobs in worker processes and carries their reports back.

Owns the executor (``executor``: local worker processes, one torch thread each, timeouts,
cancellation, workers that die with the driver), the worker side (``workers``: channels for
reports and stop requests), the job/result types (``jobs``) and the Ray backend (``ray_backend``: seed
jobs as Ray tasks, imported only for ``--executor ray``), and which GPU a job gets (``devices``:
--devices, --gpus-per-job). Knows nothing about what a job trains: it gets the job function as a
reference. May import automl.core only; never Optuna.
"""
