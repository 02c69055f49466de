# Two entry points that work on a fresh machine (see README):
#   make demo  - the quickstart notebook in JupyterLab against the embedded simulator
#   make test  - ruff + the whole test suite (unit, integration, notebooks, real browser)
#   make voila - the widget notebook as a Voila app (its videos served from kki_media/)
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8888

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $@

# Voila serves files next to a notebook only when they match VoilaConfiguration.file_allowlist,
# whose default is images only (a video answers 403): its default plus the widget's media folder.
VOILA_MEDIA := ['.*\.(png|jpg|gif|svg)', '(.*/)?kki_media/[^/]+\.(mp4|webm|mov|webp|png|jpe?g|gif)']

.PHONY: install demo voila test lint bench
install: $(VENV)/.installed

demo: install
	$(VENV)/bin/jupyter lab notebooks/quickstart.ipynb --ServerApp.ip=127.0.0.1 --port=$(PORT) --no-browser --LabApp.default_url=/lab/tree/quickstart.ipynb $(if $(filter 0,$(shell id -u)),--allow-root,)

voila: install
	$(VENV)/bin/voila notebooks/widget.ipynb --Voila.ip=127.0.0.1 --port=$(PORT) --no-browser "--VoilaConfiguration.file_allowlist=$(VOILA_MEDIA)"

lint: install
	$(VENV)/bin/ruff check kki_widgets tests benchmarks

test: install lint
	$(PY) -m pytest -q -ra

bench: install
	$(PY) benchmarks/run_all.py
