"""What population-based training costs over plain batched training, measured in one process.

Baseline: ``train_seeds_torch`` trains N members' seeds as one batched job with an evaluation every
``--ready-steps`` (what PBT evaluates too). PBT: the same members, one ``train_segment`` per ready
point (restore the group's state, carry out copies, train, evaluate, save) with the driver's
decisions in between (``automl.search.pbt`` exploit/explore, as ``automl.run.pbt`` makes them, with
the state-file write left out). Prints both wall times, the ratio and where PBT's extra time goes:
state save/restore and copies, Run construction, decisions.

    .venv/bin/python bench/pbt_overhead.py [--env navigation] [--population 4] [--segments 4]
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from automl.core.config import load_space  # noqa: E402
from automl.search import pbt as rules_mod, space as space_mod  # noqa: E402
from automl.train.torch_pbt import train_segment  # noqa: E402
from automl.train.torch_train import train_seeds_torch  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--env", default="navigation")
    p.add_argument("--population", type=int, default=4)
    p.add_argument("--segments", type=int, default=4)
    p.add_argument("--ready-steps", type=int, default=32768)
    p.add_argument("--eval-episodes", type=int, default=32)
    args = p.parse_args()
    torch.set_num_threads(1)
    spec = load_space(str(space_mod.default_space_path(args.env)))
    params = space_mod.merged(spec, space_mod.prior_params(spec))
    seeds, total = list(range(args.population)), args.ready_steps * args.segments

    t0 = time.perf_counter()
    base = train_seeds_torch(params, env=args.env, seeds=seeds, total_steps=total, eval_every=args.ready_steps,
                      eval_episodes=args.eval_episodes, device="cpu")
    plain = time.perf_counter() - t0

    rule, specs = rules_mod.PBTRules(), [s for s in spec.params if s.name in ("learning_rate", "entropy_loss_scale")]
    member_params = [dict(params) for _ in seeds]
    weights = [{} for _ in seeds]
    decide_s, copy_s, copies_done, inside = 0.0, 0.0, 0, {"train_s": 0.0, "eval_s": 0.0}
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        copies: dict = {}
        for k in range(args.segments):
            out = train_segment(member_params, env=args.env, seeds=seeds, ids=seeds, weights=weights, copies=copies,
                                state_dir=d, group=0, ready=k, to_step=(k + 1) * args.ready_steps, total_steps=total,
                                eval_episodes=args.eval_episodes, device="cpu")
            copy_s += out["copy_s"]
            for key in inside:
                inside[key] += out[key]
            t1 = time.perf_counter()
            scores = [m["value"] for m in out["members"]]
            noise = [m["se"] for m in out["members"]]
            copies = {}
            for dst, src in rules_mod.exploit(scores, rule, random.Random(k), noise):
                src_params = {s.name: member_params[src][s.name] for s in specs}
                new, _ = rules_mod.explore(src_params, specs, {}, {}, rule, random.Random(k))
                member_params[dst] = {**member_params[src], **new}
                copies[dst] = (src, 0)
                copies_done += 1
            decide_s += time.perf_counter() - t1
        pbt = time.perf_counter() - t0
    other = pbt - inside["train_s"] - inside["eval_s"] - copy_s - decide_s
    print(f"{args.env}: {args.population} members x {total} steps, ready every {args.ready_steps} "
          f"({args.segments} ready points, {copies_done} copies), 1 CPU thread")
    print(f"plain batched training with the same evaluations: {plain:7.2f} s   (training {base[0].train_s:.2f} s, "
          f"evaluation {base[0].eval_s:.2f} s)")
    print(f"pbt (segments, copies, decisions):                {pbt:7.2f} s   ratio {pbt / plain:.3f}")
    print(f"  training {inside['train_s']:.2f} s, evaluation {inside['eval_s']:.2f} s (the members' values differ, "
          "so do their episodes)")
    print(f"  state restore + copies {copy_s:.3f} s, decisions {decide_s:.4f} s, "
          f"Run construction + state save + the rest {other:.2f} s")
    print(f"exploit/explore bookkeeping (restore + copies + decisions): {100 * (copy_s + decide_s) / pbt:.2f}% "
          f"of PBT's wall time; with Run construction and state saves: {100 * (copy_s + decide_s + other) / pbt:.2f}%")


if __name__ == "__main__":
    main()
