"""The GPU check's measurements and its one table (issue 12 item 5); bench/gpu_check.sh runs it.

    python bench/gpu_check.py measure --json FILE     env and trainer throughput, written to FILE after each figure
    python bench/gpu_check.py table --json FILE --pytest-log LOG --stage-dir DIR --stage-log LOG [--out MD]

``measure``, on GPU_CHECK_DEVICE (default cuda), at each of GPU_CHECK_SIZES envs (default "2048 65536 262144"):
  - env steps/s, navigation and CartPole, raw batched env, random actions (best of 2 blocks of ~0.3 s,
    synchronised);
  - training steps/s, navigation, the space's prior config with num_envs overridden, GPU_CHECK_UPDATES PPO
    updates (default 3), evaluation only at the end (4 episodes, not timed): ``train_seed`` (SB3 BatchedPPO +
    TorchVecEnv) and ``train_seed_torch`` in the same process, the torch one first at each size; steps / train_s,
    as bench/torch_ppo_throughput.py (the torch trainer's train_s also counts building its envs and networks).
    Both trainers are warmed up once (CUDA context, kernels) at the smallest size before anything is timed.
Each figure has a time cap (GPU_CHECK_CAP_S, default 40 s, passed as the trainers' deadline): a run that hits it
is "skipped (time cap)"; GPU_CHECK_BUDGET_S (default 170) bounds the whole measurement, after which figures are
"skipped (budget)". SIGTERM (the shell's hard timeout) keeps what was measured. ``table`` reads no torch.
Never asserts speed; the table states the issue's targets beside the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


def sizes() -> list[int]:
    return [int(s) for s in (os.environ.get("GPU_CHECK_SIZES") or "2048 65536 262144").split()]


class Stop(BaseException):
    """SIGTERM: stop measuring, keep what is recorded (a BaseException: the trainers' and our own
    ``except Exception`` let it through)."""


# -- measure -------------------------------------------------------------------------------------------

def measure(json_path: Path) -> int:
    try:
        import torch

        import envs
        from automl.core.config import load_space
        from automl.search.space import default_space_path, prior_params
        from automl.train.torch_train import train_seed_torch
        from automl.train.sb3_train import train_seed
    except Exception as exc:  # noqa: BLE001 - the table says why nothing was measured
        error = f"import failed: {type(exc).__name__}: {exc}"
        print(f"measure: {error}", flush=True)
        json_path.write_text(json.dumps({"error": error, "sizes": sizes(), "python": sys.version.split()[0]}))
        return 1

    def on_term(signum, frame):  # noqa: ARG001
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: the cleanup below is not interrupted again
        raise Stop()

    signal.signal(signal.SIGTERM, on_term)
    t0 = time.time()
    device = os.environ.get("GPU_CHECK_DEVICE") or "cuda"
    updates = int(os.environ.get("GPU_CHECK_UPDATES") or 3)
    cap = _env_float("GPU_CHECK_CAP_S", 40)
    budget_end = t0 + _env_float("GPU_CHECK_BUDGET_S", 170)
    cuda = device.startswith("cuda")
    if device == "cpu":
        torch.set_num_threads(1)
    out: dict = {"device": device, "sizes": sizes(), "updates": updates, "cap_s": cap, "figures": {},
                 "torch": torch.__version__, "python": sys.version.split()[0]}
    if cuda:
        if not torch.cuda.is_available():
            out["error"] = "CUDA not available"
        else:
            out["gpu"] = torch.cuda.get_device_name(0)
    figures = out["figures"]

    def save() -> None:
        json_path.write_text(json.dumps(out, indent=1))

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def record(key: str, value) -> None:
        figures[key] = value
        print(f"  {key}: {value}", flush=True)
        save()

    def free() -> None:
        if cuda:
            torch.cuda.empty_cache()

    def failure(exc: BaseException) -> str:
        first = (str(exc).splitlines() or [""])[0][:120]
        return f"error: {type(exc).__name__}: {first}"

    def env_rate(task: str, n: int) -> float | str:
        """Best raw env steps/s of 2 blocks of ~0.3 s (after a warm-up and a calibration)."""
        deadline = min(time.time() + cap, budget_end)
        env = envs.make(task, n, device=device, seed=0)
        env.reset()
        gen = torch.Generator(device=env.device).manual_seed(0)
        if env.action_space.shape == ():
            actions = torch.randint(0, 2, (n,), generator=gen, device=env.device)
        else:
            actions = torch.rand((n, *env.action_space.shape), generator=gen, device=env.device) * 2 - 1
        for _ in range(5):
            env.step(actions)
        sync()
        start = time.perf_counter()
        for _ in range(10):
            env.step(actions)
        sync()
        per_call = (time.perf_counter() - start) / 10
        calls = max(10, int(0.3 / max(per_call, 1e-7)))
        best = 0.0
        for _ in range(2):
            if time.time() + calls * per_call > deadline:
                return "skipped (time cap)" if best == 0.0 else best
            start = time.perf_counter()
            for _ in range(calls):
                env.step(actions)
            sync()
            best = max(best, calls * n / (time.perf_counter() - start))
        return best

    spec = load_space(default_space_path("navigation"))

    def prior(n: int) -> dict:
        params = {**spec.fixed, **prior_params(spec), "num_envs": n}
        params.pop("n_timesteps", None)
        params.pop("seed", None)
        return params

    def train_rate(fn, n: int, n_updates: int) -> float | str:
        """Training steps/s (steps / train_s) of ``n_updates`` PPO updates at ``n`` envs, or why not."""
        params = prior(n)
        steps = n_updates * n * params["rollouts"]
        deadline = min(time.time() + cap, budget_end)
        result = fn(params, env="navigation", seed=0, total_steps=steps, eval_every=10 * steps, eval_episodes=4,
                    device=device, deadline=deadline, tb_dir=None)
        if result.state == "stopped_at_deadline":
            return "skipped (time cap)" if time.time() < budget_end else "skipped (budget)"
        if result.state != "complete":
            return f"{result.state}: {(result.reason or '')[:100]}"
        return result.steps / max(result.train_s, 1e-9)

    trainers = (("torch", train_seed_torch), ("sb3", train_seed))
    print(f"measure: device {device} {out.get('gpu', '')}, torch {torch.__version__}, sizes {out['sizes']}, "
          f"{updates} updates per training figure, cap {cap:.0f} s each", flush=True)
    save()
    if "error" in out:
        print(f"measure: {out['error']}", flush=True)
        return 1
    try:
        for name, fn in trainers:  # warm-up: CUDA context, cuBLAS, kernels; not recorded
            try:
                began = time.time()
                train_rate(fn, min(out["sizes"]), 1)
                print(f"  warm-up {name}: {time.time() - began:.1f} s", flush=True)
            except Exception as exc:  # noqa: BLE001 - the timed runs will say it again, per size
                print(f"  warm-up {name}: {failure(exc)}", flush=True)
            free()
        for n in out["sizes"]:
            for task in ("navigation", "cartpole"):
                key = f"env/{task}/{n}"
                if time.time() >= budget_end:
                    record(key, "skipped (budget)")
                    continue
                try:
                    record(key, env_rate(task, n))
                except Exception as exc:  # noqa: BLE001 - e.g. out of memory: the table says so
                    record(key, failure(exc))
                free()
        for n in out["sizes"]:
            for name, fn in trainers:
                key = f"train/{name}/{n}"
                if time.time() >= budget_end:
                    record(key, "skipped (budget)")
                    continue
                try:
                    record(key, train_rate(fn, n, updates))
                except Exception as exc:  # noqa: BLE001
                    record(key, failure(exc))
                free()
    except (Stop, KeyboardInterrupt):
        out["interrupted"] = f"stopped by a signal after {time.time() - t0:.0f} s"
        print(f"measure: {out['interrupted']}", flush=True)
    out["measure_s"] = round(time.time() - t0, 1)
    save()
    return 0


# -- table ---------------------------------------------------------------------------------------------

def _si(x) -> str:
    if not isinstance(x, (int, float)):
        return str(x)
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if x >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:.3g}"


def _pytest_summary(log: Path | None) -> str:
    if log is None or not log.exists():
        return "not run"
    text = log.read_text(errors="replace")
    rc = re.search(r"^pytest exit (\d+)", text, re.M)
    # pytest's last line, e.g. "3 passed, 2 skipped, 9 deselected in 4.1s" (with -q: no '=' frame)
    lines = [ln.strip("= ").strip() for ln in text.splitlines()
             if re.search(r"\d+ (passed|failed|error|errors|skipped|deselected)\b", ln) or "no tests ran" in ln]
    if not lines:  # e.g. pytest missing: its last words instead
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("pytest exit")][-1:]
    counts = lines[-1][:160] if lines else "no output"
    code = rc.group(1) if rc else "?"
    if code == "124":
        return f"timed out (hard timeout); {counts}"
    failed = re.findall(r"^(FAILED|ERROR) (\S+)", text, re.M)
    names = "; ".join(f"{kind} {name.split('::')[-1]}" for kind, name in failed[:4])
    return f"{counts} (exit {code})" + (f": {names}" if names else "")


def _stage_summary(run_dir: Path | None, log: Path | None) -> str:
    rc = None
    if log is not None and log.exists():
        m = re.search(r"^stage exit (\d+) after (\d+) s", log.read_text(errors="replace"), re.M)
        rc = (m.group(1), m.group(2)) if m else None
    state_file = run_dir / "automl_state.yaml" if run_dir else None
    if state_file is None or not state_file.exists():
        tail = ""
        if log is not None and log.exists():
            lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip() and
                     not ln.startswith("stage exit")]
            tail = f": {lines[-1][:160]}" if lines else ""
        return f"no state file (exit {rc[0] if rc else '?'}){tail}"
    import yaml

    state = yaml.safe_load(state_file.read_text()) or {}
    best = state.get("best") or {}
    score = best.get("score") or {}
    mean = score.get("mean")
    trials = state.get("trials") or []
    parts = [f"status {state.get('status')}", f"trainer {state.get('trainer', '?')}",
             f"best {best.get('config_id', '-')} mean {mean:.4g}" if isinstance(mean, (int, float)) else "no best",
             f"{len(trials)} trials"]
    if state.get("stop_reason"):
        parts.append(f"stop: {str(state['stop_reason'])[:80]}")
    if rc:
        parts.append(f"exit {rc[0]} after {rc[1]} s" + (" (hard timeout)" if rc[0] == "124" else ""))
    return ", ".join(parts)


def table(args) -> int:
    data = json.loads(Path(args.json).read_text()) if args.json and Path(args.json).exists() else {}
    figures = data.get("figures", {})
    ns = data.get("sizes") or sizes()
    dev = data.get("gpu") or data.get("device", "?")
    head = ["check"] + [f"{n:,} envs" for n in ns]
    rows = []

    def row(label: str, cells: list[str]) -> None:
        rows.append([label] + cells + [""] * (len(ns) - len(cells)))

    row("device", [f"{dev}; torch {data.get('torch', '?')}; python {data.get('python', '?')}"
                   + (f"; {data['error']}" if data.get("error") else "")
                   + (f"; {data['interrupted']}" if data.get("interrupted") else "")])
    for task, label in (("navigation", "navigation env, steps/s"), ("cartpole", "CartPole env, steps/s")):
        row(label, [_si(figures.get(f"env/{task}/{n}", "not run")) for n in ns])
    updates = data.get("updates", "?")
    for name, label in (("sb3", "train navigation, SB3 path (train_seed)"),
                        ("torch", "train navigation, torch (train_seed_torch)")):
        row(f"{label}, steps/s, {updates} updates", [_si(figures.get(f"train/{name}/{n}", "not run")) for n in ns])
    ratios = []
    for n in ns:
        a, b = figures.get(f"train/torch/{n}"), figures.get(f"train/sb3/{n}")
        ratios.append(f"{a / b:.2f}x" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b > 0
                      else "n/a")
    row("torch / SB3 (target on GPU at 65,536: >= 12x, >= 10M steps/s)", ratios)
    row("CUDA tests (pytest -k cuda)", [_pytest_summary(Path(args.pytest_log) if args.pytest_log else None)])
    row("staged run (--device auto --trainer torch)",
        [_stage_summary(Path(args.stage_dir) if args.stage_dir else None,
                        Path(args.stage_log) if args.stage_log else None)])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c).replace("|", "/") for c in r) + " |" for r in rows]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--json", required=True)
    t = sub.add_parser("table")
    t.add_argument("--json")
    t.add_argument("--pytest-log")
    t.add_argument("--stage-dir")
    t.add_argument("--stage-log")
    t.add_argument("--out")
    args = parser.parse_args()
    if args.cmd == "measure":
        return measure(Path(args.json))
    return table(args)


if __name__ == "__main__":
    raise SystemExit(main())
