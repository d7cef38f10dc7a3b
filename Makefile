# Quick start: `make demo` (the main job, offline) and `make test`.
# Both create .venv when missing and install aepose into it with constraints.txt,
# which pins the CPU build of torch.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.aepose-installed

.PHONY: demo test lint clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt torch
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev,plot,export,serve]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m aepose demo

lint: $(STAMP)
	$(VENV)/bin/ruff check
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest -n 2 -q

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache
