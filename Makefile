# `make demo` sets everything up and runs the main job on a small default; `make test` runs
# the tests. Both work on a fresh machine with only Python >= 3.10 installed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is installed before the package so that pip never picks a build by itself. The
# default is the CPU build on this kind of machine; a CUDA user passes e.g.
#   make setup TORCH_INDEX=<the CUDA wheel index for your driver, from pytorch.org>
# or installs CUDA torch into .venv first (an installed torch is kept).
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
PYTEST_ARGS ?= -n 2
export MUJOCO_GL ?= egl

.PHONY: setup demo test lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
	$(PY) -m pip install -e ".[dev]"
	touch $@

demo: setup
	$(VENV)/bin/oda envs --family oda
	$(VENV)/bin/oda envs show oda/PointMaze-v0 layout=open --out outputs/demo
	$(VENV)/bin/oda train launch/demo.yaml run_dir=outputs/demo/run
	$(VENV)/bin/oda eval outputs/demo/run --episodes 10 --json | tee outputs/demo/eval.json
	$(VENV)/bin/oda record outputs/demo/run --episodes 2 --out outputs/demo/rollout.mp4
	@echo "demo outputs: outputs/demo (eval.json, rollout.mp4, run/tb for TensorBoard)"

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .

bench: setup
	$(PY) -m envs.benchmark

clean:
	rm -rf $(VENV) outputs .pytest_cache
