# The two set-up commands of the README. Both install what they need first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOME_DIR ?= demo-home

.PHONY: install demo test lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

install: $(PY)
	$(PY) -m pip install -q -e ".[test,nbody]"

demo: install
	$(VENV)/bin/zsds demo --home $(HOME_DIR)

test: install
	$(VENV)/bin/ruff check src tests bench
	$(PY) -m pytest -q -n 2 --dist loadfile tests

bench: install
	$(PY) bench/bench_simulate.py
	$(PY) bench/bench_instcal.py
	$(PY) bench/bench_refs.py
	$(PY) bench/bench_lightcurves.py
	$(PY) bench/bench_lc_search.py
	$(PY) bench/bench_linking.py
	$(PY) bench/bench_known.py
	$(PY) bench/bench_nbody.py
	$(PY) bench/bench_streaks.py
	$(PY) bench/bench_archive.py
	$(VENV)/bin/zsds bench realtime --json bench-realtime.json --plot bench-realtime.png

clean:
	rm -rf $(VENV) $(HOME_DIR) .pytest_cache .ruff_cache bench-realtime.json bench-realtime.png
