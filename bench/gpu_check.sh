#!/usr/bin/env bash
# The prepared GPU check of issue 12 (item 5): one H100/H200, under 6 minutes, one table at the end.
#
#   1. installs SB3, gymnasium, optuna, cmaes (+ their missing deps) from wheels/ (bench/gpu_wheels.sh, run
#      beforehand where there is network); the GPU image already has torch, numpy, scipy, pyyaml, ...;
#   2. the CUDA tests: pytest tests/test_envs_core.py tests/test_device.py -k cuda;
#   3. bench/gpu_check.py measure: env and trainer throughput (SB3 path and torch trainer, same run);
#   4. a short staged run: automl run --mode stage --device auto --trainer torch;
#   5. bench/gpu_check.py table: one markdown table, printed and written to $OUT/gpu_check.md when $OUT is set.
# Each step has a hard `timeout`; they share one wall-clock limit GPU_CHECK_TOTAL_S (default 345 s).
#
# On the GPU machine (device `run` tool):
#   command: bash bench/gpu_check.sh      carry: ["wheels"]      timeout_s: 420
# Here, on CPU, tiny sizes (the install is skipped when the packages already import):
#   GPU_CHECK_SIZES="256 512" GPU_CHECK_DEVICE=cpu bash bench/gpu_check.sh
#
# Environment: GPU_CHECK_SIZES ("2048 65536 262144"), GPU_CHECK_DEVICE (cuda), GPU_CHECK_UPDATES (3),
# GPU_CHECK_CAP_S (40 s per figure), GPU_CHECK_INSTALL (auto | yes | no), GPU_CHECK_STAGE_HOURS (0.03),
# GPU_CHECK_STAGE_ARGS (extra `automl run` flags), GPU_CHECK_TOTAL_S (345), PYTHON (python3, or .venv's here).
# Exit status: 0 when the table was printed (the table carries the failures), else non-zero.
set -u
cd "$(dirname "$0")/.."
T0=$(date +%s)
TOTAL=${GPU_CHECK_TOTAL_S:-345}
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
WORK=$(mktemp -d /tmp/gpu_check.XXXXXX)
DEST=${OUT:-$WORK}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
left() { echo $(( T0 + TOTAL - $(date +%s) )); }
# cap STEP_MAX RESERVE: seconds for a step: at most STEP_MAX, leaving RESERVE for the steps after it (>= 5)
cap() { local t=$(( $(left) - $2 )); [ "$t" -gt "$1" ] && t=$1; [ "$t" -lt 5 ] && t=5; echo "$t"; }

echo "== gpu_check: $("$PYTHON" -V 2>&1) at $(command -v "$PYTHON"); $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi')"

# 1. dependencies ------------------------------------------------------------------------------------------
IMPORTS="import stable_baselines3, gymnasium, optuna, cmaes, yaml, rich, scipy, sklearn, cloudpickle, pytest, pytest_timeout"
INSTALL=${GPU_CHECK_INSTALL:-auto}
if [ "$INSTALL" = auto ] && "$PYTHON" -c "$IMPORTS" 2>/dev/null; then
  echo "== install: skipped (the packages import already)"
elif [ "$INSTALL" != no ]; then
  if ! ls wheels/*.whl >/dev/null 2>&1; then
    echo "== install: no wheels/*.whl here (run bench/gpu_wheels.sh where there is network; carry [\"wheels\"])"
  else
    t=$(cap 60 280)
    echo "== install: pip install --no-index --find-links wheels wheels/*.whl (deps from the image; ${t} s cap)"
    if ! timeout -k 5 "$t" "$PYTHON" -m pip install -q --no-index --no-cache-dir --disable-pip-version-check \
         --find-links wheels wheels/*.whl; then
      # a dependency the image lacks or an unwritable site-packages: the wheels alone, beside the image's packages
      echo "== install: resolution failed; falling back to --no-deps --target $WORK/site (PYTHONPATH)"
      timeout -k 5 "$t" "$PYTHON" -m pip install -q --no-index --no-deps --no-cache-dir \
        --disable-pip-version-check --target "$WORK/site" wheels/*.whl || echo "== install: the fallback failed too"
      export PYTHONPATH="$PYTHONPATH:$WORK/site"
    fi
  fi
  # the project itself: an editable install needs setuptools (in the image) and no network; PYTHONPATH=. (set
  # above) makes it work anyway, and `python -m automl` stands in for the console script
  if timeout -k 5 60 "$PYTHON" -m pip install -q --no-index --no-deps --no-build-isolation \
       --disable-pip-version-check -e . >"$WORK/editable.log" 2>&1; then
    echo "== install: pip install -e . (no deps, no build isolation): ok"
  else
    echo "== install: pip install -e . failed ($(tail -n 1 "$WORK/editable.log")); using PYTHONPATH=$PWD"
  fi
fi
if ! "$PYTHON" -c "$IMPORTS; import automl.cli.main, envs" 2>"$WORK/import.log"; then
  echo "== imports FAIL: $(tail -n 1 "$WORK/import.log")"
fi

# 2. CUDA tests -------------------------------------------------------------------------------------------
t=$(cap 75 250)
echo "== pytest -k cuda (${t} s cap)"
timeout -k 5 "$t" "$PYTHON" -m pytest -q -rfEs -p no:cacheprovider tests/test_envs_core.py tests/test_device.py \
  -k cuda >"$WORK/pytest.log" 2>&1
echo "pytest exit $?" >>"$WORK/pytest.log"
tail -n 15 "$WORK/pytest.log"

# 3. throughput ------------------------------------------------------------------------------------------
t=$(cap 180 125)
echo "== measure (${t} s cap)"
GPU_CHECK_BUDGET_S=$(( t - 15 )) timeout -k 10 "$t" "$PYTHON" bench/gpu_check.py measure --json "$WORK/measure.json"
echo "== measure exit $?"

# 4. staged run ------------------------------------------------------------------------------------------
t=$(cap 130 8)
RUN="$WORK/stage"
echo "== staged run (${t} s cap): automl run --mode stage --env navigation --device auto --trainer torch"
start=$(date +%s)
# shellcheck disable=SC2086 # GPU_CHECK_STAGE_ARGS is a list of flags
timeout -k 10 "$t" "$PYTHON" -m automl run --mode stage --env navigation \
  --budget-hours "${GPU_CHECK_STAGE_HOURS:-0.03}" --hp-trials 2 --reward-generations 1 --seeds 2 \
  --trainer torch --device auto --run-dir "$RUN" --quiet ${GPU_CHECK_STAGE_ARGS:-} >"$WORK/stage.log" 2>&1
echo "stage exit $? after $(( $(date +%s) - start )) s" >>"$WORK/stage.log"
tail -n 6 "$WORK/stage.log"

# 5. the table -------------------------------------------------------------------------------------------
if [ -n "${OUT:-}" ]; then  # what comes back: at most 8 files, 2 folders down
  cp "$WORK/pytest.log" "$WORK/stage.log" "$OUT/" 2>/dev/null
  cp "$WORK/measure.json" "$OUT/" 2>/dev/null
  cp "$RUN/automl_state.yaml" "$OUT/stage_state.yaml" 2>/dev/null
fi
echo "== gpu_check: $(( $(date +%s) - T0 )) s"
echo
"$PYTHON" bench/gpu_check.py table --json "$WORK/measure.json" --pytest-log "$WORK/pytest.log" \
  --stage-dir "$RUN" --stage-log "$WORK/stage.log" --out "$DEST/gpu_check.md"
