# Two entry points that work on a fresh machine (see README):
#   make demo  - the quickstart notebook in JupyterLab against the embedded simulator
#   make test  - ruff + the whole test suite (unit, integration, notebooks, real browser)
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8888

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $@

.PHONY: install demo test lint bench
install: $(VENV)/.installed

demo: install
	$(VENV)/bin/jupyter lab notebooks/quickstart.ipynb --ServerApp.ip=127.0.0.1 --port=$(PORT) --no-browser --LabApp.default_url=/lab/tree/quickstart.ipynb $(if $(filter 0,$(shell id -u)),--allow-root,)

lint: install
	$(VENV)/bin/ruff check kki_widgets tests benchmarks

test: install lint
	$(PY) -m pytest -q -ra

bench: install
	$(PY) benchmarks/run_all.py
