#!/usr/bin/env bash
# Every GPU benchmark of issue 6 in one command; the tables go to stdout and to OUTPUT.
#
#   benchmarks/gpu.sh [OUTPUT]                  # default OUTPUT: benchmarks/results-gpu.md
#   make bench-gpu                              # the same, with the project's venv
#   DEVICE=cpu SCALE=0.01 benchmarks/gpu.sh /tmp/dry.md   # dry run of this script on a CPU
#
# PYTHON (default .venv/bin/python, else python3) runs the scripts; SCALE multiplies every image
# count; SECTIONS (default: all) names the sections to run: cams metrics pipeline-cifar
# pipeline-effnet cifar10-fast thesis thesis-recipe. About 10 minutes on one H100-class GPU at
# SCALE=1. On a GPU machine of the workplace's device tool, run benchmarks/device.sh instead.
set -euo pipefail
cd "$(dirname "$0")/.."
OUTPUT=${1:-benchmarks/results-gpu.md}
DEVICE=${DEVICE:-cuda}
SCALE=${SCALE:-1}
ALL_SECTIONS="cams metrics pipeline-cifar pipeline-effnet cifar10-fast thesis thesis-recipe"
SECTIONS=${SECTIONS:-$ALL_SECTIONS}
for section in $SECTIONS; do
  case " $ALL_SECTIONS " in *" $section "*) ;; *) echo "unknown section $section; expected some of: $ALL_SECTIONS" >&2; exit 2;; esac
done
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
scaled() { "$PYTHON" -c "print($1 * $SCALE)"; }

if [ "$DEVICE" != cpu ]; then
  "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible to torch')"
fi
: > "$OUTPUT"
run() {  # section, title, then the command; its stdout is appended to OUTPUT under the title
  local section=$1 title=$2; shift 2
  case " $SECTIONS " in *" $section "*) ;; *) return 0;; esac
  echo "### $title" | tee -a "$OUTPUT"
  echo '```' >> "$OUTPUT"; echo "\$ $*" >> "$OUTPUT"; echo '```' >> "$OUTPUT"
  local started=$SECONDS
  "$@" | tee -a "$OUTPUT"
  echo "($((SECONDS - started)) s)" | tee -a "$OUTPUT"
  echo | tee -a "$OUTPUT"
}

{ echo "# GPU benchmarks, $(date -u +%Y-%m-%dT%H:%MZ)"; echo;
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
  "$PYTHON" -c "import torch, torchvision, kornia; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'torchvision', torchvision.__version__, 'kornia', kornia.__version__)"
  echo; } | tee -a "$OUTPUT"

run cams "1. Grad-CAM vs pytorch-grad-cam" "$PYTHON" benchmarks/bench_cams.py --device "$DEVICE" --scale "$SCALE"
run metrics "2. compare_maps vs SciPy loop" "$PYTHON" benchmarks/bench_metrics.py --device "$DEVICE" --scale "$SCALE"
run pipeline-cifar "3a. training pipeline, cifar_resnet 32², bf16, channels_last" \
  "$PYTHON" benchmarks/bench_training.py --device "$DEVICE" --model cifar_resnet --scale "$SCALE"
run pipeline-effnet "3b. training pipeline, efficientnet_b0 32² → 224², bf16, channels_last" \
  "$PYTHON" benchmarks/bench_training.py --device "$DEVICE" --model efficientnet_b0 --image-size 224 \
  --batch-size 128 --scale "$(scaled 0.05)"
run cifar10-fast "4/5. cifar10-fast: time per epoch and study estimate" \
  "$PYTHON" benchmarks/bench_training.py --device "$DEVICE" --skip-pipeline --preset cifar10-fast --scale "$(scaled 0.2)"
run thesis "4. thesis-cifar10 (EfficientNet-B0 at 224², batch 32): time per epoch and study estimate" \
  "$PYTHON" benchmarks/bench_training.py --device "$DEVICE" --skip-pipeline --preset thesis-cifar10 --scale "$(scaled 0.05)"
run thesis-recipe "4. thesis-cifar10 with the GPU recipe (bf16, channels_last)" \
  "$PYTHON" benchmarks/bench_training.py --device "$DEVICE" --skip-pipeline --preset thesis-cifar10 \
  --preset-set training.precision=bf16 --preset-set training.channels_last=true --scale "$(scaled 0.05)"
echo "tables written to $OUTPUT"
