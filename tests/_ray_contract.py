"""Run in its own process (Ray reads its token settings when it is imported): the executor contract on a
Ray cluster at argv[1]; prints the outcomes as JSON for tests/test_scaling_out.py."""
import json
import sys
import time

import _jobs
from automl.exec.executor import Done, Job, Report, make_executor


def main(address: str) -> dict:
    ex = make_executor("ray", n_jobs=2, address=address)
    ex.submit(Job("add", _jobs.add, {"a": 2, "b": 3}))
    ex.submit(Job("boom", _jobs.boom))
    ex.submit(Job("nan", _jobs.nan_result))
    ex.submit(Job("count", _jobs.count, {"n": 5}))
    ex.submit(Job("stop", _jobs.until_stopped, {"max_s": 60.0}))
    ex.submit(Job("hang", _jobs.sleep_forever, timeout_s=3.0))
    try:
        ex.submit(Job("add", _jobs.add, {"a": 1, "b": 1}))
        duplicate = "accepted"
    except ValueError as exc:
        duplicate = str(exc)
    done, reports, end = {}, [], time.time() + 180
    while len(done) < 6 and time.time() < end:
        for ev in ex.poll(0.5):
            if isinstance(ev, Done):
                r = ev.result
                done[r.job_id] = {"ok": r.ok, "value": r.value if r.ok else None, "state": r.state,
                                  "reason": r.reason, "stop_reason": r.stop_reason}
            elif isinstance(ev, Report):
                reports.append([ev.job_id, ev.payload])
        if ["stop", "started"] in reports and "stop" in ex.running():
            ex.request_stop("stop", "pruned")
    ex.shutdown(grace_s=1.0)
    return {"done": done, "reports": reports, "duplicate": duplicate}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1]), default=str))
