# Quick start: `make demo` (the main job, offline) and `make test`.
# Both create .venv when missing and install aepose into it with constraints.txt,
# which pins the CPU build of torch.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.aepose-installed

.PHONY: demo test lint browser clean

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

# The page's tests (tests/test_serve_page.py) drive Debian's chromium with chromium-driver
# through Selenium. As root with apt-get they are installed here, quietly and bounded in
# time; otherwise one line says why those tests will be skipped.
CHROMIUM     ?= chromium
CHROMEDRIVER ?= chromedriver
APT_INSTALL  := DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq \
                --no-install-recommends chromium chromium-driver >/dev/null 2>&1

browser:
	@if command -v $(CHROMIUM) >/dev/null && command -v $(CHROMEDRIVER) >/dev/null; then :; \
	elif [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
	  echo "chromium or chromedriver missing (apt-get install chromium chromium-driver" \
	       "needs root on Debian): the browser tests will be skipped"; \
	else \
	  echo "installing chromium and chromium-driver for the browser tests (apt-get)"; \
	  $(APT_INSTALL) || { timeout 300 apt-get update -qq >/dev/null 2>&1 && $(APT_INSTALL); } \
	  || echo "apt-get could not install chromium: the browser tests will be skipped"; \
	fi

test: lint browser
	$(PY) -m pytest -n 2 -q

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache
