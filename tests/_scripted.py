"""A SimExecutor whose per-seed results are scripted per (config, kind, seed), for driver-semantics tests.

`script(config_id, kind, seed)` returns the result fields to set (e.g. `episode_reward_mean`,
`shaped_return`, `terms`) or None to keep SimExecutor's; calibration jobs are never scripted.
Every submitted job id is kept in `submitted` (its kwargs in `kwargs`), so a test can say which seeds a session trained.
`interrupt_after=n`: the first poll after n tuning/held-out jobs ended raises KeyboardInterrupt,
as Ctrl-C in the driver's wait does (the jobs still on workers are then never reported).
"""
from __future__ import annotations

from _sim import FakeClock, SimExecutor

__all__ = ["FakeClock", "ScriptedExecutor", "UNCONSTRAINED_SPACE", "write_space"]

# tests/data/tiny_cartpole.yaml without its constraint: no proposal is rejected, so the record
# trial numbers (config ids) follow the proposals one to one (config_000 = the priors).
UNCONSTRAINED_SPACE = """\
search_space_id: tiny_cartpole_free
fixed: {seed: 0, num_envs: 32, n_timesteps: 8192, discount_factor: 0.98, lambda_param: 0.8}
searchable:
  learning_rate:   {type: loguniform, low: 3.0e-4, high: 3.0e-3, prior: 1.0e-3}
  rollouts:        {type: choice, values: [16, 32], prior: 32}
  learning_epochs: {type: choice, values: [2, 4], prior: 4}
  mini_batches:    {type: choice, values: [2, 4], prior: 2}
"""


def write_space(folder) -> str:
    """Write UNCONSTRAINED_SPACE into `folder`; its path."""
    path = folder / "space.yaml"
    path.write_text(UNCONSTRAINED_SPACE)
    return str(path)


class ScriptedExecutor(SimExecutor):
    """SimExecutor (fake clock, modelled durations) with scripted result values."""

    def __init__(self, n_jobs: int, clock: FakeClock, *, script=None, interrupt_after: int | None = None,
                 **kw):
        kw.setdefault("rate", 20_000.0)
        super().__init__(n_jobs, clock, **kw)
        self.script = script or (lambda config_id, kind, seed: None)
        self.interrupt_after = interrupt_after
        self.submitted: list[str] = []
        self.kwargs: dict[str, dict] = {}  # job id -> the kwargs it was submitted with
        self.ended = 0  # tuning and held-out jobs that ended (calibration not counted)

    def submit(self, job) -> None:
        self.submitted.append(job.job_id)
        self.kwargs[job.job_id] = dict(job.kwargs)
        super().submit(job)

    def poll(self, timeout=None):
        if self.interrupt_after is not None and self.ended >= self.interrupt_after:
            raise KeyboardInterrupt
        out = super().poll(timeout)
        self.ended += sum(1 for d in out if not d.result.job_id.startswith("calibrate"))
        return out

    def _result(self, s):
        result = super()._result(s)
        if ":" in s.job.job_id:
            config_id, kind, seed = s.job.job_id.split(":")
            fields = self.script(config_id, kind, int(seed))
            if fields:
                result.value.update(fields)
        return result

    def seeds_of(self, config_id: str, kind: str) -> list[int]:
        """Seeds submitted for one config and kind, in submission order."""
        return [int(j.split(":")[2]) for j in self.submitted
                if j.split(":")[:2] == [config_id, kind]]
