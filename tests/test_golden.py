"""Golden run: one small fixed staged run must give the same configs and per-seed results as
recorded in tests/data/golden_run.yaml (pins the driver's behaviour across refactors, issue 13).

The command (GOLDEN_ARGS) fixes everything that would otherwise depend on the machine:
--trial-steps, --eval-every and --eval-episodes fix the plan (the evaluation schedule is taken
as given, not sized from calibration; the trials are not shrunk, so the last phase is never
extended past its quota), the budget is ~30x what the run needs (no deadline or admission check
binds), --n-jobs 1 runs one seed job at a time (asks, tells and results in one order), --device
cpu and the workers' single torch thread make training reproducible, --checkpoint-every above
the trial length keeps the (calibration-sized) checkpoint interval out of it, and with 2 seeds
the mean and the IQM rank configs alike. What is compared, per trial: kind, cycle, config_id,
state, params, reward weights, score and, per seed, seed, state, steps, episode_reward_mean,
shaped/reference return, terms, stop reason and every evaluation (read from the seed's
TensorBoard run, the only place a run keeps them; if a refactor moves them, re-point `_evals`,
the values must not change); also the flag-determined plan fields, the held-out ranking,
best.yaml and the alarms. Ints and strings must be equal, floats within a relative 1e-6.

Regenerate ONLY for an intended change of behaviour (never to make a refactor pass), and say
so in the commit message:

    UPDATE_GOLDEN=1 .venv/bin/python -m pytest -q tests/test_golden.py   # rewrites the file, skips
    git diff tests/data/golden_run.yaml                                   # review every change

The file was recorded at a16ee92, before the issue-13 refactor. Its numbers come from CPU training
with the torch version recorded in it (`torch_tolerance` decides what other versions get):
the recorded build compares within REL_TOL; another build of the same release (`2.13.0` or
`2.13.0+cu121` for a recorded `2.13.0+cpu`: the same CPU kernels, perhaps another BLAS) within
BUILD_REL_TOL; another release (any other that pyproject's `torch>=2.3,<2.14` allows) skips
with the reason printed, since its CPU training may drift anywhere. The run is 7 configs x 2
seeds, ~35-70 s on 2 cores.
"""
from __future__ import annotations

import math
import os
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from _cli import ROOT, TINY, automl, state

GOLDEN = ROOT / "tests" / "data" / "golden_run.yaml"
GOLDEN_ARGS = ["--mode", "stage", "--env", "cartpole", "--space", TINY, "--hp-trials", "2",
               "--reward-generations", "1", "--reward-population", "3", "--seeds", "2", "--n-jobs", "1",
               "--trial-steps", "8192", "--eval-every", "4096", "--eval-episodes", "8", "--top-k", "1",
               "--seed", "0", "--budget-hours", "0.5", "--device", "cpu", "--checkpoint-every", "65536",
               "--ladder", "off", "--quiet"]  # the fixed-length planner it was recorded with (issue 24's ladder: off)
REL_TOL = 1e-6
BUILD_REL_TOL = 1e-4  # another build of the recorded release: last-bit differences, not another trajectory
PLAN_KEYS = ("trial_steps", "eval_every", "eval_episodes", "evals_per_job", "cycles", "hp_trials", "population",
             "seed_jobs", "heldout_configs", "shrunk")
TRIAL_KEYS = ("config_id", "kind", "cycle", "state", "params", "reward_weights", "score", "reason", "heldout_of")
SEED_KEYS = ("seed", "state", "steps", "episode_reward_mean", "success_rate", "shaped_return", "reference_return",
             "terms", "stop_reason", "reason")
BEST_KEYS = ("config_id", "params", "reward_weights", "heldout_seeds")
SCORE_KEYS = ("mean", "iqm", "ci95", "n_seeds")  # fields added to a score later are not compared
HELDOUT_KEYS = ("config_id", "iqm", "mean", "ci95", "baseline")


def _only(d: dict | None, keys) -> dict | None:
    return None if d is None else {k: d[k] for k in keys if k in d}


def _evals(run_dir: Path, config_id: str, kind: str, seed: int) -> list[dict]:
    """A seed job's evaluations, in order: steps, true metric, shaped/reference return, terms."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = list((run_dir / "tb" / config_id).glob(f"{kind}_seed{seed}/seed_{seed}"))
    assert len(runs) == 1, f"no TensorBoard run for {config_id} {kind} seed {seed}: {runs}"
    acc = EventAccumulator(str(runs[0]), size_guidance={"scalars": 0})
    acc.Reload()
    tags = [t for t in acc.Tags()["scalars"] if t.startswith("eval/")]
    by_step: dict[int, dict] = {}
    for tag in tags:
        for ev in acc.Scalars(tag):
            row = by_step.setdefault(int(ev.step), {"steps": int(ev.step), "terms": {}})
            name = tag[len("eval/"):]
            if name.startswith("terms/"):
                row["terms"][name[len("terms/"):]] = float(ev.value)
            else:
                row[name] = float(ev.value)
    return [by_step[s] for s in sorted(by_step)]


def snapshot(run_dir: Path) -> dict:
    """What the golden file holds: everything of the run that does not depend on time."""
    st = state(run_dir)
    trials = []
    for t in st["trials"]:
        row = _only(t, TRIAL_KEYS)
        if "score" in row:
            row["score"] = _only(row["score"], SCORE_KEYS)
        row["seeds"] = [{**{k: s[k] for k in SEED_KEYS if k in s},
                         "evals": _evals(run_dir, t["config_id"], t["kind"], s["seed"])} for s in t["seeds"]]
        trials.append(row)
    best = yaml.safe_load((run_dir / "best.yaml").read_text())
    return {
        "torch": version("torch"),
        "status": st["status"],
        "trainer": st["trainer"],
        "seeds": st["seeds"],
        "plan": {k: st["plan"][k] for k in PLAN_KEYS},
        "trials": trials,
        "heldout": [_only(h, HELDOUT_KEYS) for h in st["heldout"]],
        "best": {**{k: best[k] for k in BEST_KEYS}, "n_timesteps": best["sb3"]["n_timesteps"],
                 "tuning_score": _only(best["tuning_score"], SCORE_KEYS),
                 "heldout_score": _only(best["heldout_score"], SCORE_KEYS),
                 "baseline": {"config_id": best["baseline"]["config_id"],
                              "heldout_score": _only(best["baseline"]["heldout_score"], SCORE_KEYS)},
                 "models": [Path(m).relative_to(run_dir).as_posix() for m in best["models"]]},
        "alarms": st.get("alarms") or [],
    }


def torch_tolerance(recorded: str, running: str) -> tuple[float | None, str]:
    """(relative tolerance for floats, why) for comparing a run under torch `running` with a golden
    file recorded under `recorded`; None: not comparable (the test skips with `why`)."""
    if running == recorded:
        return REL_TOL, f"torch {running}, as recorded"
    if running.split("+")[0] == recorded.split("+")[0]:
        return BUILD_REL_TOL, f"torch {running}, another build of the recorded {recorded}"
    return None, (f"the golden run was recorded with torch {recorded}, this is torch {running}: CPU training "
                  f"numbers are not comparable across releases (compare under {recorded.split('+')[0]})")


def differences(want, got, path="", rel_tol=REL_TOL) -> list[str]:
    """Every place where `got` differs from `want` (floats within rel_tol, the rest exactly)."""
    if isinstance(want, dict) and isinstance(got, dict):
        out = [f"{path}.{k}: missing" for k in want if k not in got]
        out += [f"{path}.{k}: unexpected ({got[k]!r})" for k in got if k not in want]
        for k in want:
            if k in got:
                out += differences(want[k], got[k], f"{path}.{k}", rel_tol)
        return out
    if isinstance(want, list) and isinstance(got, list):
        out = [f"{path}: {len(got)} items, golden has {len(want)}"] if len(want) != len(got) else []
        for i, (a, b) in enumerate(zip(want, got)):
            out += differences(a, b, f"{path}[{i}]", rel_tol)
        return out
    numbers = (int, float)
    if isinstance(want, numbers) and isinstance(got, numbers) and not isinstance(want, bool) \
            and not isinstance(got, bool) and (isinstance(want, float) or isinstance(got, float)):
        if math.isclose(want, got, rel_tol=rel_tol, abs_tol=1e-12):
            return []
    elif type(want) is type(got) and want == got:
        return []
    return [f"{path}: golden {want!r}, got {got!r}"]


def test_torch_tolerance_per_version():
    """The recorded build compares at 1e-6, another build of its release at 1e-4, another release skips."""
    assert torch_tolerance("2.13.0+cpu", "2.13.0+cpu")[0] == REL_TOL == 1e-6
    assert torch_tolerance("2.13.0+cpu", "2.13.0")[0] == BUILD_REL_TOL == 1e-4
    assert torch_tolerance("2.13.0+cpu", "2.13.0+cu121")[0] == BUILD_REL_TOL
    tol, why = torch_tolerance("2.13.0+cpu", "2.12.1+cpu")
    assert tol is None and "recorded with torch 2.13.0+cpu, this is torch 2.12.1+cpu" in why
    assert torch_tolerance("2.13.0+cpu", "2.13.1")[0] is None
    assert differences({"x": 1.0}, {"x": 1.00005}, rel_tol=BUILD_REL_TOL) == []
    assert differences({"x": 1.0}, {"x": 1.00005}) == [".x: golden 1.0, got 1.00005"]


def test_golden_run(tmp_path):
    want = yaml.safe_load(GOLDEN.read_text())
    rel_tol, why = torch_tolerance(want["torch"], version("torch"))
    if rel_tol is None and os.environ.get("UPDATE_GOLDEN") != "1":
        pytest.skip(why)
    run_dir = tmp_path / "golden"
    r = automl(*GOLDEN_ARGS, "--run-dir", str(run_dir), timeout=600)
    assert r.returncode == 0, r.stderr
    got = snapshot(run_dir)
    if os.environ.get("UPDATE_GOLDEN") == "1":
        header = ("# Written by tests/test_golden.py (UPDATE_GOLDEN=1); read its docstring before regenerating.\n"
                  f"# automl {' '.join(a if a != TINY else 'tests/data/tiny_cartpole.yaml' for a in GOLDEN_ARGS)}\n")
        GOLDEN.write_text(header + yaml.safe_dump(got, sort_keys=False, width=120))
        pytest.skip(f"wrote {GOLDEN}; review `git diff` before committing")
    problems = differences({**want, "torch": got["torch"]}, got, rel_tol=rel_tol)
    assert not problems, f"{len(problems)} differences from {GOLDEN.name} ({why}):\n" + "\n".join(problems[:40])
