# make demo: build .venv if needed, run a short real staged search.
# make test: build .venv if needed, check the import layers (lint-imports) and types (mypy, [tool.mypy] in
# pyproject.toml), run the default test suite (on 2 processes, pytest-xdist; a module's
# tests stay on one process, so its module-scoped fixtures, e.g. a Ray cluster, start once).
# EXTRAS=dev,ray,postgres (what .ci/run uses) also installs Ray and psycopg2 for the scaling-out tests.
PY ?= python3.11
VENV := .venv
EXTRAS ?= dev
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow bench clean

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[$(EXTRAS)]'
	@touch $(STAMP)

venv: $(STAMP)

# ~2.7 minutes: the quick preset (learning rate x rollouts grid, priors lr 3e-4 / 24 rollouts) on
# batched CartPole, then one reward generation that fills the rest of the budget; the held-out
# re-check puts the winner next to the baseline (the priors) with 95% CIs.
demo: $(STAMP)
	$(VENV)/bin/automl --mode stage --env cartpole --preset quick --budget-hours 0.045 \
		--reward-generations 1 --run-dir progress/demo --fresh
	@echo "Results: progress/demo/automl_state.yaml, progress/demo/best.yaml"
	$(VENV)/bin/automl analyze --run-dir progress/demo --metric episode_reward_mean --sort descending

test: $(STAMP)
	$(VENV)/bin/lint-imports
	$(VENV)/bin/python -m mypy
	$(VENV)/bin/python -m pytest -q -n 2 --dist loadfile --durations=15

# the long learning checks and end-to-end runs (tests/slow and the slow-marked tests); a test may take
# up to 30 minutes here (the default suite's limit is 10, pyproject's timeout)
test-slow: $(STAMP)
	$(VENV)/bin/python -m pytest -q -m slow --timeout=1800

bench: $(STAMP)
	$(VENV)/bin/python bench/env_throughput.py
	$(VENV)/bin/python bench/ppo_throughput.py

clean:
	rm -rf $(VENV) progress .pytest_cache
