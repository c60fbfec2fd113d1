"""The core layer: what every other layer may rely on, with no heavy imports.

Owns the parameter names and their domains, and the names of the search methods and pruners
(``names``), the space and PPO-setup dataclasses, YAML validation and the one conversion of search
coordinates to SB3 PPO arguments (``config``), the safe constraint evaluator (``constraints``), the
one-line user error (``errors``), the per-config scores and objectives over seeds (``scoring``) and
plain values (``values``: the finite-number test, the YAML/JSON-safe conversion, short text of a
value, CSV cells), seed 003's run-config file (``seed003``) and a job's peak memory (``memory``).
Imports only the standard library, numpy and PyYAML: no torch, no Optuna, no other automl layer.
"""
