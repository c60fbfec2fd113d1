"""The run layer: one search under one wall-clock budget, resumable.

Owns the modes (``modes``: one module per --mode, found through one registry: its flag checks, plan,
search owners and phases; a new search mode is a new module there), the driver (``driver``: the mode's
phases in order), the phases (``phases``: tuning, held-out, test; ``pbt``: the population), the run they
share (``context``) and its assembly (``opening``), the budget and its clock (``budget``), the inputs
(``inputs``: env, space, terms, seeds, fingerprint, resume check), the plan (``plan``, ``calibration``;
the fidelity ladder: ``ladder*``), what a seed job is handed (``jobs``) and what the run does with its
results (``outcomes``), configs and the incumbent (``records``),
resume (``resume``), the held-out re-evaluation (``heldout``), seed-job scheduling and pruning
over seeds (``scheduler``), the state file (``state``, the only writer), the live view (``live``),
the run's flags (``runconfig``) and the trainers' job functions (``trainers``). May import the
search, exec, train and core layers; never analysis, api or cli.
"""
