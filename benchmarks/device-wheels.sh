#!/usr/bin/env bash
# The Python packages `benchmarks/device.sh` needs on a lent GPU machine and that its image lacks,
# as wheels in .whl/ (git-ignored), at the versions pinned in constraints.txt.
#
#   make device-wheels          # = benchmarks/device-wheels.sh
#
# The workplace's GPU image (/work/.library/device/KINDS.md) runs Python 3.12 with torch,
# torchvision, NumPy, SciPy, pandas, pyarrow, safetensors, matplotlib, seaborn, jinja2, typer, rich,
# PyYAML, scikit-learn, OpenCV and tqdm, and reaches no package registry. augcam and its benchmarks
# also need kornia and pydantic, and pytorch-grad-cam (the reference), which this script fetches
# here (≈ 10 MB). grad-cam and ttach publish only source archives: they are built here into
# pure-Python wheels. WHEEL_PYTHON (default 3.12, the GPU image's) is the Python they are for.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
pins() { for name in "$@"; do grep -iE "^${name}==" constraints.txt || { echo "no pin for $name in constraints.txt" >&2; exit 2; }; done; }
BINARY=$(pins kornia kornia_rs pydantic pydantic_core annotated-types typing-inspection typing_extensions)
SOURCE=$(pins grad-cam ttach)
rm -rf .whl && mkdir .whl
# shellcheck disable=SC2086  # one pin per word
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version "${WHEEL_PYTHON:-3.12}" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl $BINARY
# shellcheck disable=SC2086
"$PYTHON" -m pip wheel --quiet --no-deps -w .whl $SOURCE
ls -1 .whl
du -sh .whl
