#!/usr/bin/env bash
# Download, HERE (with network), the wheels that bench/gpu_check.sh installs on the GPU machine (no network there).
#
# The GPU image (/work/.library/device/KINDS.md, "Python packages already there") is Python 3.12 with torch,
# numpy, scipy, scikit-learn, matplotlib, pandas, pyyaml, rich, tensorboard, cloudpickle, tqdm, packaging,
# typing-extensions, markupsafe, pytest and pytest-timeout already installed. What this project needs beyond
# them is the closure below (checked at the end against each wheel's Requires-Dist): SB3, gymnasium, optuna
# and cmaes with their missing dependencies. Never torch, never nvidia-* (the image's own are used).
# Versions are pinned to this checkout's .venv, so the GPU run uses what the CPU tests ran with.
#
#     bash bench/gpu_wheels.sh [DEST]        # DEST default: wheels/ (gitignored: add "/wheels/" to .gitignore)
#
# Then the GPU run carries DEST:  run(command="bash bench/gpu_check.sh", carry=["wheels"], timeout_s=420)
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-wheels}
PY=${PY:-.venv/bin/python}
TARGET_PY=${GPU_PY_VERSION:-3.12}   # the GPU image's python3 (KINDS.md: Python 3.12.3)
# name as pip knows it; the local .venv gives the version
NAMES="stable-baselines3 gymnasium farama-notifications optuna alembic sqlalchemy mako colorlog cmaes"

specs=()
for name in $NAMES; do
  version=$("$PY" -c "import importlib.metadata as m; print(m.version('$name'))" 2>/dev/null || true)
  specs+=("${name}${version:+==$version}")
done
mkdir -p "$DEST"
rm -f "$DEST"/*.whl
echo "downloading into $DEST for cp${TARGET_PY/./} manylinux x86_64: ${specs[*]}"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$TARGET_PY" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$DEST" "${specs[@]}"

# Closure check: every Requires-Dist (no extras; markers evaluated for Linux / TARGET_PY) is a downloaded
# wheel or a package the GPU image lists. Reads the image's list from KINDS.md when it is at hand.
"$PY" - "$DEST" "$TARGET_PY" <<'EOF'
import re, sys, zipfile
from pathlib import Path
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

dest, pyver = Path(sys.argv[1]), sys.argv[2]
kinds = Path("/work/.library/device/KINDS.md")
image = set()
if kinds.exists():
    m = re.search(r"Packages: (.*?)\.\s*$", kinds.read_text(), re.M)
    image = {canonicalize_name(p.strip()) for p in m.group(1).split(",")} if m else set()
have = {canonicalize_name(w.name.split("-")[0]) for w in dest.glob("*.whl")}
env = {"python_version": pyver, "python_full_version": pyver + ".3", "sys_platform": "linux",
       "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
       "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
missing = set()
for wheel in dest.glob("*.whl"):
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        for line in z.read(meta).decode().splitlines():
            if not line.startswith("Requires-Dist:"):
                continue
            req = Requirement(line.split(":", 1)[1].strip())
            if req.marker is not None and not req.marker.evaluate(env):
                continue
            name = canonicalize_name(req.name)
            if name not in have and name not in image:
                missing.add(f"{name} (for {wheel.name})")
if not image:
    print("closure check: KINDS.md not found here; the image's packages are unchecked")
elif missing:
    print("closure check: NOT in the wheels or the image:", ", ".join(sorted(missing)))
    sys.exit(1)
else:
    print(f"closure check: every requirement is a wheel here ({len(have)}) or in the GPU image")
EOF
ls -1 "$DEST"
du -sh "$DEST"
