# g2d: every target works from a fresh clone on Debian 12 as root, and is quick when run again.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.g2d-installed

.PHONY: setup demo test test-unit test-lab test-flows test-e2e bench lint clean

setup: $(STAMP)
	@bash ci/setup-debian.sh

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "g2d needs Python >= 3.11, found " + sys.version'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

# The main job: check this host, build the offline lab (cached after the first run), serve it
# on 127.0.0.1 (kept when it is up already), check it, then the whole pipeline on it: esync,
# stage3, deploy g1, branch and update g2, install onto a disk image, boot it in qemu. The lab
# stays up for its Prefect UI; `g2d lab down` stops it.
demo: export G2D_LAB_DIR ?= $(CURDIR)/state/lab
demo: setup
	$(VENV)/bin/g2d doctor
	$(VENV)/bin/g2d lab build
	$(VENV)/bin/g2d lab up --reuse
	$(VENV)/bin/g2d lab status || { $(VENV)/bin/g2d lab down; exit 1; }
	$(VENV)/bin/g2d lab demo

test: setup
	$(PY) -m pytest tests

test-unit: setup
	$(PY) -m pytest tests/unit
test-lab: setup
	$(PY) -m pytest tests/lab
test-flows: setup
	$(PY) -m pytest tests/flows
test-e2e: setup
	$(PY) -m pytest tests/e2e

bench: setup
	$(PY) -m bench

lint: setup
	$(VENV)/bin/ruff check g2d tests bench
	$(VENV)/bin/ruff format --check g2d tests bench

clean:
	rm -rf $(VENV) .pytest_cache
