# Two commands: `make demo` and `make test`. Each sets up .venv by itself on a fresh machine.
# PyTorch is installed first, pinned, so pip takes the local CPU build instead of pulling CUDA wheels;
# set TORCH_SPEC to choose another build (for example on a GPU machine).
VENV ?= .venv
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PY := $(VENV)/bin/python
# the package index here warns about every missing mirror folder; keep real errors only
QUIET := sed '/^WARNING: Location/d'
PIP := $(PY) -m pip --quiet --disable-pip-version-check
STAMP := $(VENV)/.installed

.PHONY: demo test clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip setuptools wheel 2>&1 | $(QUIET)
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install "$(TORCH_SPEC)" 2>&1 | $(QUIET)
	$(PY) -c "import torch"
	$(PIP) install -e ".[dev,bench]" 2>&1 | $(QUIET)
	$(PY) -c "import napari_segflow, torch, napari"
	touch $@

# napari with the sample clip and the widget; without a screen, the same steps headless (segflow demo)
demo: $(STAMP)
	if [ -n "$${DISPLAY:-}$${WAYLAND_DISPLAY:-}" ] || [ "$$(uname -s)" != Linux ]; then \
	  $(VENV)/bin/segflow view; \
	else \
	  echo "No display: running the headless demo (segflow demo). With a screen, make demo opens napari." >&2; \
	  $(VENV)/bin/segflow demo; \
	fi

test: $(STAMP)
	QT_API=pyqt5 tools/with_display.sh $(PY) -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
