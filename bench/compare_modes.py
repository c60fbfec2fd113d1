"""Which mode should I use? Every mode, random search and no search at all, at one equal budget.

On a task (default navigation), each mode runs the real `automl` command with the same wall-clock budget,
seeds per config and workers, once per base seed, under progress/compare/<mode>_s<seed>. Each mode plans
its own training (the fidelity ladder: its top rung from the budget; pbt: its members' length), so no
mode gets shorter trials because it asked for more configs; `random` is random search on the same ladder.
`nosearch` is what a user gets without the product: the space's priors trained at its n_timesteps
(`automl train`) on the same test seeds.
Every run ends with the test phase: the held-out winner and the baseline re-trained on test seeds
(base+2000..), a score that selected nothing. The table pools each mode's test-seed success over its
base seeds: the winner's IQM with a 95% bootstrap CI, the baseline's in the same runs, configs
completed and budget used.

--extra-test-seeds K measures each run's result with more power, outside its budget: the winner's
best.yaml is trained as a user would (`automl train --config best.yaml`, at the length the run re-checked
it at) on K fresh seeds 3000..3000+K-1, the same seeds for every run; `nosearch` trains the priors on
them once (they do not depend on the base seed). pbt is left out: its result is a schedule, which
`automl train` does not replay. The table gives these in an extra column, pooled over base seeds.

--record FILE keeps the finished runs (per-seed test and extra-test success, rungs, budget used, the winner) in
a small JSON file to commit (bench/results/): progress/ is not kept, and a new machine starts without it.
--records FILE... pools kept runs with this comparison's; paired differences are taken within each file's batch
(a run and the other mode's run of the same base seed, or that batch's no-search priors).

Resumable: a finished run (best.yaml with a test score) is read, not re-run; an interrupted one is
re-run with the same command, which resumes it. Runs go one after another (each uses --n-jobs workers),
so a long comparison can be left running (nohup) and continued in a later session:

    nohup .venv/bin/python bench/compare_modes.py --budget-min 15 > progress/compare/log.txt 2>&1 &
    .venv/bin/python bench/compare_modes.py --report     # the table from what has finished so far
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from automl.core.scoring import iqm  # noqa: E402

MODES = {  # name -> the flags that make it (the rest of the command is shared)
    "hp": ["--mode", "hp"],                                   # default reward weights
    "reward": ["--mode", "reward"],                           # the prior HPs
    "stage": ["--mode", "stage"],
    "joint": ["--mode", "joint"],                             # TPE over HPs and weights + Hyperband
    "random": ["--mode", "joint", "--search-method", "random"],       # the same ladder, random proposals
    # the risk-aware objective against the plain mean (not in the default list: --modes stage-mean stage-mean-std)
    "stage-mean": ["--mode", "stage", "--objective", "mean"],
    "stage-mean-std": ["--mode", "stage", "--objective", "mean-std"],
    # population-based training (--population 8): members train as long as the budget allows, so
    # --trial-steps does not apply; its reported score is the winner's schedule replayed on the test seeds
    "pbt": ["--mode", "pbt"],
}
OWN_LENGTH = {"pbt"}  # modes that size their training from the budget (no --trial-steps)
DEFAULT_MODES = ["stage", "joint", "random", "pbt", "nosearch"]
NOSEARCH = "nosearch"  # the space's priors at its n_timesteps on the test seeds: no search at all
EXTRA_SEED0 = 3000  # the extra test seeds: disjoint from tuning (0..), held-out (1000..) and test (2000..)
EXTRA_DIR = "extra_test"


def nosearch_command(seed: int, args) -> list[str]:
    """`automl train` of the space's priors at its n_timesteps on the run's test seeds (base+2000..)."""
    from automl.search.space import default_space_path

    test_seeds = ",".join(str(seed + 2000 + i) for i in range(args.seeds))
    return ["train", "--config", str(default_space_path(args.env)), "--env", args.env, "--seed-list", test_seeds,
            "--n-jobs", str(args.n_jobs), "--run-dir", str(run_dir(NOSEARCH, seed, args))]


def command(mode: str, seed: int, args) -> list[str]:
    if mode == NOSEARCH:
        return nosearch_command(seed, args)
    return ["--env", args.env, *MODES[mode], "--budget-hours", f"{args.budget_min / 60:.6g}",
            "--hp-trials", str(args.hp_trials), "--reward-generations", str(args.reward_generations),
            "--seeds", str(args.seeds), "--n-jobs", str(args.n_jobs), "--seed", str(seed),
            "--run-dir", str(run_dir(mode, seed, args)), "--quiet",
            *(["--trial-steps", str(args.trial_steps)] if args.trial_steps and mode not in OWN_LENGTH else [])]


def extra_seed_list(args) -> list[int]:
    return [EXTRA_SEED0 + i for i in range(args.extra_test_seeds)]


def extra_seeds(args) -> str:
    return ",".join(map(str, extra_seed_list(args)))


def extra_dir(mode: str, seed: int, args) -> Path:
    """Where a run's extra test goes; nosearch's is one directory for every base seed."""
    return Path(args.out) / f"{NOSEARCH}_{EXTRA_DIR}" if mode == NOSEARCH else run_dir(mode, seed, args) / EXTRA_DIR


def extra_command(mode: str, seed: int, args) -> list[str] | None:
    """`automl train` of the run's winner (best.yaml, at its re-checked length) or of the priors (nosearch) on
    the extra test seeds; None when there is nothing to train (pbt, or a run without a best.yaml)."""
    if mode in OWN_LENGTH or not args.extra_test_seeds:
        return None
    if mode == NOSEARCH:
        from automl.search.space import default_space_path

        config, steps = default_space_path(args.env), None
    else:
        best = _yaml(run_dir(mode, seed, args) / "best.yaml") or {}
        if not best.get("params") or not finished(run_dir(mode, seed, args)):
            return None
        config, steps = run_dir(mode, seed, args) / "best.yaml", best["sb3"]["n_timesteps"]
    return ["train", "--config", str(config), "--env", args.env, "--seed-list", extra_seeds(args),
            "--n-jobs", str(args.n_jobs), "--run-dir", str(extra_dir(mode, seed, args)),
            *(["--trial-steps", str(steps)] if steps else [])]


def extra_values(mode: str, seed: int, args) -> list[float]:
    """Per-seed success of the run's extra test (only when it ran on the seeds asked for now)."""
    res = _yaml(extra_dir(mode, seed, args) / "results.yaml") or {}
    vals = {int(r["seed"]): float(r["episode_reward_mean"]) for r in res.get("seeds", [])
            if r.get("state") == "complete"}
    want = extra_seed_list(args)
    return [vals[s] for s in want] if want and all(s in vals for s in want) else []


def paired_diff(a: str, b: str, args, n_boot: int = 2000, runs: list[dict] | None = None) -> list[float] | None:
    """Mode a minus mode b on the extra test, paired by (batch, base seed, extra seed): every pair trained on the
    same seed, so a seed's own difficulty cancels. [mean difference, 95% bootstrap CI low, high, pairs]."""
    runs = collect(args) if runs is None else runs
    pairs = []
    for ra in runs:
        if ra["mode"] != a or not ra["extra"]:
            continue
        rb = next((r for r in runs if r["mode"] == b and r["extra"] and r["batch"] == ra["batch"]
                   and (b == NOSEARCH or r["base_seed"] == ra["base_seed"])), None)
        if rb is None:
            continue
        vb = dict(zip(rb["extra_seeds"], rb["extra"]))
        pairs += [x - vb[s] for s, x in zip(ra["extra_seeds"], ra["extra"]) if s in vb]
    if not pairs:
        return None
    arr = np.asarray(pairs)
    rng = np.random.default_rng(0)
    boots = [float(arr[rng.integers(0, len(arr), len(arr))].mean()) for _ in range(n_boot)]
    return [round(float(arr.mean()), 3), round(float(np.percentile(boots, 2.5)), 3),
            round(float(np.percentile(boots, 97.5)), 3), len(pairs)]


def run_dir(mode: str, seed: int, args) -> Path:
    return Path(args.out) / f"{mode}_s{seed}"


def finished(path: Path) -> bool:
    if (path / "results.yaml").exists():  # nosearch: automl train's results
        return True
    best = _yaml(path / "best.yaml") or {}
    st = _yaml(path / "automl_state.yaml") or {}
    return bool(best.get("test_score")) or st.get("status") in ("finished", "budget_exhausted", "search_exhausted") \
        and st.get("test") is not None


def _yaml(path: Path):
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def test_values(st: dict, baseline: bool) -> list[float]:
    """Per-seed test success of the run's winner (or its baseline)."""
    row = next((t for t in st.get("test") or [] if bool(t.get("baseline")) == baseline), None)
    if row is None:
        return []
    rec = next(t for t in st["trials"] if t["kind"] == "test" and t["config_id"] == row["config_id"])
    return [float(s["episode_reward_mean"]) for s in rec["seeds"] if s.get("state") == "complete"]


def heldout_spread(st: dict) -> float | None:
    """Seed spread of the run's winner: the std of its held-out per-seed success."""
    win = (st.get("heldout") or [{}])[0].get("config_id")
    rec = next((t for t in st["trials"] if t["kind"] == "heldout" and t["config_id"] == win), None)
    vals = [float(s["episode_reward_mean"]) for s in (rec or {}).get("seeds", []) if s.get("state") == "complete"]
    return float(np.std(vals, ddof=1)) if len(vals) > 1 else None


def iqm_ci(values: list[float], n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """(IQM, 95% CI low, high) by the percentile bootstrap over seeds."""
    arr = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    boots = [iqm(arr[rng.integers(0, len(arr), len(arr))]) for _ in range(n_boot)]
    return iqm(arr), float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))


def run_facts(mode: str, seed: int, args) -> dict | None:
    """One finished run as plain values: its test seeds' success (winner and baseline), the extra test's, what
    it trained and its winner; None while it has not finished. What ``--record`` keeps and ``--records`` reads."""
    path = run_dir(mode, seed, args)
    out = {"batch": "local", "mode": mode, "base_seed": seed, "extra_seeds": [], "extra": []}
    extra = extra_values(mode, seed, args)
    if extra:
        out["extra_seeds"], out["extra"] = extra_seed_list(args), extra
    if mode == NOSEARCH:
        res = _yaml(path / "results.yaml")
        if not res:
            return None
        return {**out, "test": [float(r["episode_reward_mean"]) for r in res["seeds"] if r.get("state") == "complete"],
                "baseline_test": [], "configs": 0, "budget_used_min": round(float(res["wall_s"]) / 60, 2),
                "steps": max(int(r["steps"]) for r in res["seeds"]), "spread": None, "winner": None}
    st = _yaml(path / "automl_state.yaml")
    if not st or not finished(path):
        return None
    lad = st.get("ladder")
    best = _yaml(path / "best.yaml") or {}
    return {**out, "test": test_values(st, baseline=False) or test_values(st, baseline=True),  # the baseline may win
            "baseline_test": test_values(st, baseline=True),
            "configs": sum(1 for t in st["trials"] if t["kind"] in ("hp", "reward", "joint") and t["state"] == "complete")
            + len((st.get("pbt") or {}).get("members") or []),  # pbt: the population's members
            "budget_used_min": round(st["budget"]["elapsed_s"] / 60, 2),
            "steps": (st.get("pbt") or {}).get("settings", {}).get("total_steps") or
            (lad["rungs"] if lad else st["plan"]["trial_steps"]),
            "spread": heldout_spread(st),
            "winner": {"config_id": best.get("config_id"), "params": best.get("params"),
                       "reward_weights": best.get("reward_weights"),
                       "n_timesteps": (best.get("sb3") or {}).get("n_timesteps")} if best else None}


def load_records(paths: list[str]) -> list[dict]:
    """Runs kept by earlier comparisons (``--record``; e.g. bench/results/*.json, committed: a new machine has
    no progress/), each tagged with its file's batch, so that pairs never mix batches."""
    runs = []
    for path in paths:
        try:
            data = json.loads(Path(path).read_text())
            runs += [{**r, "batch": data["batch"]} for r in data["runs"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SystemExit(f"{path}: --records: not a --record file ({type(exc).__name__}: {exc}; allowed: the JSON "
                             "that --record writes, with keys batch and runs)") from None
    return runs


def collect(args) -> list[dict]:
    """This comparison's finished runs, then those of ``--records`` files, of the modes asked for."""
    local = [r for mode in args.modes for seed in args.base_seeds if (r := run_facts(mode, seed, args))]
    kept = [r for r in load_records(getattr(args, "records", None) or []) if r["mode"] in args.modes]
    return local + kept


def _pooled(runs: list[dict], key: str, *, once_per_batch: bool = False) -> list[float]:
    """Every run's per-seed values of ``key``; nosearch's extra test is one set of seeds per batch."""
    out, seen = [], set()
    for r in runs:
        if once_per_batch and r["batch"] in seen:
            continue
        if r[key]:
            seen.add(r["batch"])
            out += r[key]
    return out


def report(args) -> list[dict]:
    runs = collect(args)
    rows = []
    for mode in args.modes:
        mine = [r for r in runs if r["mode"] == mode]
        spread = [r["spread"] for r in mine if r["spread"] is not None]
        row = {"mode": mode, "runs": len(mine), "configs_completed": sum(r["configs"] for r in mine),
               "budget_used_min": [round(r["budget_used_min"], 1) for r in mine],
               "trial_steps": [r["steps"] for r in mine],
               "winner_heldout_std": round(float(np.mean(spread)), 3) if spread else None}
        win, base = _pooled(mine, "test"), _pooled(mine, "baseline_test")
        extra = _pooled(mine, "extra", once_per_batch=mode == NOSEARCH)  # the priors' seeds, once per batch
        if win:
            row["winner_test_iqm"] = [round(v, 3) for v in iqm_ci(win)]
        if base:
            row["baseline_test_iqm"] = [round(v, 3) for v in iqm_ci(base)]
        if extra:
            row["extra_test_iqm"] = [round(v, 3) for v in iqm_ci(extra)]
            row["extra_test_values"] = [round(v, 4) for v in extra]
            row["extra_test_per_run"] = [[r["batch"], r["base_seed"], round(iqm(np.asarray(r["extra"])), 3)]
                                         for r in mine if r["extra"]]
        rows.append(row)
    batches = sorted({r["batch"] for r in runs})
    print(f"\n{args.env}, {args.budget_min:g} min per run, {args.n_jobs} workers, seeds/config {args.seeds}, "
          f"base seeds {args.base_seeds}, batches {batches}: test-seed success IQM [95% CI] (pooled over runs)")
    print(f"{'mode':14} {'runs':>4} {'winner (test)':>24} {'baseline (test)':>24} {'configs':>8} {'spread':>7}  "
          f"budget used (min)  steps per trial")
    fmt = lambda v: f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]" if v else "-"  # noqa: E731
    for r in rows:
        sd = r["winner_heldout_std"]
        print(f"{r['mode']:14} {r['runs']:>4} {fmt(r.get('winner_test_iqm')):>24} {fmt(r.get('baseline_test_iqm')):>24} "
              f"{r['configs_completed']:>8} {'-' if sd is None else f'{sd:.3f}':>7}  {r['budget_used_min']}  "
              f"{r['trial_steps']}")
    print("spread: std of the winner's held-out per-seed success (mean over runs); configs: pbt counts its members; "
          "steps per trial: pbt's are per member")
    if any(r.get("extra_test_iqm") for r in rows):
        print("\nextra test, outside the budget: each run's best.yaml trained on the extra seeds 3000.. (nosearch: the "
              "priors once per batch); success IQM [95% CI] pooled over the runs' seeds, then per run")
        for r in rows:
            if r.get("extra_test_iqm"):
                print(f"{r['mode']:14} {len(r['extra_test_values']):>4} seeds {fmt(r['extra_test_iqm'])}  "
                      f"{r['extra_test_per_run']}")
        for i, a in enumerate(args.modes):
            for b in args.modes[i + 1:]:
                d = paired_diff(a, b, args, runs=runs)
                if d:
                    print(f"{a} - {b}: {d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}] (mean paired difference, {d[3]} pairs)")
                    next(r for r in rows if r["mode"] == a).setdefault("extra_test_paired", {})[b] = d
    (Path(args.out) / "table.json").write_text(json.dumps(rows, indent=1))
    if getattr(args, "record", None):
        write_record(args, [r for r in runs if r["batch"] == "local"])
    return rows


def write_record(args, runs: list[dict]) -> None:
    """Keep this comparison's runs in a small JSON file (``--record``) that can be committed and pooled later."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    path = Path(args.record)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"batch": path.stem, "env": args.env, "budget_min": args.budget_min,
                                "commit": commit.stdout.strip() or None, "written": time.strftime("%Y-%m-%d"),
                                "runs": [{k: v for k, v in r.items() if k != "batch"} for r in runs]}, indent=1))
    print(f"recorded {len(runs)} runs in {path}")


def run_automl(label: str, cmd: list[str]) -> None:
    """Run one `automl` command to its end, printing what ran, its exit code, time and last error line."""
    t0 = time.time()
    print(f"{time.strftime('%H:%M:%S')} {label}: automl {' '.join(cmd)}", flush=True)
    out = subprocess.run([sys.executable, "-m", "automl", *cmd], cwd=ROOT, capture_output=True, text=True)
    print(f"  exit {out.returncode} after {(time.time() - t0) / 60:.1f} min "
          f"{out.stderr.strip().splitlines()[-1] if out.stderr.strip() else ''}", flush=True)


def extra_run(mode: str, seed: int, args) -> None:
    cmd = extra_command(mode, seed, args)
    if cmd is not None and not extra_values(mode, seed, args):
        run_automl(f"{mode} seed {seed}, extra test", cmd)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="navigation")
    p.add_argument("--budget-min", type=float, default=15.0, help="wall-clock budget of each run")
    p.add_argument("--base-seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--modes", nargs="+", default=DEFAULT_MODES, choices=[*MODES, NOSEARCH])
    p.add_argument("--hp-trials", type=int, default=8)
    p.add_argument("--reward-generations", type=int, default=3)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--n-jobs", type=int, default=2)
    p.add_argument("--trial-steps", type=int, default=None,
                   help="every run's --trial-steps (pins the ladder's top rung); default: each mode plans its own")
    p.add_argument("--extra-test-seeds", type=int, default=0, metavar="K",
                   help="also train each run's best.yaml (and the priors) on K extra seeds 3000.., outside the budget")
    p.add_argument("--out", default=str(ROOT / "progress" / "compare"))
    p.add_argument("--report", action="store_true", help="print the table of finished runs and exit")
    p.add_argument("--record", default=None, metavar="FILE",
                   help="also keep this comparison's finished runs in FILE (JSON; e.g. bench/results/nav20_s9.json)")
    p.add_argument("--records", nargs="+", default=[], metavar="FILE",
                   help="pool the runs kept in these --record files with this comparison's (pairs stay in a batch)")
    args = p.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if not args.report:
        for seed in args.base_seeds:      # every mode for one base seed first: partial results cover all modes
            for mode in args.modes:
                if not finished(run_dir(mode, seed, args)):
                    run_automl(f"{mode} seed {seed}", command(mode, seed, args))
        for seed in args.base_seeds:
            for mode in args.modes:
                extra_run(mode, seed, args)
    report(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
