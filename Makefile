# Two entry points that work on a fresh machine (see README):
#   make demo  - the quickstart notebook in JupyterLab against the embedded simulator
#   make test  - ruff + the whole test suite (unit, integration, notebooks, real browser)
#   make voila - the widget notebook as a Voila app (its videos served from kki_media/)
VENV ?= .venv
PY := $(VENV)/bin/python
# The lowest versions pyproject.toml allows (uv's lowest-direct resolution), for `make test-min`.
MIN_VENV ?= .venv-min
# No real browser, no notebook runs: the edit-test loop (`make test-fast`) and the min-versions
# run (`make test-min`).
# Four workers on two cores: most of a test's time is spent waiting on a simulator, a replay or
# a subprocess, and work stealing keeps every worker busy until the last file.
# tests/browser is not even collected (its imports are Jupyter's, a second or two per worker).
WORKERS := --ignore=tests/browser -n 4 --dist worksteal
FAST := -m "not browser and not notebook and not benchmark" $(WORKERS)
# Bytecode is written (some images set PYTHONDONTWRITEBYTECODE): every worker, kernel and
# subprocess otherwise compiles the package and pytest rewrites every test module again.
unexport PYTHONDONTWRITEBYTECODE
PORT ?= 8888

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $@

# Voila serves files next to a notebook only when they match VoilaConfiguration.file_allowlist,
# whose default is images only (a video answers 403): its default plus the widget's media folder.
VOILA_MEDIA := ['.*\.(png|jpg|gif|svg)', '(.*/)?kki_media/[^/]+\.(mp4|webm|mov|webp|png|jpe?g|gif)']

$(MIN_VENV)/.installed: pyproject.toml
	python3 -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/python -m pip install -q uv
	UV_NATIVE_TLS=1 $(MIN_VENV)/bin/uv pip install -q --python $(MIN_VENV)/bin/python \
		--resolution lowest-direct -e ".[test]"
	touch $@

.PHONY: install demo voila test test-fast test-min lint bench
install: $(VENV)/.installed

demo: install
	$(VENV)/bin/jupyter lab notebooks/quickstart.ipynb --ServerApp.ip=127.0.0.1 --port=$(PORT) --no-browser --LabApp.default_url=/lab/tree/quickstart.ipynb $(if $(filter 0,$(shell id -u)),--allow-root,)

voila: install
	$(VENV)/bin/voila notebooks/widget.ipynb --Voila.ip=127.0.0.1 --port=$(PORT) --no-browser "--VoilaConfiguration.file_allowlist=$(VOILA_MEDIA)"

lint: install
	$(VENV)/bin/ruff check kki_widgets tests benchmarks

# The unit and integration tests and the benchmarks' quick runs on four workers, then the tests
# that drive a real browser or run whole notebooks on two, a test file each at a time (a file's
# tests share the Jupyter server and simulator it starts).
test: install lint
	$(PY) -m pytest -q -ra -m "not browser and not notebook" $(WORKERS) --durations=10
	$(PY) -m pytest -q -ra -m "browser or notebook" -n 2 --dist loadfile --durations=10

test-fast: install
	$(PY) -m pytest -q -ra $(FAST) --durations=10

# pyproject's ">=" bounds, proven: the unit suite on the lowest version of every dependency.
test-min: $(MIN_VENV)/.installed
	$(MIN_VENV)/bin/python -m pytest -q -ra $(FAST)

bench: install
	$(PY) benchmarks/run_all.py
