"""Navigation is learnable and its reward weights matter (SB3 PPO, the space's prior HPs, 2M steps).

Slow (about 4-10 minutes per run on 2 CPU cores): run with ``pytest -m slow tests/slow``.
The same runs, with a table, are in bench/navigation_weights.py.

The margin: measured on 2026-11-24 at 0.782 vs 0.569 (+0.21), on the navigation env before the ray-casting
fix of 2026-11-27 (85751c6: phantom near-miss circles behind the robot made the rays wrong); on the fixed env
the same seeds give 0.699 vs 0.596 (+0.10; SB3 on CPU with one thread is deterministic, so a rerun gives the
same numbers). The better weighting still learns more on every run so far; the margin asked is half the
measured one.
"""
import multiprocessing as mp
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import navigation_weights  # noqa: E402

SEEDS = (0, 1, 2)


def test_default_weights_learn_and_better_weights_learn_more():
    _, _, steps = navigation_weights.prior_setup()
    jobs = [(name, seed, steps) for name in ("default", "better") for seed in SEEDS]
    with mp.get_context("spawn").Pool(2) as pool:
        results = pool.map(navigation_weights.run, jobs)
    mean = {name: sum(r["success_rate"] for r in results if r["weights"] == name) / len(SEEDS)
            for name in ("default", "better")}
    print(results, mean)
    assert mean["default"] >= 0.4
    assert mean["better"] >= mean["default"] + 0.05
