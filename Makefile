# Everything installs from this repo's own files into .venv (reused by `make test`).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast test-heavy bench install clean

$(STAMP): pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: torch==2.13.0 is a CPU build; an unpinned torch pulls a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c requirements/constraints.txt -e '.[test]'
	# librosa's numba functions, compiled by this one process (see mirflow/core/numba_cache.py)
	$(PY) -m mirflow.core.numba_cache
	touch $(STAMP)

install: $(STAMP)

# The demo's training budget: 15 epochs keep it near 2 minutes on 2 cores (the default, 30,
# is for real data sets); its MLP still lands at ~0.6 test accuracy on the generated set.
demo: $(STAMP)
	$(VENV)/bin/mirflow run gtzan --max-epochs 15

test: $(STAMP)
	$(PY) -m pytest -q -m "not heavy"
	$(PY) -m pytest -q -m heavy || [ $$? -eq 5 ]  # 5: no heavy test collected

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not heavy"

bench: $(STAMP)
	$(PY) -m bench.run_all

clean:
	rm -rf $(VENV) mirflow_store *.egg-info
