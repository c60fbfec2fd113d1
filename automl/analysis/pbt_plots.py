"""The views of a --mode pbt run from its state file's ``pbt`` section (its lineage).

``pbt_population.png``: every member's score at every ready point (copies drawn as arrows from the
source's score to the member that took its state), the winner in bold. ``pbt_schedule.png``: the
winner's values over training (the HPs and reward weights that differ anywhere in the population),
with the ready points where it inherited another member's state. ``pbt_lineage.csv``: one row per
member and ready point (score, copied from). ``summary`` is the one-line note for the report.
"""
from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import yaml  # noqa: E402


def load(run_dir) -> dict | None:
    """The run's ``pbt`` section (None for the other modes or without a readable state file)."""
    path = Path(run_dir) / "automl_state.yaml"
    try:
        state = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    pop = state.get("pbt") if isinstance(state, dict) else None
    return pop if isinstance(pop, dict) and pop.get("ready") else None


def summary(pop: dict) -> str:
    """One line: population, ready points, copies, winner and the share of time spent deciding."""
    copies = sum(len(r["copies"]) for r in pop["ready"])
    book = pop.get("bookkeeping_s", 0.0) / max(pop.get("wall_s", 0.0), 1e-9)
    win = pop.get("winner")
    return (f"pbt: {len(pop['members'])} members, {len(pop['ready'])} ready points to "
            f"{pop['ready'][-1]['steps']} steps, {copies} copies, winner "
            f"{'none' if win is None else f'm{win}'}; exploit/explore bookkeeping {100 * book:.2f}% of the "
            "population's wall time")


def varied(pop: dict) -> list[str]:
    """The values that differ anywhere in the population (params, then ``reward.<term>``)."""
    seen: dict[str, set] = {}
    for m in pop["members"]:
        for h in m["history"]:
            for k, v in {**h["params"], **{f"reward.{t}": w for t, w in h["reward_weights"].items()}}.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    seen.setdefault(k, set()).add(float(v))
    return [k for k, vals in seen.items() if len(vals) > 1]


def _value(h: dict, key: str) -> float:
    if key.startswith("reward."):
        return float(h["reward_weights"][key.split(".", 1)[1]])
    return float(h["params"][key])


def write(pop: dict, out: Path) -> list[Path]:
    """Write the population plot, the winner's schedule and the lineage CSV; returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    steps = [r["steps"] for r in pop["ready"]]
    win = pop.get("winner")
    files = []
    fig, ax = plt.subplots(figsize=(9, 5))
    for m in pop["members"]:
        i = m["id"]
        ys = [r["scores"][i] if r["scores"][i] is not None else float("nan") for r in pop["ready"]]
        ax.plot(steps, ys, marker=".", lw=2.5 if i == win else 1.0, label=f"m{i}" + (" (winner)" if i == win else ""))
    for r in pop["ready"]:
        for c in r["copies"]:
            ys, yd = r["scores"][c["src"]], r["scores"][c["dst"]]
            if ys is not None and yd is not None:
                ax.annotate("", xy=(r["steps"], yd), xytext=(r["steps"], ys),
                            arrowprops={"arrowstyle": "->", "color": "grey", "alpha": 0.6})
    ax.set_xlabel("env steps per member")
    ax.set_ylabel("true metric at the ready point")
    ax.legend(fontsize=8, ncol=2)
    ax.set_title("population over time (arrows: a member copies a better one's state)")
    fig.tight_layout()
    files.append(out / "pbt_population.png")
    fig.savefig(files[-1], dpi=100)
    plt.close(fig)
    keys = varied(pop)
    if win is not None and keys:
        hist = pop["members"][win]["history"]
        end = steps[-1]
        fig, axes = plt.subplots(len(keys), 1, figsize=(9, 1.6 * len(keys) + 1), sharex=True, squeeze=False)
        for ax, key in zip(axes[:, 0], keys):
            xs = [h["from_step"] for h in hist] + [end]
            ys = [_value(h, key) for h in hist]
            ax.step(xs, ys + ys[-1:], where="post")
            for h in hist[1:]:
                ax.axvline(h["from_step"], color="grey", alpha=0.3, lw=0.8)
            ax.set_ylabel(key, fontsize=8, rotation=0, ha="right")
        axes[-1, 0].set_xlabel("env steps (grey: the winner's line took another member's state)")
        fig.suptitle(f"winner m{win}: its schedule of HPs and reward weights")
        fig.tight_layout()
        files.append(out / "pbt_schedule.png")
        fig.savefig(files[-1], dpi=100)
        plt.close(fig)
    files.append(out / "pbt_lineage.csv")
    with open(files[-1], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ready", "steps", "member", "score", "copied_from", "margin"])
        for r in pop["ready"]:
            src = {c["dst"]: c["src"] for c in r["copies"]}
            for i, v in enumerate(r["scores"]):
                w.writerow([r["index"], r["steps"], i, "" if v is None else v, src.get(i, ""), r["margin"]])
    return files
