"""Budget overrun and driver overhead of a real staged run (prints figures, asserts nothing).

    .venv/bin/python bench/driver_budget.py --budget-hours 0.17 --env cartpole

Overrun = process exit time - the run's deadline (target <= max(1% of budget, 15 s)).
Driver overhead = time the driver spends in its own bookkeeping (Optuna ask/tell, state and
event writes, proposals) / wall time (target < 2%); worker utilization = share of worker time
spent inside seed jobs (the rest: process start, calibration, waiting at phase ends).
Baseline for comparison: rl-zoo3's `-optimize --timeout 480` ran 663 s here (no hard budget).
"""
import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget-hours", type=float, default=0.17)
    ap.add_argument("--env", default="cartpole")
    ap.add_argument("--hp-trials", type=int, default=30)
    ap.add_argument("--reward-generations", type=int, default=3)
    ap.add_argument("--n-jobs", type=int, default=2)
    args = ap.parse_args()
    run_dir = Path(tempfile.mkdtemp(prefix="automl-bench-")) / "run"
    cmd = [sys.executable, "-m", "automl", "--mode", "stage", "--env", args.env,
           "--budget-hours", str(args.budget_hours), "--hp-trials", str(args.hp_trials),
           "--reward-generations", str(args.reward_generations), "--seeds", "2",
           "--n-jobs", str(args.n_jobs), "--run-dir", str(run_dir)]
    t0 = time.time()
    rc = subprocess.run(cmd, stdout=subprocess.DEVNULL).returncode
    end = time.time()
    st = yaml.safe_load((run_dir / "automl_state.yaml").read_text())
    budget_s = args.budget_hours * 3600
    overrun = end - st["budget"]["deadline_t"]
    allowed = max(0.01 * budget_s, 15.0)
    ov = st["overhead"]
    n = sum(1 for t in st["trials"] if t["state"] == "complete")
    print(f"budget {budget_s:.0f} s, wall {end - t0:.1f} s, exit code {rc}, status {st['status']}")
    print(f"overrun {overrun:+.1f} s (allowed {allowed:.0f} s): {'OK' if overrun <= allowed else 'OVER'}")
    print(f"driver overhead {ov['driver_s']:.2f} s = {100 * ov['driver_share']:.2f}% of wall (target < 2%)")
    print(f"worker utilization {100 * ov['worker_utilization']:.1f}%; complete configs {n}")
    print(f"rl-zoo3 -optimize baseline: 480 s timeout ran 663 s (overrun +183 s, {663 / 480:.2f}x)")


if __name__ == "__main__":
    main()
