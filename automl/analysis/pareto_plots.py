"""The views of a run with --metrics / --constraint, from its state file (``pareto`` section and trials).

``pareto_front.png``: every tuning config on the first two objectives, the Pareto front joined, the
held-out front's values beside it, infeasible configs as crosses and the pick circled.
``pareto_front.csv``: one row per config (objectives, violations, feasible, on the front). ``table`` is
the printed front (held-out values when the held-out phase ran, else tuning ones); ``summary`` one line.
"""
from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import yaml  # noqa: E402

from automl.core.record import Kind  # noqa: E402

TUNING = Kind.TUNING


def load(run_dir) -> dict | None:
    """{"pareto": section, "trials": [...]} (None for runs without --metrics/--constraint)."""
    try:
        state = yaml.safe_load((Path(run_dir) / "automl_state.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    sec = state.get("pareto") if isinstance(state, dict) else None
    return {"pareto": sec, "trials": state.get("trials") or []} if isinstance(sec, dict) else None


def _front(sec: dict) -> tuple[str, list[dict]]:
    if sec.get("heldout_front"):
        return "held-out", sec["heldout_front"]
    return "tuning", sec.get("front") or []


def summary(data: dict) -> str:
    sec = data["pareto"]
    where, front = _front(sec)
    infeasible = len(sec.get("infeasible") or [])
    objectives = ", ".join(sec.get("objectives") or []) or "one objective"
    line = f"pareto: {objectives}; {len(front)} configs on the {where} front"
    if sec.get("pick"):
        line += f", pick {sec['pick']} ({front[0]['config_id'] if front else 'none'})"
    if sec.get("constraints"):
        line += f"; {infeasible} tuning configs infeasible under {'; '.join(sec['constraints'])}"
    return line


def table(data: dict):
    """A rich table of the front (the pick first) or None without several objectives."""
    from rich.table import Table

    sec = data["pareto"]
    names = [o.split(":")[0] for o in sec.get("objectives") or []]
    where, front = _front(sec)
    if not names or not front:
        return None
    t = Table(title=f"Pareto front ({where} values; pick: {sec.get('pick')})", show_lines=False)
    t.add_column("#")
    t.add_column("config")
    for o in sec["objectives"]:
        t.add_column(o, justify="right")
    for i, row in enumerate(front, 1):
        t.add_row(str(i) + (" (pick)" if i == 1 else ""), row["config_id"],
                  *[f"{row.get(n):.4g}" if isinstance(row.get(n), (int, float)) else "" for n in names])
    return t


def write(data: dict, out: Path) -> list[Path]:
    """pareto_front.csv, and pareto_front.png with two or more objectives."""
    sec, trials = data["pareto"], [t for t in data["trials"] if t.get("kind") in TUNING and t.get("score")]
    names = [o.split(":")[0] for o in sec.get("objectives") or []]
    on_front = {r["config_id"] for r in sec.get("front") or []}
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for t in trials:
        s = t["score"]
        rows.append({"config_id": t["config_id"], "kind": t["kind"], **(s.get("objectives") or {}),
                     "feasible": s.get("feasible", True), "on_front": t["config_id"] in on_front,
                     **{f"violation[{k}]": v for k, v in (s.get("violations") or {}).items()}})
    path = out / "pareto_front.csv"
    cols = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    files = [path]
    if len(names) >= 2 and rows:
        files.append(_plot(sec, rows, names, out / "pareto_front.png"))
    return files


def _plot(sec: dict, rows: list[dict], names: list[str], path: Path) -> Path:
    x, y = names[0], names[1]
    fig, ax = plt.subplots(figsize=(7, 5))
    ok = [r for r in rows if r["feasible"] and isinstance(r.get(x), (int, float)) and isinstance(r.get(y), (int, float))]
    bad = [r for r in rows if not r["feasible"] and isinstance(r.get(x), (int, float)) and isinstance(r.get(y), (int, float))]
    ax.scatter([r[x] for r in ok], [r[y] for r in ok], c="tab:blue", alpha=0.5, label="tuning configs")
    if bad:
        ax.scatter([r[x] for r in bad], [r[y] for r in bad], c="tab:red", marker="x", label="infeasible")
    front = sorted((r for r in ok if r["on_front"]), key=lambda r: r[x])
    ax.plot([r[x] for r in front], [r[y] for r in front], "-o", c="tab:blue", label="tuning front")
    held = sec.get("heldout_front") or []
    if held:
        ax.scatter([r.get(x) for r in held], [r.get(y) for r in held], c="tab:green", marker="s",
                   label="held-out front (re-trained)")
        pick = held[0]
    else:
        pick = (sec.get("front") or [None])[0]
    if pick:
        ax.scatter([pick.get(x)], [pick.get(y)], s=300, facecolors="none", edgecolors="k", label=f"pick ({sec.get('pick')})")
    ax.set_xlabel(sec["objectives"][0])
    ax.set_ylabel(sec["objectives"][1])
    ax.legend(fontsize=8)
    ax.set_title("Pareto front")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
