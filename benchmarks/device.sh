#!/usr/bin/env bash
# `make bench-gpu` on a GPU machine lent through the workplace's device tool, whose image has
# torch but neither a venv of this project nor a package registry. Prepare here, once:
#
#   make device-wheels                    # kornia, pydantic, pytorch-grad-cam as wheels in .whl/
#
# then, through the device tool: run(command="benchmarks/device.sh", carry=[".whl"], timeout_s=590).
# SECTIONS (default: all) picks sections of benchmarks/gpu.sh, e.g. SECTIONS="cams metrics"; SCALE
# multiplies the image counts. The tables go to $OUT/results-gpu.md (what the tool brings back), or to
# benchmarks/results-gpu.md outside it.
set -euo pipefail
cd "$(dirname "$0")/.."
ls .whl/*.whl >/dev/null 2>&1 || { echo "no wheels in .whl/: run make device-wheels here first and carry .whl" >&2; exit 2; }
python3 -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site PYTHON=python3 PYTHONUNBUFFERED=1
OUTPUT=${OUT:-benchmarks}/results-gpu.md
python3 -c "import sys, torch, kornia, pydantic, pytorch_grad_cam; print('python', sys.version.split()[0])"
exec benchmarks/gpu.sh "$OUTPUT"
