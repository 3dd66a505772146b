# The README's two commands: `make quickstart` and `make test`.
# Each creates .venv and installs what it needs on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_WORKERS ?= 2

.PHONY: install test quickstart quickstart-bwe clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadgroup --durations=15

quickstart: $(STAMP)
	$(VENV)/bin/diffrestore quickstart --workdir runs/quickstart

quickstart-bwe: $(STAMP)
	$(VENV)/bin/diffrestore quickstart --task bwe --workdir runs/quickstart_bwe

clean:
	rm -rf $(VENV) runs .pytest_cache
