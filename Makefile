# Two commands: `make demo` and `make test`. Each sets up .venv by itself on a fresh machine.
# PyTorch is installed first, pinned, so pip takes the local CPU build instead of pulling CUDA wheels;
# set TORCH_SPEC to choose another build (for example on a GPU machine).
VENV ?= .venv
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --quiet --disable-pip-version-check
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip setuptools wheel 2>&1 | grep -v '^WARNING: Location' || true
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install "$(TORCH_SPEC)" 2>&1 | grep -v '^WARNING: Location' || true
	$(PY) -c "import torch"
	$(PIP) install -e ".[dev,bench]" 2>&1 | grep -v '^WARNING: Location' || true
	$(PY) -c "import napari_segflow, torch, napari"
	touch $@

demo: $(STAMP)
	$(VENV)/bin/segflow bench --part model

test: $(STAMP)
	QT_API=pyqt5 tools/with_display.sh $(PY) -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
