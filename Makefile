# `make demo` and `make test` work on a fresh machine: they create .venv, install a torch/torchvision
# pair that imports together, install augcam with its dev tools, and install Debian's Fashion-MNIST.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.augcam-installed
FASHION_MNIST := /usr/share/datasets/fashion-mnist
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Pins that import together (pyproject keeps ranges). PyPI's CPU-only torch 2.13.0 breaks
# torchvision ("operator torchvision::nms does not exist"), so the pair is pinned explicitly.
ifeq ($(shell uname -m),aarch64)
TORCH_PINS := torch==2.9.1 torchvision==0.24.1
else
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
endif

.PHONY: install data browser demo lint test bench bench-gpu device-wheels clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH_PINS)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	# Quantus, the localisation metrics' oracle in tests/test_localisation.py, without its GUI
	# opencv-python requirement (grad-cam's opencv-python-headless provides cv2; pyproject: `oracles`).
	$(BIN)/python -m pip install --quiet --no-deps -c constraints.txt 'quantus>=0.6,<0.7'
	$(BIN)/python -m pip install --quiet -c constraints.txt 'scikit-image>=0.22' 'cachetools>=5'
	$(BIN)/python -c "import torch, torchvision, augcam.cli; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
	touch $@

install: $(STAMP)

data:
	@test -f $(FASHION_MNIST)/train-images-idx3-ubyte.gz || { \
	  echo "installing Debian's dataset-fashion-mnist"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq dataset-fashion-mnist; }

# tests/test_report.py opens report.html in a real headless browser: Debian's chromium, driven by
# its chromedriver (no browser download needed, so it works offline).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  echo "installing Debian's chromium and chromium-driver"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver; }

demo: install data
	$(BIN)/augcam run quick --out runs/quick

# ruff (configured in pyproject.toml): lint rules and the code's formatting, before the tests.
lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

test: install data browser lint
	$(BIN)/python -m pytest

# CPU throughput benchmarks (docs/benchmarks.md); each asserts its maps/values equal the reference
# (bench_training: the pipeline's augmented/un-augmented ratio, kornia vs torchvision v2;
# bench_quick: `augcam run quick` end to end against its 3-minute target).
bench: install
	$(BIN)/python benchmarks/bench_cams.py --repeats 5
	$(BIN)/python benchmarks/bench_metrics.py --repeats 5
	$(BIN)/python benchmarks/bench_training.py
	$(BIN)/python benchmarks/bench_quick.py --repeats 3

# Every benchmark on a CUDA GPU, tables into benchmarks/results-gpu.md (docs/benchmarks.md).
bench-gpu: install
	PYTHON=$(BIN)/python benchmarks/gpu.sh benchmarks/results-gpu.md

# Wheels (.whl/) of what a bare GPU image with torch lacks, for benchmarks/device.sh there.
device-wheels: install
	PYTHON=$(BIN)/python benchmarks/device-wheels.sh

clean:
	rm -rf $(VENV) runs .pytest_cache
