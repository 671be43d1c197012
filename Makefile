# `make run`: create .venv, install, run the embedded default (GReLU then ReLU on a small Ackley problem).
# `make test`: the test suite (installs first if needed).
VENV   ?= .venv
PY     := $(VENV)/bin/python
# The torch/torchvision builds that resolve offline on the project's x86_64 machines; override freely.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?=
# test processes (pytest-xdist): one per core; tests that assert wall-clock bounds share one (tests/conftest.py)
PYTEST_WORKERS ?= auto
XDIST := -n $(PYTEST_WORKERS) --dist loadgroup

.PHONY: setup run test test-fast test-gpu gpu-check gpu-check-offline wheels clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	if [ "$$(uname -m)" = "x86_64" ]; then $(PY) -m pip install -q $(TORCH_SPEC); fi
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

run: setup
	$(VENV)/bin/grelu-train
	$(VENV)/bin/grelu-train model=relu

test: setup
	WANDB_MODE=offline $(PY) -m pytest -q $(XDIST) --durations=30 $(PYTEST_ARGS)

test-fast: setup
	WANDB_MODE=offline $(PY) -m pytest -q $(XDIST) -m "not slow" --durations=15 $(PYTEST_ARGS)

# The GPU tests alone (skipped, with the reason, where no CUDA device is visible).
test-gpu: setup
	WANDB_MODE=offline $(PY) -m pytest -q -rs -m gpu $(PYTEST_ARGS)

# GPU tests, grelu-bench on every case beside the reference loop, conversion and augmentation at the
# paper's sizes -> results/speed/paper/, and a one-screen verdict against the speed targets.
gpu-check: setup
	WANDB_MODE=offline $(PY) benchmarks/gpu_check.py --out results/speed/paper

# The same on a GPU machine without network or .venv: its python3 (torch, Lightning, ...) plus the
# carried wheel folder .whl/, whose missing wheels go to .pysite/ (pip --no-index; both git-ignored).
gpu-check-offline:
	python3 benchmarks/gpu_check.py --wheels .whl

# .whl/: the CPython 3.12 x86_64 wheels of every distribution the suite needs that the GPU machine's
# image (benchmarks/gpu_image.txt) lacks, at the versions installed here; needs the package registry.
wheels: setup
	$(PY) benchmarks/offline_wheels.py --download .whl

clean:
	rm -rf runs outputs multirun .pytest_cache
