# sim2real_kit — the set-up commands of the README:
#   make demo   install (first time) + run the notebook walkthrough headless into runs/demo/
#   make test   install (first time) + ruff + the test suite (notebooks included)
#   make lab    install (first time) + JupyterLab on the kit's venv, opened on notebooks/
# All are idempotent: a second run reuses .venv and only re-installs when pyproject.toml changed.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.sim2real-installed
# The CPU wheel of torch (on this project's machines it is on disk; elsewhere pass e.g.
#   make demo TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cpu")
TORCH_SPEC ?= torch==2.13.0
DEMO_OUT ?= runs/demo
PYTEST_ARGS ?=
LAB_ARGS ?=
# the notebooks' kernels' environment, read from the runner (runner/execute.py KERNEL_ENV: no open3d WebVisualizer
# banner, glibc malloc settings), so JupyterLab's kernels get what `make demo`'s get; expanded when `lab` runs
LAB_ENV = $(shell $(BIN)/python -c "from sim2real_kit.runner.execute import KERNEL_ENV; print(' '.join(f'{k}={v}' for k, v in KERNEL_ENV.items()))")

.PHONY: install demo test lab lint format sysdeps clean-demo help

help:
	@echo "make demo   - install, then run notebooks 01..06 headless on procedural data (tiny preset) into $(DEMO_OUT)/"
	@echo "make test   - install, then ruff check + pytest (includes the notebooks under papermill)"
	@echo "make lab    - install, then JupyterLab on notebooks/ (their run_dir \"runs/demo\" is the repo's runs/demo/);"
	@echo "              extra options: make lab LAB_ARGS=\"--no-browser --ServerApp.port=8899\""
	@echo "make lint / make format / make sysdeps / make clean-demo"

install: sysdeps $(STAMP)

# open3d needs libGL, libgomp and libusb at import time.
sysdeps:
	@missing=""; \
	for lib in libGL.so.1:libgl1 libgomp.so.1:libgomp1 libusb-1.0.so.0:libusb-1.0-0; do \
	  so=$${lib%%:*}; pkg=$${lib##*:}; \
	  /sbin/ldconfig -p 2>/dev/null | grep -q "$$so" || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "[sysdeps] open3d needs system libraries:$$missing"; \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then SUDO=""; \
	  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo"; \
	  else echo "[sysdeps] ERROR: cannot install them (not root, no sudo). Ask an admin: apt-get install -y$$missing"; exit 1; fi; \
	  if ! command -v apt-get >/dev/null; then echo "[sysdeps] ERROR: no apt-get here; install$$missing with your package manager"; exit 1; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq$$missing >/dev/null \
	    || { echo "[sysdeps] ERROR: apt-get install$$missing failed"; exit 1; }; \
	  echo "[sysdeps] installed$$missing"; \
	fi

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c "import torch" 2>/dev/null || { echo "[install] $(TORCH_SPEC) (CPU)"; \
	  $(BIN)/pip install -q $(TORCH_SPEC) 2>&1 | grep -v "^WARNING: Location"; test $${PIPESTATUS[0]} -eq 0; }
	@echo "[install] sim2real_kit and its dependencies into $(VENV)"
	@# uv (from PyPI) resolves and installs the same packages as pip in ~9 s instead of ~60 s here (the same
	@# `pip freeze`); pip does it when uv cannot (no uv wheel, an index only pip.conf knows, ...)
	@{ $(BIN)/pip install -q uv 2>/dev/null && $(BIN)/uv pip install -q --python $(BIN)/python -e .; } \
	  || { echo "[install] uv unavailable or failed: pip instead"; \
	       $(BIN)/pip install -q -e . 2>&1 | grep -v "^WARNING: Location"; test $${PIPESTATUS[0]} -eq 0; }
	@$(BIN)/python -c "import sim2real_kit, torch, diffusers, open3d, papermill" \
	  || { echo "[install] ERROR: the environment does not import; see the messages above"; exit 1; }
	@$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)

demo: install
	$(BIN)/sim2real notebooks --preset tiny --out $(DEMO_OUT)

test: install lint
	$(BIN)/pytest -q -p no:dash $(PYTEST_ARGS)

# A notebook's kernel runs in notebooks/ (JupyterLab starts it next to the notebook, wherever Lab itself was
# started), so the default `run_dir = "runs/demo"` means notebooks/runs/demo: the link notebooks/runs -> ../runs
# (git-ignored) makes it the repository's runs/demo, the folder `make demo` writes (papermill passes an
# absolute run_dir). Lab's root is the repository (data/, runs/ and configs/ in its file browser); as root
# (containers) it needs --allow-root.
lab: install
	@mkdir -p runs
	@if [ -L notebooks/runs ] || [ ! -e notebooks/runs ]; then ln -sfn ../runs notebooks/runs; \
	 else echo "[lab] notebooks/runs exists and is not a link: the notebooks' run_dir runs/demo points into it"; fi
	$(LAB_ENV) $(BIN)/jupyter lab --ServerApp.root_dir="$(CURDIR)" --LabApp.default_url=/lab/tree/notebooks \
	  $$([ "$$(id -u)" = 0 ] && echo --allow-root) $(LAB_ARGS)

lint:
	$(BIN)/ruff check sim2real_kit tests benchmarks experiments scripts
	$(BIN)/ruff format --check sim2real_kit tests benchmarks experiments scripts
	$(BIN)/lint-imports

format:
	$(BIN)/ruff format sim2real_kit tests benchmarks experiments scripts
	$(BIN)/ruff check --fix sim2real_kit tests benchmarks experiments scripts

clean-demo:
	rm -rf $(DEMO_OUT)
