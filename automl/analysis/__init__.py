"""The analysis layer: reads what a run wrote, never changes it.

Owns loading a run directory (``run_data``), the importance ranking, top configs and report
(``report``), the seed-versus-config variance split (``variance``), plots, CSV and TensorBoard
HParams (``plots``) and writing analysis/ (``output``). May import the run layer's state reader,
the search and core layers, Optuna and matplotlib; never torch and never a run's setup.
"""
